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
      w.on('message', (m: { seq: number; all: Uint8Array; lengths: number[] }) => {
        const p = this.pending.get(m.seq);
        this.pending.delete(m.seq);
        let at = m.all.byteOffset;
        p?.resolve(m.lengths.map((l) => {
          if (l < 0) return null;
          const b = Buffer.from(m.all.buffer, at, l);
          at += l;
          return b;
        }));
      });
      w.on('error', (e) => {
        this.failure = e;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  private run(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<(Buffer | null)[]> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.workers[seq % this.workers.length]!.postMessage({ ...message, seq }, transfer);
    });
  }

  /**
   * Seals a batch of chunks, with each stored blob's checksum; the data is copied to the
   * worker, so callers may reuse their buffers.
   */
  async encode(ids: Buffer[], data: Uint8Array[]): Promise<{ stored: Buffer; checksum: Buffer }[]> {
    const out = (await this.run({ op: 'encode', ids: ids.map((i) => i.toString('hex')), data })) as Buffer[];
    return out.map((b) => ({ stored: b.subarray(0, b.length - 16), checksum: b.subarray(b.length - 16) }));
  }

  /**
   * Opens and verifies the blobs at `spans` ([offset, length]) of one fetched range; a damaged
   * one comes back as null. The range travels once, moved rather than copied: posting views
   * would clone the whole underlying buffer for each of them.
   */
  decode(ids: string[], range: Uint8Array, spans: [number, number][]): Promise<(Buffer | null)[]> {
    const own = new Uint8Array(range); // a compact copy we may hand over
    return this.run({ op: 'decode', ids, data: own, spans }, [own.buffer]);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
