/** Pure data-path pieces: chunk boundaries, blobs, packs and manifests. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Chunker } from './fastcdc.js';
import { chunkId, newKeySet, unwrapKeys, wrapKeys } from './crypto.js';
import { BlobDecoder, BlobEncoder, decodeBlob, encodeBlob, maxStoredLength } from './blob.js';
import { PackArena, PackWriter, readPack } from './pack.js';
import { encodeName, decodeName, openManifest, sealManifest, validateManifest, type Manifest } from './manifest.js';
import { CoffreError } from './errors.js';

const small = { minSize: 64, avgSize: 256, maxSize: 1024 };
const KiB = 1024;

function cutAll(chunker: Chunker, data: Uint8Array): number[] {
  const out: number[] = [];
  for (let o = 0; o < data.length;) {
    const n = chunker.cut(data, o, data.length, true);
    out.push(n);
    o += n;
  }
  return out;
}

test('chunks cover the input exactly and respect the size bounds', () => {
  const chunker = new Chunker(Buffer.alloc(32, 7), small);
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 20_000 }), (data) => {
    const sizes = cutAll(chunker, data);
    assert.equal(sizes.reduce((a, b) => a + b, 0), data.length);
    sizes.forEach((s, i) => {
      assert.ok(s <= small.maxSize);
      if (i < sizes.length - 1) assert.ok(s >= small.minSize);
    });
  }));
});

test('an edit changes only nearby chunk boundaries (content-defined)', () => {
  const chunker = new Chunker(Buffer.alloc(32, 1), small);
  fc.assert(fc.property(fc.integer({ min: 0, max: 49_999 }), fc.integer({ min: 0, max: 255 }), (at, byte) => {
    const data = Buffer.from(randomBytes(50_000));
    const before = cutAll(chunker, data);
    data[at] = byte;
    const after = cutAll(chunker, data);
    const ends = (sizes: number[]) => { let o = 0; return new Set(sizes.map((s) => (o += s))); };
    const e1 = ends(before);
    const e2 = ends(after);
    // Every boundary before the edit survives, and boundaries resynchronise soon after it.
    for (const e of e1) if (e <= at) assert.ok(e2.has(e));
    for (const e of e1) if (e > at + 4 * small.maxSize) assert.ok(e2.has(e), `boundary ${e} lost after edit at ${at}`);
  }), { numRuns: 50 });
});

test('the streaming cut asks for more data instead of cutting early', () => {
  const chunker = new Chunker(Buffer.alloc(32, 3), small);
  // Below the minimum size no boundary may be cut until the caller says the input ended.
  const data = randomBytes(small.minSize - 1);
  assert.equal(chunker.cut(data, 0, data.length, false), -1);
  assert.equal(chunker.cut(data, 0, data.length, true), data.length);
  // Past the maximum size a cut is forced even in the middle of a stream.
  const zeros = Buffer.alloc(small.maxSize * 2);
  const n = chunker.cut(zeros, 0, zeros.length, false);
  assert.ok(n > 0 && n <= small.maxSize);
});

test('blobs round-trip, compress what compresses, and fail closed on damage', () => {
  const keys = newKeySet();
  const text = Buffer.from('backup '.repeat(10_000));
  const id = chunkId(keys.idKey, text);
  const blob = encodeBlob(keys, id, text);
  assert.ok(blob.length < text.length / 5, 'text is compressed');
  assert.ok(decodeBlob(keys, id, blob).equals(text));
  const random = randomBytes(100_000);
  const rid = chunkId(keys.idKey, random);
  assert.ok(encodeBlob(keys, rid, random).length <= random.length + 64, 'random data is stored as is');
  const damaged = Buffer.from(blob);
  damaged[damaged.length >> 1]! ^= 1;
  assert.throws(() => decodeBlob(keys, id, damaged), (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
  // A blob presented under another id (a forged index) does not open.
  assert.throws(() => decodeBlob(keys, rid, blob), (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
  assert.throws(() => decodeBlob(newKeySet(), id, blob), (e: unknown) => e instanceof CoffreError);
});

test('packs are self-describing and reject damage', () => {
  const keys = newKeySet();
  const w = new PackWriter();
  const parts = [randomBytes(10), Buffer.from('x'.repeat(5000)), randomBytes(3000)];
  for (const p of parts) w.add(chunkId(keys.idKey, p), encodeBlob(keys, chunkId(keys.idKey, p), p));
  const { data, entries } = w.finish();
  const read = readPack(data);
  assert.deepEqual(read.map((e) => [e.id.toString('hex'), e.offset, e.length]), entries.map((e) => [e.id.toString('hex'), e.offset, e.length]));
  read.forEach((e, i) => assert.ok(decodeBlob(keys, e.id, data.subarray(e.offset, e.offset + e.length)).equals(parts[i]!)));
  const bad = Buffer.from(data);
  bad[5]! ^= 0xff;
  assert.throws(() => readPack(bad), (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
  assert.throws(() => readPack(data.subarray(0, data.length - 3)), (e: unknown) => e instanceof CoffreError && e.code === 'PackInvalid');
});

test('names round-trip as bytes, including invalid UTF-8', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
    const name = Buffer.from(bytes);
    assert.ok(decodeName(encodeName(name)).equals(name));
  }));
});

test('manifests are bound to their point and refuse unsafe paths', () => {
  const keys = newKeySet();
  const base = { mode: 0o644, uid: 0, gid: 0, mtime: '0' };
  const m: Manifest = { version: 1, item: 'x', time: '2026-01-01T00:00:00Z', entries: [{ type: 'dir', path: ['root'], ...base }, { type: 'file', path: ['root', 'f'], size: 0, chunks: [], ...base }] };
  const sealed = sealManifest(keys, 'p1', m);
  assert.deepEqual(openManifest(keys, 'p1', sealed), m);
  assert.throws(() => openManifest(keys, 'p2', sealed), (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
  for (const path of [['..'], ['root', '..'], ['root', 'a/b'], ['.'], [''], ['root', 'a\0b']]) {
    assert.throws(() => validateManifest({ ...m, entries: [m.entries[0], { type: 'file', path, size: 0, chunks: [], ...base }] }), (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid', JSON.stringify(path));
  }
  // A child under a symlink would let a restore write through it.
  assert.throws(() => validateManifest({ ...m, entries: [m.entries[0], { type: 'symlink', path: ['root', 'l'], target: '/etc', ...base }, { type: 'file', path: ['root', 'l', 'passwd'], size: 0, chunks: [], ...base }] }), (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid');
  assert.throws(() => validateManifest({ ...m, entries: [{ type: 'file', path: ['root', 'f'], size: 5, chunks: [[null, 4]], ...base }] }), (e: unknown) => e instanceof CoffreError);
});

test('wrapped keys open only with the right passphrase', () => {
  const keys = newKeySet();
  const wrapped = wrapKeys(keys, 'the right passphrase!');
  assert.ok(unwrapKeys(wrapped, 'the right passphrase!').encKey.equals(keys.encKey));
  assert.throws(() => unwrapKeys(wrapped, 'the wrong passphrase!'), (e: unknown) => e instanceof CoffreError && e.code === 'PassphraseWrong');
  assert.throws(() => wrapKeys(keys, 'short'), (e: unknown) => e instanceof CoffreError && e.code === 'PassphraseTooShort');
});

test('a pack built in place is the same pack as one built from pieces, and reads back', () => {
  const keys = newKeySet();
  const encoder = new BlobEncoder(keys);
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 5000 }), { minLength: 1, maxLength: 30 }), (chunks) => {
    const arena = new PackArena(new Uint8Array(chunks.reduce((n, c) => n + maxStoredLength(c.length) + 56, 8)));
    const pieces = new PackWriter();
    for (const c of chunks) {
      const id = chunkId(keys.idKey, c);
      assert.ok(arena.fits(maxStoredLength(c.length)));
      const length = encoder.encodeInto(id, c, arena.free());
      arena.commit(id, length);
      pieces.add(id, Buffer.from(arena.buffer.subarray(arena.byteLength - length, arena.byteLength)));
    }
    const size = arena.finish();
    const built = Buffer.from(arena.buffer.subarray(0, size));
    assert.deepEqual(built, pieces.finish().data);
    const entries = readPack(built);
    const decoder = new BlobDecoder(keys);
    entries.forEach((e, i) => {
      assert.deepEqual(Buffer.from(decoder.decode(e.id, built.subarray(e.offset, e.offset + e.length))), Buffer.from(chunks[i]!));
    });
    assert.equal(arena.byteLength, 0); // empty again, ready for the next pack
  }), { numRuns: 30 });
});

test('a pack arena refuses a blob that would not fit with its footer', () => {
  const arena = new PackArena(new Uint8Array(1000));
  assert.ok(arena.fits(1000 - 56 - 8));
  assert.ok(!arena.fits(1000 - 56 - 7));
});

test('decoding into a caller buffer: raw and compressed chunks, and a buffer too small is damage', () => {
  const keys = newKeySet();
  const decoder = new BlobDecoder(keys);
  const text = Buffer.from('compressible text '.repeat(20 * KiB));
  const noise = randomBytes(600 * KiB);
  for (const plain of [text, noise]) {
    const id = chunkId(keys.idKey, plain);
    const stored = encodeBlob(keys, id, plain);
    const into = new Uint8Array(plain.length + 10);
    const out = decoder.decode(id, stored, into);
    assert.equal(out.buffer, into.buffer, 'written into the given buffer');
    assert.deepEqual(Buffer.from(out), plain);
    assert.throws(() => decoder.decode(id, stored, new Uint8Array(plain.length - 1)), (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
  }
  // Text compresses, noise is stored as it is (sampled, then kept raw).
  assert.ok(encodeBlob(keys, chunkId(keys.idKey, text), text).length < text.length / 4);
  assert.equal(encodeBlob(keys, chunkId(keys.idKey, noise), noise).length, maxStoredLength(noise.length));
});
