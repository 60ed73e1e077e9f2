/**
 * The VM restore's decoders: blocks fetched from the vault are opened (authenticated,
 * decompressed, checked against their id) on worker threads, so a restore uses every core
 * while the main thread fetches ranges and writes the images. As for backups
 * (block-encoder.ts), nothing moves between threads: each range in flight has a lane in one
 * SharedArrayBuffer — the fetched bytes, and the decoded blocks — and a worker is told only
 * which lane and where the blobs lie in it.
 */
import { Worker } from 'node:worker_threads';
import { keysToJSON, type KeySet } from '../../core/crypto.js';

export interface BlockDecoderInit { keys: ReturnType<typeof keysToJSON>; lanes: SharedArrayBuffer; fetchBytes: number; plainBytes: number }
export interface DecodeBlob { id: string; at: number; length: number }
export type DecodeRequest = { seq: number; lane: number; blobs: DecodeBlob[]; maxBlock: number };
/** Per blob: its plaintext's length, at `plainAt` in the lane's plain area, or why it could not be opened. */
export type DecodeResult = { plainAt: number; length: number } | { error: string };
export type DecodeReply = { seq: number; results: DecodeResult[] };

export interface Lane { index: number; fetch: Buffer; plain: Buffer }

export class BlockDecoder {
  private readonly workers: { worker: Worker; busy: number }[] = [];
  private readonly pending = new Map<number, { resolve(r: DecodeResult[]): void; reject(e: unknown): void; w: { busy: number } }>();
  private readonly lanes: Lane[] = [];
  private seq = 0;
  private failure: unknown = null;
  private closing = false;

  constructor(keys: KeySet, laneCount: number, readonly fetchBytes: number, readonly plainBytes: number, workers: number) {
    const sab = new SharedArrayBuffer(laneCount * (fetchBytes + plainBytes));
    for (let i = 0; i < laneCount; i++) {
      const base = i * (fetchBytes + plainBytes);
      this.lanes.push({ index: i, fetch: Buffer.from(sab, base, fetchBytes), plain: Buffer.from(sab, base + fetchBytes, plainBytes) });
    }
    const init: BlockDecoderInit = { keys: keysToJSON(keys), lanes: sab, fetchBytes, plainBytes };
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(new URL('./block-decoder-worker.js', import.meta.url), { workerData: init });
      const w = { worker, busy: 0 };
      worker.on('message', (m: DecodeReply) => {
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        p.w.busy--;
        p.resolve(m.results);
      });
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => { if (!this.closing) this.fail(new Error(`a block decoder worker exited (status ${code})`)); });
      this.workers.push(w);
    }
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }

  /** The lanes, one per range in flight; a lane is its caller's until its decode has settled. */
  get all(): readonly Lane[] { return this.lanes; }

  /** Opens the blobs lying in `lane.fetch`; their plaintexts go to `lane.plain`, one `maxBlock` slot each. */
  decode(lane: Lane, blobs: DecodeBlob[], maxBlock: number): Promise<DecodeResult[]> {
    if (this.failure) return Promise.reject(this.failure);
    const w = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    w.busy++;
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, w });
      w.worker.postMessage({ seq, lane: lane.index, blobs, maxBlock } satisfies DecodeRequest);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
