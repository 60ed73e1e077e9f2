/**
 * Plans the reads of a restore: chunks that lie close together in a pack are fetched in one
 * ranged request (few requests), and no range grows past a size limit, stored or decoded
 * (bounded memory: a range is held fetched and decoded at once).
 */
import type { BlobLocation } from '../core/api.js';

export interface PackRange { pack: string; offset: number; length: number; blobs: BlobLocation[] }

export interface RangeLimits {
  /** Bytes of unneeded data worth reading through rather than starting a new request. */
  gap: number;
  /** Stored bytes of one range at most. */
  maxStored: number;
  /** Decoded bytes of one range at most (compressible data decodes to several times its size). */
  maxPlain: number;
}

export const DEFAULT_RANGE_LIMITS: RangeLimits = { gap: 256 * 1024, maxStored: 4 * 1024 * 1024, maxPlain: 12 * 1024 * 1024 };

export function planRanges(locations: readonly BlobLocation[], plainSize: (id: string) => number, limits: RangeLimits = DEFAULT_RANGE_LIMITS): PackRange[] {
  // Grouped by pack in code-unit order: localeCompare (ICU) took ~30 ms for 400 chunks.
  const sorted = [...locations].sort((a, b) => (a.pack < b.pack ? -1 : a.pack > b.pack ? 1 : a.offset - b.offset));
  const ranges: PackRange[] = [];
  let plain = 0;
  for (const l of sorted) {
    const last = ranges[ranges.length - 1];
    const size = plainSize(l.id);
    if (last && last.pack === l.pack && l.offset - (last.offset + last.length) <= limits.gap
      && l.offset + l.length - last.offset <= limits.maxStored && plain + size <= limits.maxPlain) {
      last.length = Math.max(last.length, l.offset + l.length - last.offset);
      last.blobs.push(l);
      plain += size;
    } else {
      ranges.push({ pack: l.pack, offset: l.offset, length: l.length, blobs: [l] });
      plain = size;
    }
  }
  return ranges;
}
