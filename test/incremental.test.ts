/**
 * Incremental forever (SPEC "Backup types"): a data source of blocks A1..A10 is backed up;
 * A2, A3, A4, A9 change, then A5 alone. The second backup sends those four regions, the
 * third only A5 — not the whole file, and not A2..A9 again as a differential would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { Chunker } from '../src/core/fastcdc.js';
import { chunkId, type KeySet } from '../src/core/crypto.js';
import { backupOptions, harness } from '../testkit/harness.js';

/** The chunks the agent cuts from these bytes: an independent model of what must be sent. */
function chunksOf(keys: KeySet, data: Buffer): { id: string; offset: number; length: number }[] {
  const chunker = new Chunker(keys.chunkerSeed);
  const out = [];
  for (let offset = 0; offset < data.length;) {
    const length = chunker.cut(data, offset, data.length, true);
    out.push({ id: chunkId(keys.idKey, data.subarray(offset, offset + length)).toString('hex'), offset, length });
    offset += length;
  }
  return out;
}

/** Bytes of the chunks of `after` that `before` does not have, and where they lie. */
function changedChunks(keys: KeySet, before: Buffer, after: Buffer) {
  const known = new Set(chunksOf(keys, before).map((c) => c.id));
  return chunksOf(keys, after).filter((c) => !known.has(c.id));
}

/**
 * A chunk that an edit of `block` may change: chunks before an edit keep their boundaries;
 * after it, boundaries resynchronise within a couple of maximum-size chunks.
 */
const overlaps = (c: { offset: number; length: number }, block: number) =>
  c.offset + c.length > block * BLOCK + BLOCK / 2 && c.offset < block * BLOCK + BLOCK / 2 + 64 * 1024 + 2 * 4 * MiB;

const BLOCK = 4 * 1024 * 1024;
const MiB = 1024 * 1024;

async function overwriteBlock(file: string, block: number, seedByte: number): Promise<void> {
  const fh = await open(file, 'r+');
  // Change a 64 KiB region inside the block: an edit, not a rewrite of the file.
  const edit = randomBytes(64 * 1024);
  edit[0] = seedByte;
  await fh.write(edit, 0, edit.length, block * BLOCK + BLOCK / 2);
  await fh.close();
}

test('A1..A10: each incremental backup sends only the changed regions, and every point restores whole', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'db');
    await mkdir(src);
    const file = join(src, 'data.bin');
    await writeFile(file, randomBytes(10 * BLOCK)); // A1..A10, 40 MiB of incompressible data
    const opts = backupOptions(a, 'database', [src]);

    const month0 = await backup(opts);
    assert.ok(month0.counters.bytesNew >= 10 * BLOCK, 'the first backup is full');
    const original = await readFile(file);

    for (const [block, byte] of [[1, 1], [2, 2], [3, 3], [8, 9]] as const) await overwriteBlock(file, block, byte); // A2, A3, A4, A9
    const month1 = await backup(opts);
    const afterMonth1 = await readFile(file);
    // Each edit re-sends at most the chunks around it (content-defined, ~1 MiB average, 4 MiB max).
    assert.ok(month1.counters.bytesNew > 0);
    assert.ok(month1.counters.bytesNew <= 4 * 2 * 4 * MiB, `month 1 sent ${month1.counters.bytesNew} bytes for 4 edits`);
    assert.ok(month1.counters.bytesNew < 0.6 * 10 * BLOCK, 'month 1 is not a full backup');
    assert.equal(month1.counters.filesChanged, 1);

    await overwriteBlock(file, 4, 5); // A5
    const month2 = await backup(opts);
    const afterMonth2 = await readFile(file);
    // Exactly the chunks around the edits travel, each of them overlapping an edited region.
    const sent1 = changedChunks(a.keys, original, afterMonth1);
    assert.equal(month1.counters.bytesNew, sent1.reduce((n, c) => n + c.length, 0));
    assert.ok(sent1.every((c) => [1, 2, 3, 8].some((b) => overlaps(c, b))), 'month 1 sends only chunks of A2, A3, A4, A9');
    const sent2 = changedChunks(a.keys, afterMonth1, afterMonth2);
    assert.equal(month2.counters.bytesNew, sent2.reduce((n, c) => n + c.length, 0));
    // Incremental, not differential: only A5's chunks, none of A2, A3, A4, A9 again.
    assert.ok(sent2.length > 0 && sent2.every((c) => overlaps(c, 4)), 'month 2 sends only chunks of A5');
    assert.ok(month2.counters.bytesNew <= 2 * 4 * MiB, `month 2 sent ${month2.counters.bytesNew} bytes for 1 edit`);
    assert.ok(month2.counters.bytesUploaded < month1.counters.bytesUploaded);

    // Every point is complete on its own.
    for (const [point, expected] of [[month0.point, original], [month1.point, afterMonth1], [month2.point, afterMonth2]] as const) {
      const target = join(h.dir, `restore-${point.id}`);
      const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
      assert.deepEqual(r.errors, []);
      assert.ok((await readFile(join(target, 'db', 'data.bin'))).equals(expected), `point ${point.id} restores its own state`);
    }
  } finally {
    await h.close();
  }
});

