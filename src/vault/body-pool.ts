/**
 * Request bodies (packs of up to MAX bytes) are received into reused buffers, and the ranges of
 * packs a restore reads are read into them too. A fresh 16 MiB buffer per pack costs page
 * faults, zeroing and garbage collection that showed up as a large share of the server's CPU
 * time on an initial backup (and reading 1 GB into fresh buffers took 5× the CPU of reading it
 * into a reused one); a few reused ones cost nothing.
 */
import type { IncomingMessage } from 'node:http';
import { CoffreError } from '../core/errors.js';

const POOLED_MIN = 256 * 1024;
const KEEP = 6;
const STEP = 4 * 1024 * 1024;
/** The packs agents write (file packs 4-8 MiB, disk packs up to a 16 MiB block and its footer) fit; larger buffers are not kept. */
const KEPT_MAX = 32 * 1024 * 1024;

export class BodyPool {
  private readonly free: Buffer[] = [];
  private readonly leased = new WeakSet<ArrayBufferLike>();

  constructor(private readonly maxBytes: number) {}

  /** A buffer of at least `length` bytes, this caller's until it gives it back with release(). */
  lease(length: number): Buffer {
    if (length < POOLED_MIN) return Buffer.allocUnsafe(length);
    const i = this.free.findIndex((b) => b.length >= length);
    const buf = i >= 0 ? this.free.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(Math.ceil(length / STEP) * STEP);
    this.leased.add(buf.buffer);
    return buf;
  }

  /** Gives a leased buffer (or a body read into one) back once its request is answered (no-op for others). */
  release(body: unknown): void {
    if (!Buffer.isBuffer(body) || !this.leased.has(body.buffer)) return;
    this.leased.delete(body.buffer);
    // Only buffers of the usual pack size are kept: a rare large one is not held for good.
    if (this.free.length < KEEP && body.buffer.byteLength <= KEPT_MAX) this.free.push(Buffer.from(body.buffer));
  }

  /** Reads a request body of exactly its Content-Length into a pooled buffer. */
  read(req: IncomingMessage, payload: NodeJS.ReadableStream): Promise<Buffer> {
    const length = Number(req.headers['content-length']);
    if (!Number.isSafeInteger(length) || length < 0) {
      return Promise.reject(new CoffreError('BadRequest', 'a binary body needs a Content-Length header'));
    }
    if (length > this.maxBytes) {
      return Promise.reject(new CoffreError('BadRequest', `the body has ${length} bytes; at most ${this.maxBytes} are accepted`));
    }
    const buf = this.lease(length);
    let at = 0;
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => { this.release(buf); reject(e); };
      payload.on('data', (chunk: Buffer) => {
        if (at + chunk.length > length) {
          payload.removeAllListeners('data');
          fail(new CoffreError('BadRequest', 'the body is longer than its Content-Length'));
          return;
        }
        chunk.copy(buf, at);
        at += chunk.length;
      });
      payload.on('error', fail);
      payload.on('end', () => {
        if (at !== length) fail(new CoffreError('BadRequest', 'the body is shorter than its Content-Length'));
        else resolve(buf.subarray(0, length));
      });
    });
  }
}
