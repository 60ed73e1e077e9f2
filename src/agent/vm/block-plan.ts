/**
 * Which blocks of a disk a backup must read, as a pure function of what QEMU says about the
 * disk: the changed-block map (a dirty bitmap since the last committed point), the
 * allocation map (holes and zero clusters), and the previous point's block table.
 *
 *   KEEP  the block did not change since the previous point: its id is copied, nothing read
 *   ZERO  the block reads as zeros (holes, zero clusters): recorded as a hole, nothing read
 *   READ  the block is read (only its data extents; the rest is zero-filled) and hashed
 *
 * A block is read when there is no previous table or no change map (a full read), when the
 * change map marks any byte of it, or when the vault no longer holds the previous point's
 * block (removed by garbage collection): every point must name only blocks the vault holds.
 */
import { ID_BYTES } from '../../core/crypto.js';
import type { Extent } from './nbd-protocol.js';
import { STATE_DIRTY, STATE_ZERO } from './nbd-protocol.js';

export const KEEP = 0;
export const READ = 1;
export const ZERO = 2;

export interface PlanInput {
  size: number;
  blockSize: number;
  /** Dirty extents (STATE_DIRTY) since the previous point; null: unknown, read everything. */
  dirty: Extent[] | null;
  /** Allocation extents (STATE_ZERO marks bytes that read as zeros); null: unknown. */
  allocation: Extent[] | null;
  /** The previous point's block table (32 bytes per block, zeros for a hole), or null. */
  previous: Buffer | null;
  /** Whether the vault holds a block id. */
  held: (id: Buffer) => boolean;
}

/** Marks, per block, whether any byte of it lies in an extent whose flags pass `test`. */
function touched(extents: Extent[], blockSize: number, count: number, test: (flags: number) => boolean): Uint8Array {
  const out = new Uint8Array(count);
  for (const e of extents) {
    if (!test(e.flags) || e.length === 0) continue;
    const first = Math.floor(e.offset / blockSize);
    const last = Math.min(count - 1, Math.floor((e.offset + e.length - 1) / blockSize));
    for (let b = first; b <= last; b++) out[b] = 1;
  }
  return out;
}

export function planBlocks(p: PlanInput): Uint8Array {
  const count = Math.ceil(p.size / p.blockSize);
  const plan = new Uint8Array(count);
  const incremental = p.dirty !== null && p.previous !== null && p.previous.length === count * ID_BYTES;
  const dirty = incremental ? touched(p.dirty!, p.blockSize, count, (f) => (f & STATE_DIRTY) !== 0) : null;
  // A block with any byte that does not read as zero holds data.
  const data = p.allocation ? touched(p.allocation, p.blockSize, count, (f) => (f & STATE_ZERO) === 0) : null;
  for (let b = 0; b < count; b++) {
    let changed = !incremental || dirty![b] === 1;
    if (!changed) {
      const id = p.previous!.subarray(b * ID_BYTES, (b + 1) * ID_BYTES);
      changed = !isZero(id) && !p.held(id);
    }
    plan[b] = !changed ? KEEP : data && !data[b] ? ZERO : READ;
  }
  return plan;
}

function isZero(id: Buffer): boolean {
  for (let i = 0; i < id.length; i++) if (id[i] !== 0) return false;
  return true;
}

/** The parts of [offset, offset + length) that hold data (not STATE_ZERO), as [start, end) pairs; all of it when the map is unknown. */
export function dataRanges(allocation: Extent[] | null, offset: number, length: number): [number, number][] {
  const end = offset + length;
  if (!allocation) return [[offset, end]];
  const out: [number, number][] = [];
  // Binary search for the first extent ending after `offset`.
  let lo = 0;
  let hi = allocation.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const e = allocation[mid]!;
    if (e.offset + e.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < allocation.length; i++) {
    const e = allocation[i]!;
    if (e.offset >= end) break;
    if (e.flags & STATE_ZERO) continue;
    const from = Math.max(offset, e.offset);
    const to = Math.min(end, e.offset + e.length);
    const last = out[out.length - 1];
    if (last && last[1] === from) last[1] = to;
    else out.push([from, to]);
  }
  return out;
}
