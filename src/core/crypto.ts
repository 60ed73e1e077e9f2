/**
 * Client-side encryption. Chunk ids are keyed hashes (the vault cannot confirm a guess of
 * the content), blobs are sealed with XChaCha20-Poly1305 (random 192-bit nonces are safe,
 * and it runs ~3x faster than Node's AES-GCM on this hardware, see BASELINE.md), and the
 * container's keys are wrapped by a key derived from the passphrase with Argon2id.
 */
import { createHmac, randomBytes, randomFillSync, createHash } from 'node:crypto';
import sodium from 'sodium-native';
import { CoffreError } from './errors.js';

export const ID_BYTES = 32;
const NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
const TAG_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;
export const MIN_PASSPHRASE_LENGTH = 16;

/** The keys of one container: everything it stores is encrypted and identified with these. */
export interface KeySet {
  /** Encrypts blobs and manifests. */
  encKey: Buffer;
  /** Keys the chunk-id hash. */
  idKey: Buffer;
  /** Seeds the chunker's gear table, so chunk boundaries do not fingerprint content across vaults. */
  chunkerSeed: Buffer;
}

export interface KdfParams { alg: 'argon2id13'; opsLimit: number; memLimit: number; salt: string }

/** What the vault stores for a container: useless without the passphrase. */
export interface WrappedKeys { version: 1; kdf: KdfParams; sealed: string }

export function newKeySet(): KeySet {
  return { encKey: randomBytes(32), idKey: randomBytes(32), chunkerSeed: randomBytes(32) };
}

export function chunkId(idKey: Buffer, data: Uint8Array): Buffer {
  return createHmac('sha256', idKey).update(data).digest();
}

/** Checksum of stored (sealed) bytes: verifiable by the vault without any key. */
export function storedChecksum(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest().subarray(0, 16);
}

/** Output layout: nonce ‖ ciphertext ‖ tag. `ad` binds the blob to its id and flags. */
export function seal(key: Buffer, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD + plaintext.length);
  sealInto(key, plaintext, ad, out);
  return out;
}

/**
 * Seals into the start of `out` (which needs SEAL_OVERHEAD more bytes than the plaintext) and
 * returns the sealed length: the data path writes straight into a pack instead of allocating.
 */
export function sealInto(key: Buffer, plaintext: Uint8Array, ad: Uint8Array, out: Uint8Array): number {
  const length = SEAL_OVERHEAD + plaintext.length;
  const nonce = out.subarray(0, NONCE_BYTES);
  randomNonce(nonce);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(NONCE_BYTES, length), plaintext, ad, null, nonce, key);
  return length;
}

// Random nonces come from a pool filled 64 KiB at a time: one system call per chunk cost more
// than sealing a small chunk.
const noncePool = Buffer.allocUnsafe(NONCE_BYTES * 2730);
let noncePoolAt = noncePool.length;

function randomNonce(into: Uint8Array): void {
  if (noncePoolAt + NONCE_BYTES > noncePool.length) {
    randomFillSync(noncePool);
    noncePoolAt = 0;
  }
  into.set(noncePool.subarray(noncePoolAt, noncePoolAt + NONCE_BYTES));
  // Each nonce is used once: wipe it from the pool.
  noncePool.fill(0, noncePoolAt, noncePoolAt + NONCE_BYTES);
  noncePoolAt += NONCE_BYTES;
}

/** Returns null when authentication fails: the caller decides which error that is. */
export function open(key: Buffer, sealed: Uint8Array, ad: Uint8Array): Buffer | null {
  if (sealed.length < SEAL_OVERHEAD) return null;
  const out = Buffer.allocUnsafe(sealed.length - SEAL_OVERHEAD);
  return openInto(key, sealed, ad, out) ? out : null;
}

/** Opens into `out` (exactly the plaintext's length); false when authentication fails. */
export function openInto(key: Buffer, sealed: Uint8Array, ad: Uint8Array, out: Uint8Array): boolean {
  if (sealed.length < SEAL_OVERHEAD || out.length !== sealed.length - SEAL_OVERHEAD) return false;
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, sealed.subarray(NONCE_BYTES), ad, sealed.subarray(0, NONCE_BYTES), key);
  } catch {
    // libsodium signals a failed authentication by throwing; that is the only failure here.
    return false;
  }
  return true;
}

export function checkPassphrase(passphrase: string): void {
  if ([...passphrase].length < MIN_PASSPHRASE_LENGTH) {
    throw new CoffreError('PassphraseTooShort',
      `the passphrase has ${[...passphrase].length} characters; it needs at least ${MIN_PASSPHRASE_LENGTH} characters`);
  }
}

function deriveKek(passphrase: string, kdf: KdfParams): Buffer {
  const out = Buffer.alloc(32);
  sodium.crypto_pwhash(out, Buffer.from(passphrase, 'utf8'), Buffer.from(kdf.salt, 'base64'),
    kdf.opsLimit, kdf.memLimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
  return out;
}

const WRAP_AD = Buffer.from('coffre:keys:v1');

export function wrapKeys(keys: KeySet, passphrase: string): WrappedKeys {
  checkPassphrase(passphrase);
  // Argon2id, 3 passes over 64 MiB: ~0.2 s here, memory-hard against offline guessing.
  const kdf: KdfParams = { alg: 'argon2id13', opsLimit: 3, memLimit: 64 * 1024 * 1024, salt: randomBytes(16).toString('base64') };
  const plain = Buffer.concat([keys.encKey, keys.idKey, keys.chunkerSeed]);
  return { version: 1, kdf, sealed: seal(deriveKek(passphrase, kdf), plain, WRAP_AD).toString('base64') };
}

export function unwrapKeys(wrapped: WrappedKeys, passphrase: string): KeySet {
  checkPassphrase(passphrase);
  if (wrapped.version !== 1 || wrapped.kdf.alg !== 'argon2id13') {
    throw new CoffreError('BadRequest', 'the stored keys use an unknown format; upgrade Coffre');
  }
  const plain = open(deriveKek(passphrase, wrapped.kdf), Buffer.from(wrapped.sealed, 'base64'), WRAP_AD);
  if (!plain || plain.length !== 96) {
    throw new CoffreError('PassphraseWrong', 'the passphrase does not unlock this machine\'s keys; check --passphrase-file or COFFRE_PASSPHRASE');
  }
  return { encKey: plain.subarray(0, 32), idKey: plain.subarray(32, 64), chunkerSeed: plain.subarray(64, 96) };
}

export function keysToJSON(keys: KeySet): Record<keyof KeySet, string> {
  return { encKey: keys.encKey.toString('base64'), idKey: keys.idKey.toString('base64'), chunkerSeed: keys.chunkerSeed.toString('base64') };
}

export function keysFromJSON(json: Record<keyof KeySet, string>): KeySet {
  return { encKey: Buffer.from(json.encKey, 'base64'), idKey: Buffer.from(json.idKey, 'base64'), chunkerSeed: Buffer.from(json.chunkerSeed, 'base64') };
}
