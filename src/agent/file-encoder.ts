/**
 * The file backup's workers, seen from the main thread: hands them batches of files to read
 * and encode, uploads the packs they fill, and gives each pack buffer back once the vault has
 * it (so a backup allocates a few pack buffers, not one per pack). Memory stays bounded: each
 * worker has at most two tasks queued and two pack buffers, one filling and one uploading.
 */
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { JobProblem } from '../core/api.js';
import { keysToJSON, type KeySet } from '../core/crypto.js';
import type { SharedIdSet } from '../core/known-ids.js';
import type { ChunkRef, Xattr } from '../core/manifest.js';

/**
 * One file to read; strings so that a batch clones cheaply (the path's bytes as latin1).
 * With `pages`, the file is a PostgreSQL relation file read by 8 KiB page: only pages changed
 * since a base backup are kept (see PageFilter), as extents. With `range` ([start, end) in
 * bytes), only that part of the file is read and cut, as if it were a file of its own. With
 * `fixedChunk`, chunks end every that many bytes (for files whose content never shifts).
 */
export interface FileTask { path: string; display: string; size: string; mtimeNs: string; ctimeNs: string; pages?: PageFilter; range?: [string, string]; fixedChunk?: number }
/**
 * The file's chunks (null: unreadable, see problems) and its extended attributes, read through
 * the same descriptor; `extents` and `size` come back for a task with `pages` (then `chunks` is empty).
 */
export interface FileResult { chunks: ChunkRef[] | null; problems: JobProblem[]; xattrs?: Xattr[]; extents?: [number, ChunkRef[]][]; size?: number }

/**
 * Which pages of a relation file a differential keeps: every page past the base's copy
 * (`basePages`), every page of zeros (a hole the base may not have), and every page whose
 * header LSN is at or after `minLsn` (the base's start: changed since). A page changing while
 * it is read gets a WAL record after this backup's start, whose full-page image replay restores.
 */
export interface PageFilter { minLsn: string; basePages: number }

export interface EncoderInit {
  keys: ReturnType<typeof keysToJSON>;
  ids: SharedArrayBuffer;
  signal: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  index: number;
  recycle: MessagePort;
  arenaBytes: number;
  maxArenas: number;
}

export type EncoderRequest = { op: 'read'; seq: number; files: FileTask[] } | { op: 'flush'; seq: number };
export type EncoderReply = { op: 'done'; seq: number; files: FileResult[] } | { op: 'pack'; data: ArrayBuffer; size: number };

/** Pack buffers: a pack closes when the next chunk might not fit, so packs land at 4-8 MiB (smaller buffers, less memory). */
const ARENA_BYTES = 8 * 1024 * 1024;
const ARENAS_PER_WORKER = 2;
const TASKS_PER_WORKER = 2;

interface Slot {
  worker: Worker;
  recycle: MessagePort;
  tasks: number;
  bytes: number;
}

export class FileEncoder {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(r: FileResult[]): void; reject(e: unknown): void; slot: Slot; bytes: number }>();
  private readonly uploads = new Set<Promise<void>>();
  private readonly signal = new Int32Array(new SharedArrayBuffer(4 * 16));
  private readonly stats: Float64Array[] = [];
  private readonly waiters: (() => void)[] = [];
  private seq = 0;
  private failure: unknown = null;

  /** `upload` sends one finished pack; it must not keep `data` after it settles. */
  constructor(keys: KeySet, ids: SharedIdSet, private readonly upload: (data: Uint8Array) => Promise<void>,
    size = Math.max(1, Math.min(16, availableParallelism()))) {
    for (let index = 0; index < size; index++) {
      const channel = new MessageChannel();
      // Each worker counts bytes read and bytes new in its own two shared slots.
      const stats = new Float64Array(new SharedArrayBuffer(16));
      this.stats.push(stats);
      const init: EncoderInit = {
        keys: keysToJSON(keys), ids: ids.buffer, signal: this.signal.buffer as SharedArrayBuffer,
        stats: stats.buffer as SharedArrayBuffer, index, recycle: channel.port2, arenaBytes: ARENA_BYTES, maxArenas: ARENAS_PER_WORKER,
      };
      const worker = new Worker(new URL('./file-encoder-worker.js', import.meta.url), { workerData: init, transferList: [channel.port2] });
      const slot: Slot = { worker, recycle: channel.port1, tasks: 0, bytes: 0 };
      worker.on('message', (m: EncoderReply) => this.onMessage(slot, index, m));
      worker.on('error', (e) => this.fail(e));
      this.slots.push(slot);
    }
  }

  /** Bytes read and bytes of new chunks so far, over all workers. */
  get counts(): { bytesRead: number; bytesNew: number } {
    let bytesRead = 0;
    let bytesNew = 0;
    for (const s of this.stats) { bytesRead += s[0]!; bytesNew += s[1]!; }
    return { bytesRead, bytesNew };
  }

  private onMessage(slot: Slot, index: number, m: EncoderReply): void {
    if (m.op === 'pack') {
      const task = this.upload(new Uint8Array(m.data, 0, m.size))
        .catch((e: unknown) => { this.fail(e); })
        .finally(() => {
          // The buffer goes back even after a failure, so that no worker waits for it forever.
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
    p.slot.tasks--;
    p.slot.bytes -= p.bytes;
    p.resolve(m.files);
    this.waiters.shift()?.();
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w();
  }

  private send(slot: Slot, request: EncoderRequest, bytes: number): Promise<FileResult[]> {
    if (this.failure) return Promise.reject(this.failure);
    slot.tasks++;
    slot.bytes += bytes;
    return new Promise((resolve, reject) => {
      this.pending.set(request.seq, { resolve, reject, slot, bytes });
      slot.worker.postMessage(request);
    });
  }

  /** Resolves when a worker can take another task (or the backup has failed). */
  async ready(): Promise<void> {
    while (!this.failure && this.slots.every((s) => s.tasks >= TASKS_PER_WORKER)) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Reads and encodes a batch on the least loaded worker; call `ready()` first. */
  read(files: FileTask[], bytes: number): Promise<FileResult[]> {
    const slot = this.slots.reduce((a, b) => (b.tasks < a.tasks || (b.tasks === a.tasks && b.bytes < a.bytes) ? b : a));
    return this.send(slot, { op: 'read', seq: this.seq++, files }, bytes);
  }

  /** Sends every partly filled pack and waits until the vault has all of them. */
  async finish(): Promise<void> {
    await Promise.all(this.slots.map((slot) => this.send(slot, { op: 'flush', seq: this.seq++ }, 0)));
    while (this.uploads.size > 0) await Promise.all(this.uploads);
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    // Let failed uploads hand their buffers back before the workers stop.
    await Promise.allSettled(this.uploads);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    for (const s of this.slots) s.recycle.close();
  }
}
