/** Chunk compression: zstd where it pays, the raw bytes where it does not. */
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { decompress as zstdDecompress } from 'zstd-napi';

// The low-level binding compresses into a buffer we own: no allocation per chunk.
const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;

export const enum Codec { None = 0, Zstd = 1 }

const LEVEL = 3;
const SAMPLE = 64 * 1024;

export interface Packed { codec: Codec; data: Uint8Array }

/**
 * Compresses chunks with one reusable context and output buffer. Incompressible data (media,
 * encrypted or already compressed files) is detected on samples first, so it costs little; a
 * chunk is compressed if any sample compresses, since one chunk of a disk image can hold random
 * bytes, text and zeros. Compressed bytes are kept only when they save more than 3%.
 */
export class ChunkCompressor {
  private readonly cctx = new zstd.CCtx();
  private out: Buffer = Buffer.alloc(0);

  /** `level`: zstd level (3 by default; disk blocks use a faster one, see src/agent/vm/block-packer.ts). */
  constructor(private readonly level = LEVEL) {}

  /** The result may be a view of an internal buffer, valid until the next call. */
  compress(plain: Uint8Array): Packed {
    if (plain.length < 64) return { codec: Codec.None, data: plain };
    const bound = zstd.compressBound(plain.length);
    if (this.out.length < bound) this.out = Buffer.allocUnsafe(bound);
    if (plain.length > 8 * SAMPLE) {
      const samples = 4;
      const step = Math.floor((plain.length - SAMPLE) / (samples - 1));
      let compressible = false;
      for (let i = 0; i < samples && !compressible; i++) {
        const at = i * step;
        compressible = this.cctx.compress(this.out, plain.subarray(at, at + SAMPLE), 1) < SAMPLE * 0.97;
      }
      if (!compressible) return { codec: Codec.None, data: plain };
    }
    const n = this.cctx.compress(this.out, plain, this.level);
    return n < plain.length * 0.97 ? { codec: Codec.Zstd, data: this.out.subarray(0, n) } : { codec: Codec.None, data: plain };
  }
}

/** Decompresses with one reusable context, into a buffer of the caller's or a new one. */
export class ChunkDecompressor {
  private readonly dctx = new zstd.DCtx();

  /** `into` must hold the whole chunk; returns the view of it that was written. */
  decompress(codec: number, data: Uint8Array, into?: Uint8Array): Uint8Array {
    if (codec === Codec.None) {
      if (!into) return data;
      into.set(data);
      return into.subarray(0, data.length);
    }
    if (codec !== Codec.Zstd) throw new RangeError(`unknown codec ${codec}`);
    // Sizes are read only after the AEAD tag checked out: they are the writer's own.
    const size = zstd.getFrameContentSize(data);
    if (size === null) {
      const whole = zstdDecompress(data); // a frame written without its size: stream it
      if (!into) return whole;
      if (whole.length > into.length) throw new RangeError('chunk larger than its buffer');
      into.set(whole);
      return into.subarray(0, whole.length);
    }
    if (into && size > into.length) throw new RangeError('chunk larger than its buffer');
    const out = into ?? Buffer.allocUnsafe(size);
    return out.subarray(0, this.dctx.decompress(out, data));
  }
}

let shared: { c: ChunkCompressor; d: ChunkDecompressor } | null = null;
const codecs = () => (shared ??= { c: new ChunkCompressor(), d: new ChunkDecompressor() });

export function compressChunk(plain: Uint8Array): Packed {
  const { codec, data } = codecs().c.compress(plain);
  // The shared compressor's buffer is reused by the next call: hand out a copy.
  return { codec, data: codec === Codec.None ? data : Buffer.from(data) };
}

export function decompressChunk(codec: number, data: Uint8Array): Buffer {
  const out = codecs().d.decompress(codec, data);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
