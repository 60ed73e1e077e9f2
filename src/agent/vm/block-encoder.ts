/**
 * The VM backup's encoders, seen from the main thread (as file-encoder.ts is for files): the
 * main thread only reads disk blocks (from an image file or over NBD) into a pool of block
 * buffers and hands each filled buffer to a worker thread, which encodes it (block-packer.ts)
 * into a pack. Full packs come back to the main thread, which uploads them and returns the
 * pack buffer.
 *
 * The block pool is one SharedArrayBuffer: a block is handed over as its slot number, so
 * nothing is copied or moved between threads (transferring a 1 MiB buffer per block cost more
 * main-thread time than reading it). `buffer()` waits while every slot is with a worker: that
 * is the backpressure that keeps reading from running ahead of encoding.
 *
 * With `workers: 0` the blocks are encoded on the main thread instead: for a backup with only
 * a few MiB to read (an incremental), starting worker threads costs more than encoding.
 */
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keysToJSON, type KeySet } from '../../core/crypto.js';
import type { SharedIdSet } from '../../core/known-ids.js';
import { PackArena } from '../../core/pack.js';
import { BlockPacker } from './block-packer.js';

export interface BlockEncoderInit {
  keys: ReturnType<typeof keysToJSON>;
  ids: SharedArrayBuffer;
  pool: SharedArrayBuffer;
  blockSize: number;
  signal: SharedArrayBuffer;
  index: number;
  recycle: MessagePort;
  arenaBytes: number;
  maxArenas: number;
}

export type BlockRequest = { op: 'block'; seq: number; disk: number; slot: number; length: number } | { op: 'flush'; seq: number };
export type BlockReply =
  | { op: 'done'; seq: number; id: Uint8Array | null; isNew: boolean }
  /** `shares`: bytes of the pack per disk (its blobs and their share of the footer), summing to `size`. */
  | { op: 'pack'; data: ArrayBuffer; size: number; shares: [number, number][] };

/** A block's outcome: its id (null for a block of zeros) and whether this backup stores it. */
export interface EncodedBlock { id: Buffer | null; isNew: boolean }

const ARENAS_PER_WORKER = 2;
/** Block slots per worker: one being encoded, one waiting, so a worker never idles on a read. */
const SLOTS_PER_WORKER = 2;
/** Extra slots for the reads in flight on the main thread. */
const READ_SLOTS = 4;
/** Packs on the wire at once when encoding on the main thread. */
const INLINE_UPLOADS = 2;

export const defaultWorkers = () => Math.max(1, Math.min(16, availableParallelism()));

/**
 * Buffers kept for the next backup of this process: in a resident agent (`coffre agent run`
 * serving `coffre vm backup`), the block pool and the inline pack buffers of one backup serve
 * the next, so an incremental does not pay the first touch of fresh memory again (about
 * 15 µs per 4 KiB page on the VM measured: 8 MiB is ~30 ms, each time). Bounded: a few
 * buffers of the sizes an incremental uses, never the pools of a big full backup.
 */
const KEEP_POOL_BYTES = 32 * 1024 * 1024;
const KEEP_ARENAS = INLINE_UPLOADS + 1;
/** One idle block pool: a larger one serves a smaller need (its slots are offsets into it). */
let idlePool: SharedArrayBuffer | null = null;
const idleArenas: Uint8Array[] = [];

function takePool(bytes: number): SharedArrayBuffer {
  if (idlePool && idlePool.byteLength >= bytes) {
    const pool = idlePool;
    idlePool = null;
    return pool;
  }
  return new SharedArrayBuffer(bytes);
}

function givePool(pool: SharedArrayBuffer): void {
  if (pool.byteLength <= KEEP_POOL_BYTES && (!idlePool || idlePool.byteLength < pool.byteLength)) idlePool = pool;
}

/** A pack holds several blocks; the largest block (16 MiB) still fits one with its footer. */
const arenaBytesFor = (blockSize: number) => Math.max(8 * 1024 * 1024, blockSize + 1024 * 1024);

