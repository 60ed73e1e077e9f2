import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBlob } from '../core/blob.js';
import { chunkId, type KeySet } from '../core/crypto.js';
import { ChunkWriter, type WriteBlob, type WriteTarget } from './chunk-writer.js';

const keys: KeySet = { encKey: randomBytes(32), idKey: randomBytes(32), chunkerSeed: randomBytes(32) };

/** One range holding `plains` as stored blobs, back to back, and the blobs' places in it. */
function rangeOf(plains: Buffer[], targetsOf: (i: number) => WriteTarget[]): { buffer: ArrayBuffer; length: number; blobs: WriteBlob[] } {
  const stored = plains.map((p) => { const id = chunkId(keys.idKey, p); return { id, blob: encodeBlob(keys, id, p) }; });
  const all = Buffer.concat(stored.map((s) => s.blob));
  const buffer = new ArrayBuffer(all.length);
  new Uint8Array(buffer).set(all);
  let at = 0;
  const blobs = stored.map((s, i) => {
    const b: WriteBlob = { id: s.id.toString('hex'), offset: at, length: s.blob.length, plainLength: plains[i]!.length, targets: targetsOf(i) };
    at += s.blob.length;
    return b;
  });
  return { buffer, length: all.length, blobs };
}

test('chunks written over existing bytes keep their blocks of zeros when dense; a new file gets holes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-chunk-writer-'));
  const writer = new ChunkWriter(keys, 2);
  try {
    // Two 8 KiB pages, each a 4 KiB block of data then a 4 KiB block of zeros, over a file of 0xff.
    const page = (fill: number) => Buffer.concat([Buffer.alloc(4096, fill), Buffer.alloc(4096)]);
    const plains = [page(0xa1), page(0xb2)];
    const dense = join(dir, 'dense');
    const sparse = join(dir, 'sparse');
    for (const f of [dense, sparse]) writeFileSync(f, Buffer.alloc(16384, 0xff));
    const r = rangeOf(plains, (i) => [
      { path: dense, offset: i * 8192, file: 0, dense: true },
      { path: sparse, offset: i * 8192, file: 1 },
    ]);
    const result = await writer.write(r.buffer, r.length, r.blobs);
    assert.deepEqual(result.damaged, []);
    assert.deepEqual(result.failed, []);
    assert.equal(result.written, 4 * 8192);
    assert.deepEqual(readFileSync(dense), Buffer.concat(plains), 'a dense target holds every byte of its chunks');
    // Without `dense` the zero blocks are skipped: right for a new (sparse) file, and why a differential's pages need `dense`.
    assert.deepEqual(readFileSync(sparse), Buffer.concat([Buffer.alloc(4096, 0xa1), Buffer.alloc(4096, 0xff), Buffer.alloc(4096, 0xb2), Buffer.alloc(4096, 0xff)]));
  } finally {
    await writer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chunks of one file from many ranges on several workers land at their offsets; a damaged one is reported and left out', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-chunk-writer-'));
  const writer = new ChunkWriter(keys, 2);
  try {
    const file = join(dir, 'relation');
    writeFileSync(file, '');
    const chunk = 64 * 1024;
    const plains = Array.from({ length: 48 }, () => randomBytes(chunk));
    // Six ranges of eight chunks each, in flight at once on both workers, all into the same file.
    const ranges = Array.from({ length: 6 }, (_, k) => rangeOf(plains.slice(k * 8, k * 8 + 8), (i) => [{ path: file, offset: (k * 8 + i) * chunk, file: 0 }]));
    const last = ranges[5]!;
    const bytes = new Uint8Array(last.buffer);
    const flip = last.blobs[3]!.offset + 40;
    bytes[flip] = bytes[flip]! ^ 1;
    const results = await Promise.all(ranges.map((r) => writer.write(r.buffer, r.length, r.blobs)));
    assert.deepEqual(results.map((x) => x.damaged), [[], [], [], [], [], [3]]);
    const want = Buffer.concat(plains);
    want.fill(0, (5 * 8 + 3) * chunk, (5 * 8 + 4) * chunk);
    assert.deepEqual(readFileSync(file), want);
  } finally {
    await writer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
