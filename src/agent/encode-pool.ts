/**
 * A pool of worker threads for the CPU-heavy part of the data path: on backup they compress
 * and encrypt chunks while the main thread reads, chunks and hashes; on restore they open,
 * decompress and verify chunks while the main thread fetches and writes. Chunks travel in
 * batches: one message per small file would cost more than its work.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keysToJSON, type KeySet } from '../core/crypto.js';

interface Pending { resolve(out: (Buffer | null)[]): void; reject(e: unknown): void }

export class EncodePool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failure: unknown = null;

  constructor(keys: KeySet, size = Math.max(1, Math.min(4, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./encode-worker.js', import.meta.url), { workerData: keysToJSON(keys) });
      w.on('message', (m: { seq: number; out: (Uint8Array | null)[] }) => {
        const p = this.pending.get(m.seq);
        this.pending.delete(m.seq);
        p?.resolve(m.out.map((s) => s && Buffer.from(s.buffer, s.byteOffset, s.byteLength)));
      });
      w.on('error', (e) => {
        this.failure = e;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  private run(op: 'encode' | 'decode', ids: Uint8Array[], data: Uint8Array[]): Promise<(Buffer | null)[]> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.workers[seq % this.workers.length]!.postMessage({ seq, op, ids, data });
    });
  }

  /** Seals a batch of chunks; the data is copied to the worker, so callers may reuse their buffers. */
  async encode(ids: Buffer[], data: Uint8Array[]): Promise<Buffer[]> {
    return (await this.run('encode', ids, data)) as Buffer[];
  }

  /** Opens and verifies stored blobs; a damaged one comes back as null. */
  decode(ids: Uint8Array[], stored: Uint8Array[]): Promise<(Buffer | null)[]> {
    return this.run('decode', ids, stored);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
