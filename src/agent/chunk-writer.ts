/**
 * The file restore's workers, seen from the main thread: each fetched range goes, moved not
 * copied, to the least busy worker, which opens its chunks and writes them into the partial
 * files; back come the damaged chunks and the range's buffer.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keysToJSON, type KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import type { FileMeta, MetaProblem } from './file-meta.js';
import { ENCODER_LIMITS } from './worker-limits.js';

/**
 * A file whose only stored chunk this is: the worker creates it, writes it and finishes it
 * (size, owner, mode, mtime, final name), so that the many small files of a tree cost the
 * main thread no system call. Paths are bytes as latin1.
 */
export interface WholeFile extends FileMeta { dest: string; size: number }

/**
 * Where a chunk's plaintext goes: a partial file the main thread created, or a whole file. `file` names the entry in replies.
 * Blocks of zeros are left unwritten (holes in a new file) unless `dense`: the file already holds data
 * there (a differential's pages over its full's), so every byte is written.
 */
export interface WriteTarget { path: string; offset: number; file: number; whole?: WholeFile; dense?: boolean }

/** A target that could not be written (its partial copy is gone); the rest of the range was. */
export interface WriteFailure { file: number; message: string }
/** Metadata of a whole file that the target refused: a warning, the file is restored. */
export interface WriteProblem extends MetaProblem { file: number }

/** One chunk of a range: where it lies in the range and where its plaintext goes. */
export interface WriteBlob { id: string; offset: number; length: number; plainLength: number; targets: WriteTarget[] }

export type WriterRequest = { seq: number; data: ArrayBuffer; length: number; blobs: WriteBlob[] };

/** What each worker starts with: the keys, and the file locks every worker of the pool shares. */
export interface WriterSetup { keys: ReturnType<typeof keysToJSON>; locks: SharedArrayBuffer }

/**
 * Slots of the shared file locks: a partial file's writes take slot `file % FILE_LOCKS`. Two
 * files may share a slot (one waits needlessly, rarely); the same file never has two writers.
 */
export const FILE_LOCKS = 64;
/** The range's buffer comes back with every reply, for the next range. */
export type WriterReply =
  | { op: 'done'; seq: number; data: ArrayBuffer; damaged: number[]; written: number; failed: WriteFailure[]; problems: WriteProblem[] }
  | { op: 'failed'; seq: number; data: ArrayBuffer; message: string; code: string | null };

export interface WriteResult { damaged: number[]; written: number; failed: WriteFailure[]; problems: WriteProblem[]; buffer: ArrayBuffer }

interface Slot { worker: Worker; busy: number }

export class ChunkWriter {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(r: WriteResult): void; reject(e: unknown): void; slot: Slot }>();
  private seq = 0;
  private failure: unknown = null;
  private closing = false;

  constructor(keys: KeySet, size = Math.max(1, Math.min(16, availableParallelism()))) {
    const setup: WriterSetup = { keys: keysToJSON(keys), locks: new SharedArrayBuffer(FILE_LOCKS * Int32Array.BYTES_PER_ELEMENT) };
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL('./chunk-writer-worker.js', import.meta.url), { workerData: setup, resourceLimits: ENCODER_LIMITS });
      const slot: Slot = { worker, busy: 0 };
      worker.on('message', (m: WriterReply) => {
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        slot.busy--;
        if (m.op === 'done') p.resolve({ damaged: m.damaged, written: m.written, failed: m.failed, problems: m.problems, buffer: m.data });
        else p.reject(m.code ? Object.assign(new Error(m.message), { code: m.code }) : new CoffreError('Internal', m.message));
      });
      worker.on('error', (e) => this.fail(e));
      // A worker that stops without an error (killed, out of memory) must not leave a write waiting forever.
      worker.on('exit', (code) => { if (!this.closing) this.fail(new CoffreError('Internal', `a restore worker stopped (exit code ${code})`)); });
      this.slots.push(slot);
    }
  }

  /**
   * Opens and writes the chunks of one range, its first `length` bytes of `buffer`. The buffer
   * is moved to the worker (unusable here) and handed back with the result, for the next range.
   */
  write(buffer: ArrayBuffer, length: number, blobs: WriteBlob[]): Promise<WriteResult> {
    if (this.failure) return Promise.reject(this.failure);
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const seq = this.seq++;
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, slot });
      const request: WriterRequest = { seq, data: buffer, length, blobs };
      slot.worker.postMessage(request, [request.data]);
    });
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
