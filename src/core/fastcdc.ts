/**
 * FastCDC content-defined chunking (Xia et al., 2016) with normalized chunking.
 * Boundaries depend only on the content and the gear table, so an edit moves at most the
 * chunks around it: the rest of a file deduplicates against the previous backup.
 */
import { createHash } from 'node:crypto';

export interface ChunkerParams { minSize: number; avgSize: number; maxSize: number }

export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 };

/** 256 pseudo-random 32-bit values derived from a seed (a keyed chunker resists fingerprinting). */
export function gearTable(seed: Uint8Array): Int32Array {
  const table = new Int32Array(256);
  for (let block = 0; block < 32; block++) {
    const digest = createHash('sha256').update(seed).update(Uint8Array.of(block)).digest();
    for (let j = 0; j < 8; j++) table[block * 8 + j] = digest.readInt32LE(j * 4);
  }
  return table;
}

/**
 * The rolling hash shifts left, so its low bits depend only on the last few bytes: the masks
 * take the HIGH bits, where each bit depends on the last 32 bytes.
 */
function highMask(bits: number): number {
  return bits >= 32 ? -1 : ((2 ** bits - 1) * 2 ** (32 - bits)) | 0;
}

export class Chunker {
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(seed: Uint8Array, readonly params: ChunkerParams = DEFAULT_CHUNKER) {
    if (!(params.minSize > 0 && params.minSize <= params.avgSize && params.avgSize <= params.maxSize)) {
      throw new RangeError('chunker sizes must satisfy 0 < min <= avg <= max');
    }
    this.gear = gearTable(seed);
    const bits = Math.round(Math.log2(params.avgSize));
    // Normalization level 2: harder to cut before the average size, easier after it.
    this.maskS = highMask(bits + 2);
    this.maskL = highMask(bits - 2);
  }

  /**
   * Length of the chunk that starts at `start` in `buf[start, end)`. When `final` is false
   * and no boundary is found before `end`, returns -1: the caller must supply more data
   * (up to maxSize past start) before cutting.
   */
  cut(buf: Uint8Array, start: number, end: number, final: boolean): number {
    const { minSize, avgSize, maxSize } = this.params;
    const available = end - start;
    if (available <= minSize) return final ? available : (available >= maxSize ? maxSize : -1);
    const limit = Math.min(available, maxSize);
    // V8 reads a plain Uint8Array about twice as fast as a Buffer (a subclass) in this loop.
    const bytes = Object.getPrototypeOf(buf) === Uint8Array.prototype ? buf : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    const at = scan(bytes, start + minSize, start + Math.min(limit, avgSize), start + limit, this.gear, this.maskS, this.maskL);
    if (at >= 0) return at + 1 - start;
    if (limit === maxSize || final) return limit;
    return -1;
  }
}

/**
 * The gear rolling hash over bytes[from, limit): the position of the first boundary, with the
 * stricter mask before `normal` and the looser one after it, or -1.
 */
function scan(bytes: Uint8Array, from: number, normal: number, limit: number, gear: Int32Array, maskS: number, maskL: number): number {
  let hash = 0;
  let p = from;
  for (; p < normal; p++) {
    hash = ((hash << 1) + gear[bytes[p]!]!) | 0;
    if ((hash & maskS) === 0) return p;
  }
  for (; p < limit; p++) {
    hash = ((hash << 1) + gear[bytes[p]!]!) | 0;
    if ((hash & maskL) === 0) return p;
  }
  return -1;
}
