/** Chunk compression: zstd where it pays, the raw bytes where it does not. */
import { compress as zstdCompress, decompress as zstdDecompress } from 'zstd-napi';

export const enum Codec { None = 0, Zstd = 1 }

const LEVEL = 3;
const SAMPLE = 64 * 1024;

export interface Packed { codec: Codec; data: Buffer | Uint8Array }

/**
 * Incompressible data (media, encrypted or already compressed files) is detected on samples
 * first, so it costs little; a chunk is compressed if any sample compresses, since one chunk
 * of a disk image can hold random bytes, text and zeros. Compressed bytes are kept only when
 * they save more than 3%.
 */
export function compressChunk(plain: Uint8Array): Packed {
  if (plain.length < 64) return { codec: Codec.None, data: plain };
  if (plain.length > 8 * SAMPLE) {
    const samples = 4;
    const step = Math.floor((plain.length - SAMPLE) / (samples - 1));
    let compressible = false;
    for (let i = 0; i < samples && !compressible; i++) {
      const at = i * step;
      compressible = zstdCompress(plain.subarray(at, at + SAMPLE), { compressionLevel: 1 }).length < SAMPLE * 0.97;
    }
    if (!compressible) return { codec: Codec.None, data: plain };
  }
  const packed = zstdCompress(plain, { compressionLevel: LEVEL });
  return packed.length < plain.length * 0.97 ? { codec: Codec.Zstd, data: packed } : { codec: Codec.None, data: plain };
}

export function decompressChunk(codec: number, data: Uint8Array): Buffer {
  if (codec === Codec.None) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (codec === Codec.Zstd) return zstdDecompress(data);
  throw new RangeError(`unknown codec ${codec}`);
}
