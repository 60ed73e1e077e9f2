/**
 * A pool of worker threads that compress and encrypt chunks, so that on a machine with
 * several cores reading, chunking and hashing (main thread) overlap with sealing (workers).
 * Chunks travel in batches: one message per small file would cost more than its work.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keysToJSON, type KeySet } from '../core/crypto.js';

interface Pending { resolve(stored: Buffer[]): void; reject(e: unknown): void }

export class EncodePool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failure: unknown = null;

  constructor(keys: KeySet, size = Math.max(1, Math.min(4, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./encode-worker.js', import.meta.url), { workerData: keysToJSON(keys) });
      w.on('message', (m: { seq: number; stored: Uint8Array[] }) => {
        const p = this.pending.get(m.seq);
        this.pending.delete(m.seq);
        p?.resolve(m.stored.map((s) => Buffer.from(s.buffer, s.byteOffset, s.byteLength)));
      });
      w.on('error', (e) => {
        this.failure = e;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  /** Seals a batch of chunks; the data is copied to the worker, so callers may reuse their buffers. */
  encode(ids: Buffer[], data: Uint8Array[]): Promise<Buffer[]> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.workers[seq % this.workers.length]!.postMessage({ seq, ids, data });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
