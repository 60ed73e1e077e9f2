/**
 * A blob is one chunk as stored: codec byte ‖ nonce ‖ ciphertext ‖ tag. The chunk id and the
 * codec are authenticated data, so a forged index or a swapped blob fails to open, and the
 * plaintext's keyed hash is checked again after decompression.
 */
import { chunkId, open, seal, type KeySet } from './crypto.js';
import { compressChunk, decompressChunk } from './compress.js';
import { CoffreError } from './errors.js';

function adFor(id: Uint8Array, codec: number): Buffer {
  const ad = Buffer.allocUnsafe(id.length + 1);
  ad.set(id, 0);
  ad[id.length] = codec;
  return ad;
}

export function encodeBlob(keys: KeySet, id: Uint8Array, plain: Uint8Array): Buffer {
  const { codec, data } = compressChunk(plain);
  const sealed = seal(keys.encKey, data, adFor(id, codec));
  const out = Buffer.allocUnsafe(1 + sealed.length);
  out[0] = codec;
  sealed.copy(out, 1);
  return out;
}

export function decodeBlob(keys: KeySet, id: Uint8Array, stored: Uint8Array): Buffer {
  const codec = stored[0] ?? 0;
  const opened = open(keys.encKey, stored.subarray(1), adFor(id, codec));
  if (!opened) {
    throw new CoffreError('ChecksumMismatch', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)} is damaged or was not written with these keys`);
  }
  const plain = decompressChunk(codec, opened);
  if (!chunkId(keys.idKey, plain).equals(id)) {
    throw new CoffreError('ChecksumMismatch', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)} does not match its checksum`);
  }
  return plain;
}
