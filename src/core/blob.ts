/**
 * A blob is one chunk as stored: codec byte ‖ nonce ‖ ciphertext ‖ tag. The chunk id and the
 * codec are authenticated data, so a forged index or a swapped blob fails to open, and the
 * plaintext's keyed hash is checked again after decompression.
 */
import { chunkId, openInto, SEAL_OVERHEAD, sealInto, type KeySet } from './crypto.js';
import { ChunkCompressor, ChunkDecompressor, Codec } from './compress.js';
import { CoffreError } from './errors.js';

/** Bytes a chunk of `plainLength` bytes may take once stored (it is never stored larger). */
export const maxStoredLength = (plainLength: number) => 1 + SEAL_OVERHEAD + plainLength;

function adFor(id: Uint8Array, codec: number): Buffer {
  const ad = Buffer.allocUnsafe(id.length + 1);
  ad.set(id, 0);
  ad[id.length] = codec;
  return ad;
}

function damaged(id: Uint8Array, what: string): CoffreError {
  return new CoffreError('ChecksumMismatch', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)} ${what}`);
}

/** Encodes chunks straight into a caller's buffer (a pack being built), one compressor reused. */
export class BlobEncoder {
  private readonly compressor: ChunkCompressor;

  /** `level`: the zstd level (the compressor's default when absent). */
  constructor(private readonly keys: KeySet, level?: number) {
    this.compressor = new ChunkCompressor(level);
  }

  /** Writes the stored blob at the start of `out` (room: maxStoredLength) and returns its length. */
  encodeInto(id: Uint8Array, plain: Uint8Array, out: Uint8Array): number {
    const { codec, data } = this.compressor.compress(plain);
    out[0] = codec;
    return 1 + sealInto(this.keys.encKey, data, adFor(id, codec), out.subarray(1));
  }
}

/** Opens and verifies blobs, decompressing into a caller's buffer when given one. */
export class BlobDecoder {
  private readonly decompressor = new ChunkDecompressor();
  private opened: Buffer = Buffer.alloc(0);

  constructor(private readonly keys: KeySet) {}

  /** The plaintext, verified against its id; a view of `into` when given, else a new buffer. */
  decode(id: Uint8Array, stored: Uint8Array, into?: Uint8Array): Uint8Array {
    const codec = stored[0] ?? 0;
    if (codec !== Codec.None && codec !== Codec.Zstd) throw damaged(id, `has an unknown codec ${codec}`);
    const plainLength = stored.length - 1 - SEAL_OVERHEAD;
    if (plainLength < 0) throw damaged(id, 'is truncated');
    if (into && codec === Codec.None && into.length < plainLength) throw damaged(id, 'is larger than its file says');
    // Raw chunks open straight into the destination; compressed ones through a reused buffer.
    let opened: Uint8Array;
    if (codec === Codec.None) opened = into ? into.subarray(0, plainLength) : Buffer.allocUnsafe(plainLength);
    else {
      if (this.opened.length < plainLength) this.opened = Buffer.allocUnsafe(Math.max(plainLength, 64 * 1024));
      opened = this.opened.subarray(0, plainLength);
    }
    if (!openInto(this.keys.encKey, stored.subarray(1), adFor(id, codec), opened)) {
      throw damaged(id, 'is damaged or was not written with these keys');
    }
    let plain = opened;
    if (codec === Codec.Zstd) {
      try {
        plain = this.decompressor.decompress(codec, opened, into);
      } catch {
        throw damaged(id, 'does not decompress (or is larger than its file says)');
      }
    }
    if (!chunkId(this.keys.idKey, plain).equals(id)) throw damaged(id, 'does not match its checksum');
    return plain;
  }
}

let shared: { e: BlobEncoder; d: BlobDecoder; keys: KeySet } | null = null;
const codecsFor = (keys: KeySet) => (shared?.keys === keys ? shared : (shared = { e: new BlobEncoder(keys), d: new BlobDecoder(keys), keys }));

export function encodeBlob(keys: KeySet, id: Uint8Array, plain: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(maxStoredLength(plain.length));
  return out.subarray(0, codecsFor(keys).e.encodeInto(id, plain, out));
}

export function decodeBlob(keys: KeySet, id: Uint8Array, stored: Uint8Array): Buffer {
  const plain = codecsFor(keys).d.decode(id, stored);
  return Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
}