test('an unchanged re-backup reads no file and sends nothing', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await mkdir(src);
    for (let i = 0; i < 50; i++) await writeFile(join(src, `f${i}.txt`), `file ${i}\n`.repeat(100 * i + 1));
    const opts = backupOptions(a, 'src', [src]);
    await backup(opts);
    const again = await backup(opts);
    assert.equal(again.counters.filesChanged, 0);
    assert.equal(again.counters.bytesNew, 0);
    assert.equal(again.counters.bytesUploaded, 0);
    assert.equal(again.counters.filesScanned, 50);
  } finally {
    await h.close();
  }
});

test('identical content in two files and two backups is stored once', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'dups');
    await mkdir(src);
    const data = randomBytes(3 * MiB);
    await writeFile(join(src, 'one.bin'), data);
    await writeFile(join(src, 'two.bin'), data);
    // Many small copies too: they are read in batches by both workers at once.
    const small = randomBytes(200 * 1024);
    for (let i = 0; i < 300; i++) await writeFile(join(src, `copy-${i}.bin`), small);
    const first = await backup(backupOptions(a, 'dups', [src]));
    assert.ok(first.counters.bytesNew <= 3 * MiB + small.length, `duplicates stored once (${first.counters.bytesNew} new bytes)`);
    assert.ok(first.counters.bytesUploaded < 3.4 * MiB);
  } finally {
    await h.close();
  }
});

test('two machines back up to one vault at the same time without interfering', async () => {
  const h = await harness();
  try {
    const [a, b] = await Promise.all([h.agent('alpha'), h.agent('beta')]);
    const srcA = join(h.dir, 'a');
    const srcB = join(h.dir, 'b');
    await mkdir(srcA);
    await mkdir(srcB);
    await writeFile(join(srcA, 'x.bin'), randomBytes(20 * MiB));
    await writeFile(join(srcB, 'y.bin'), randomBytes(20 * MiB));
    const [ra, rb] = await Promise.all([backup(backupOptions(a, 'alpha-files', [srcA])), backup(backupOptions(b, 'beta-files', [srcB]))]);
    for (const [agent, r, name, src] of [[a, ra, 'a', srcA], [b, rb, 'b', srcB]] as const) {
      const target = join(h.dir, `out-${name}`);
      await restore({ client: agent.client, keys: agent.keys, pointId: r.point.id, target });
      assert.ok((await readFile(join(target, name, name === 'a' ? 'x.bin' : 'y.bin'))).equals(await readFile(join(src, name === 'a' ? 'x.bin' : 'y.bin'))));
    }
  } finally {
    await h.close();
  }
});
