/**
 * The VM backup's workers, seen from the main thread (as file-encoder.ts is for files): the
 * main thread only reads disk blocks (from an image file or over NBD) into a small pool of
 * buffers and hands each filled buffer to a worker; the worker detects a block of zeros,
 * names the block by its keyed hash, claims the id in the id set the threads share, and
 * encodes a new block (zstd, then XChaCha20-Poly1305) straight into a pack buffer. Full packs
 * come back to the main thread, which uploads them and returns the pack buffer.
 *
 * Block buffers move between threads (transferred, never copied) and come back with the
 * answer, so a backup of any size allocates `poolSize` blocks and two pack buffers per
 * worker. `buffer()` waits while every block buffer is out: that is the backpressure that
 * keeps reading from running ahead of encoding.
 */
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keysToJSON, type KeySet } from '../../core/crypto.js';
import type { SharedIdSet } from '../../core/known-ids.js';

export interface BlockEncoderInit {
  keys: ReturnType<typeof keysToJSON>;
  ids: SharedArrayBuffer;
  signal: SharedArrayBuffer;
  index: number;
  recycle: MessagePort;
  arenaBytes: number;
  maxArenas: number;
}

export type BlockRequest = { op: 'block'; seq: number; disk: number; data: ArrayBuffer; length: number } | { op: 'flush'; seq: number };
export type BlockReply =
  | { op: 'done'; seq: number; id: Uint8Array | null; isNew: boolean; data: ArrayBuffer | null }
  /** `shares`: bytes of the pack per disk (its blobs and their share of the footer), summing to `size`. */
  | { op: 'pack'; data: ArrayBuffer; size: number; shares: [number, number][] };

/** A block's outcome: its id (null for a block of zeros) and whether this backup stores it. */
export interface EncodedBlock { id: Buffer | null; isNew: boolean }

const ARENAS_PER_WORKER = 2;
/** Block buffers per worker: one being encoded, one waiting, so a worker never idles on a read. */
const BUFFERS_PER_WORKER = 2;
/** Extra buffers for the reads in flight on the main thread. */
const READ_BUFFERS = 4;

interface Slot { worker: Worker; recycle: MessagePort; busy: number }

export class BlockEncoder {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(r: EncodedBlock): void; reject(e: unknown): void; slot: Slot }>();
  private readonly uploads = new Set<Promise<void>>();
  private readonly signal = new Int32Array(new SharedArrayBuffer(4 * 16));
  private readonly free: ArrayBuffer[] = [];
  private readonly waiters: (() => void)[] = [];
  private created = 0;
  private readonly poolSize: number;
  private seq = 0;
  private failure: unknown = null;
  private closing = false;
  private readonly sent = new Map<number, number>();

  /** `upload` sends one finished pack; it must not keep `data` after it settles. */
  constructor(keys: KeySet, ids: SharedIdSet, private readonly upload: (data: Uint8Array) => Promise<void>, readonly blockSize: number,
    size = Math.max(1, Math.min(16, availableParallelism()))) {
    this.poolSize = size * BUFFERS_PER_WORKER + READ_BUFFERS;
    // A pack holds several blocks; the largest block (16 MiB) still fits one with its footer.
    const arenaBytes = Math.max(8 * 1024 * 1024, blockSize + 1024 * 1024);
    for (let index = 0; index < size; index++) {
      const channel = new MessageChannel();
      const init: BlockEncoderInit = {
        keys: keysToJSON(keys), ids: ids.buffer, signal: this.signal.buffer as SharedArrayBuffer, index,
        recycle: channel.port2, arenaBytes, maxArenas: ARENAS_PER_WORKER,
      };
      const worker = new Worker(new URL('./block-encoder-worker.js', import.meta.url), { workerData: init, transferList: [channel.port2] });
      const slot: Slot = { worker, recycle: channel.port1, busy: 0 };
      worker.on('message', (m: BlockReply) => this.onMessage(slot, index, m));
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => { if (!this.closing) this.fail(new Error(`a block encoder worker exited (status ${code})`)); });
      this.slots.push(slot);
    }
  }

  private onMessage(slot: Slot, index: number, m: BlockReply): void {
    if (m.op === 'pack') {
      const task = this.upload(new Uint8Array(m.data, 0, m.size))
        .then(() => { for (const [disk, n] of m.shares) this.sent.set(disk, (this.sent.get(disk) ?? 0) + n); })
        .catch((e: unknown) => { this.fail(e); })
        .finally(() => {
          // The pack buffer goes back even after a failure, so that no worker waits for it forever.
          slot.recycle.postMessage(m.data, [m.data]);
          Atomics.add(this.signal, index, 1);
          Atomics.notify(this.signal, index);
          this.uploads.delete(task);
        });
      this.uploads.add(task);
      return;
    }
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    p.slot.busy--;
    if (m.data) this.release(m.data);
    p.resolve({ id: m.id ? Buffer.from(m.id.buffer, m.id.byteOffset, m.id.byteLength) : null, isNew: m.isNew });
  }

  /** Bytes of packs the vault has acknowledged for one disk (a pack's bytes are shared out by the blocks in it). */
  uploaded(disk: number): number {
    return this.sent.get(disk) ?? 0;
  }

  private release(data: ArrayBuffer): void {
    this.free.push(data);
    this.waiters.shift()?.();
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w();
  }

  /** A block buffer to read into; waits while every buffer is with a worker. */
  async buffer(): Promise<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure;
      const data = this.free.pop() ?? (this.created < this.poolSize ? (this.created++, new ArrayBuffer(this.blockSize)) : null);
      if (data) return Buffer.from(data);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Gives a buffer back unused (a read that failed or was not needed). */
  giveBack(buf: Buffer): void {
    this.release(buf.buffer as ArrayBuffer);
  }

  /**
   * Encodes the first `length` bytes of a buffer from `buffer()` on the least busy worker. The
   * buffer is the worker's until the promise settles, then back in the pool: do not touch it.
   */
  encode(disk: number, buf: Buffer, length: number): Promise<EncodedBlock> {
    if (this.failure) return Promise.reject(this.failure);
    const data = buf.buffer as ArrayBuffer;
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    slot.busy++;
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, slot });
      slot.worker.postMessage({ op: 'block', seq, disk, data, length } satisfies BlockRequest, [data]);
    });
  }

  /** Sends every partly filled pack and waits until the vault has all of them. */
  async finish(): Promise<void> {
    await Promise.all(this.slots.map((slot) => {
      if (this.failure) return Promise.reject(this.failure);
      const seq = this.seq++;
      slot.busy++;
      return new Promise<EncodedBlock>((resolve, reject) => {
        this.pending.set(seq, { resolve, reject, slot });
        slot.worker.postMessage({ op: 'flush', seq } satisfies BlockRequest);
      });
    }));
    while (this.uploads.size > 0) await Promise.all(this.uploads);
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    this.closing = true;
    // Let failed uploads hand their buffers back before the workers stop.
    await Promise.allSettled(this.uploads);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    for (const s of this.slots) s.recycle.close();
  }
}