function takeArena(bytes: number): Uint8Array {
  const i = idleArenas.findIndex((a) => a.length === bytes);
  return i >= 0 ? idleArenas.splice(i, 1)[0]! : new Uint8Array(bytes);
}

/**
 * Touches the buffers an incremental of `blockSize` blocks encoded on the main thread uses, and
 * keeps them for it: a resident agent calls this once at start, so that even its first backup
 * finds them warm (its later backups reuse what the previous one gave back anyway).
 */
export function warmIncrementalBuffers(blockSize: number): void {
  const bytes = (SLOTS_PER_WORKER + READ_SLOTS) * blockSize;
  // Blocks this big make pools the process does not keep: nothing to warm for them.
  if (bytes > KEEP_POOL_BYTES) return;
  const pool = new SharedArrayBuffer(bytes);
  new Uint8Array(pool).fill(1);
  givePool(pool);
  while (idleArenas.length < KEEP_ARENAS) idleArenas.push(new Uint8Array(arenaBytesFor(blockSize)).fill(1));
}

interface Slot { worker: Worker; recycle: MessagePort; busy: number }

export class BlockEncoder {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(r: EncodedBlock): void; reject(e: unknown): void; slot: Slot; block: number }>();
  private readonly uploads = new Set<Promise<void>>();
  private readonly signal = new Int32Array(new SharedArrayBuffer(4 * 16));
  private readonly pool: SharedArrayBuffer;
  private readonly free: number[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly sent = new Map<number, number>();
  private readonly inline: BlockPacker | null = null;
  private readonly arenaBytes: number;
  /** Inline pack buffers whose upload settled, ready for the next pack. */
  private readonly spare: Uint8Array[] = [];
  private seq = 0;
  /** Whether finish() saw every block encoded and sent: no read into the pool can still be in flight. */
  private finished = false;
  private failure: unknown = null;
  private closing = false;

  /** `upload` sends one finished pack; it must not keep `data` after it settles. */
  constructor(keys: KeySet, ids: SharedIdSet, private readonly upload: (data: Uint8Array) => Promise<void>, readonly blockSize: number, workers = defaultWorkers()) {
    const slotCount = Math.max(1, workers) * SLOTS_PER_WORKER + READ_SLOTS;
    this.pool = takePool(slotCount * blockSize);
    for (let i = slotCount - 1; i >= 0; i--) this.free.push(i);
    this.arenaBytes = arenaBytesFor(blockSize);
    if (workers === 0) {
      // Pack buffers are reused once their upload settles: a fresh 8 MiB buffer per pack costs
      // its page faults again, which on a VM's first touch of memory cost more than the encoding.
      this.inline = new BlockPacker(keys, ids, () => new PackArena(this.spare.pop() ?? takeArena(this.arenaBytes)), (arena, size, shares) => {
        this.track(this.upload(arena.buffer.subarray(0, size)), shares, () => { this.spare.push(arena.buffer); });
      });
      return;
    }
    for (let index = 0; index < workers; index++) {
      const channel = new MessageChannel();
      const init: BlockEncoderInit = {
        keys: keysToJSON(keys), ids: ids.buffer, pool: this.pool, blockSize, signal: this.signal.buffer as SharedArrayBuffer, index,
        recycle: channel.port2, arenaBytes: this.arenaBytes, maxArenas: ARENAS_PER_WORKER,
      };
      const worker = new Worker(new URL('./block-encoder-worker.js', import.meta.url), { workerData: init, transferList: [channel.port2] });
      const slot: Slot = { worker, recycle: channel.port1, busy: 0 };
      worker.on('message', (m: BlockReply) => this.onMessage(slot, index, m));
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => { if (!this.closing) this.fail(new Error(`a block encoder worker exited (status ${code})`)); });
      this.slots.push(slot);
    }
  }

  /** Follows one pack's upload: its bytes count for its disks once the vault has it; its buffer goes back after. */
  private track(upload: Promise<void>, shares: [number, number][], giveBack: (() => void) | null): void {
    const task = upload
      .then(() => { for (const [disk, n] of shares) this.sent.set(disk, (this.sent.get(disk) ?? 0) + n); })
      .catch((e: unknown) => { this.fail(e); })
      // The pack buffer goes back even after a failure, so that no worker waits for it forever.
      .finally(() => { giveBack?.(); this.uploads.delete(task); });
    this.uploads.add(task);
  }

  private onMessage(slot: Slot, index: number, m: BlockReply): void {
    if (m.op === 'pack') {
      this.track(this.upload(new Uint8Array(m.data, 0, m.size)), m.shares, () => {
        slot.recycle.postMessage(m.data, [m.data]);
        Atomics.add(this.signal, index, 1);
        Atomics.notify(this.signal, index);
      });
      return;
    }
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    p.slot.busy--;
    if (p.block >= 0) this.release(p.block);
    p.resolve({ id: m.id ? Buffer.from(m.id.buffer, m.id.byteOffset, m.id.byteLength) : null, isNew: m.isNew });
  }

  /** Bytes of packs the vault has acknowledged for one disk (a pack's bytes are shared out by the blocks in it). */
  uploaded(disk: number): number {
    return this.sent.get(disk) ?? 0;
  }

  private release(block: number): void {
    this.free.push(block);
    this.waiters.shift()?.();
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w();
  }

  /** A block buffer (a slot of the shared pool) to read into; waits while every slot is in use. */
  async buffer(): Promise<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure;
      const slot = this.free.pop();
      if (slot !== undefined) return Buffer.from(this.pool, slot * this.blockSize, this.blockSize);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private slotOf(buf: Buffer): number {
    return buf.byteOffset / this.blockSize;
  }

  /** Gives a buffer back unused (a read that failed or was not needed). */
  giveBack(buf: Buffer): void {
    this.release(this.slotOf(buf));
  }

  /**
   * Encodes the first `length` bytes of a buffer from `buffer()`. The buffer is the encoder's
   * until the promise settles, then back in the pool: do not touch it.
   */
  async encode(disk: number, buf: Buffer, length: number): Promise<EncodedBlock> {
    if (this.failure) throw this.failure;
    const block = this.slotOf(buf);
    if (this.inline) {
      let r: EncodedBlock;
      try {
        r = this.inline.encode(disk, buf.subarray(0, length));
      } finally {
        this.release(block);
      }
      // Backpressure on the main thread: no more than a few packs on the wire.
      while (this.uploads.size >= INLINE_UPLOADS) await Promise.race(this.uploads);
      if (this.failure) throw this.failure;
      return r;
    }
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    return this.send(slot, { op: 'block', seq: this.seq++, disk, slot: block, length }, block);
  }

  private send(slot: Slot, request: BlockRequest, block: number): Promise<EncodedBlock> {
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.pending.set(request.seq, { resolve, reject, slot, block });
      slot.worker.postMessage(request);
    });
  }

  /** Sends every partly filled pack and waits until the vault has all of them. */
  async finish(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.inline) this.inline.flush();
    else await Promise.all(this.slots.map((slot) => this.send(slot, { op: 'flush', seq: this.seq++ }, -1)));
    while (this.uploads.size > 0) await Promise.all(this.uploads);
    if (this.failure) throw this.failure;
    this.finished = true;
  }

  async close(): Promise<void> {
    this.closing = true;
    // Let failed uploads hand their buffers back before the workers stop.
    await Promise.allSettled(this.uploads);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    for (const s of this.slots) s.recycle.close();
    // No worker and no upload holds them any more: they serve this process's next backup. The
    // pool only after a backup that finished: after a failure a disk's read may still be landing in it.
    if (this.finished) givePool(this.pool);
    for (const a of this.spare.splice(0)) if (idleArenas.length < KEEP_ARENAS) idleArenas.push(a);
  }
}
