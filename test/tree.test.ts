/**
 * Points stored folder by folder: an unchanged backup stores almost nothing, a change rewrites
 * only the pages on its path, the vault refuses a point whose tree is incomplete, a forged
 * page is refused before anything is written, and garbage collection keeps exactly what live
 * points reach.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { encodeBlob } from '../src/core/blob.js';
import { chunkId, ID_BYTES } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { sealManifest, type RootManifest } from '../src/core/manifest.js';
import { PackWriter } from '../src/core/pack.js';
import { encodeRefsPrefix, pageRefs, type TreeEntry } from '../src/core/tree.js';
import { collectGarbage } from '../src/vault/gc.js';
import { SYSTEM } from '../src/vault/access.js';
import { backupOptions, harness, storeBytes, type Harness, type TestAgent } from '../testkit/harness.js';

async function pageCount(h: Harness): Promise<number> {
  const row = await h.server.db.selectFrom('trees').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

/** 6 folders deep, 10 files per folder, and a wide folder of 3000 small files. */
async function deepAndWide(root: string): Promise<string[]> {
  let dir = root;
  const dirs: string[] = [];
  for (let d = 0; d < 6; d++) {
    dir = join(dir, `level-${d}`);
    dirs.push(dir);
    await mkdir(dir, { recursive: true });
    for (let f = 0; f < 10; f++) await writeFile(join(dir, `file-${f}.txt`), `level ${d} file ${f}\n`);
  }
  await mkdir(join(root, 'wide'));
  for (let f = 0; f < 3000; f++) await writeFile(join(root, 'wide', `w${String(f).padStart(5, '0')}.txt`), `wide ${f}\n`);
  return dirs;
}

test('an unchanged re-backup stores almost nothing; a changed file rewrites only the pages on its path', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'tree');
    const dirs = await deepAndWide(src);
    const first = await backup(backupOptions(a, 'tree', [src]));
    assert.equal(first.point.files, 3060);
    const pagesAfterFirst = await pageCount(h);
    assert.ok(pagesAfterFirst >= 8 + 2, `the wide folder spans several pages (${pagesAfterFirst} pages in all)`);

    const bytesBefore = await storeBytes(join(h.dir, 'data'));
    const second = await backup(backupOptions(a, 'tree', [src]));
    assert.equal(second.counters.filesChanged, 0);
    assert.equal(second.counters.bytesUploaded, 0, 'no pack at all');
    assert.equal(await pageCount(h), pagesAfterFirst);
    const grown = (await storeBytes(join(h.dir, 'data'))) - bytesBefore;
    assert.ok(grown < 2048, `an unchanged point costs its root record only (${grown} bytes)`);

    // One file at the bottom changes: its folder, the five above it and the root change, nothing else.
    await writeFile(join(dirs[5]!, 'file-3.txt'), 'changed at the bottom\n');
    const third = await backup(backupOptions(a, 'tree', [src]));
    assert.equal(third.counters.filesChanged, 1);
    assert.equal(await pageCount(h), pagesAfterFirst + 7);

    // One file of the wide folder changes: one page of it changes, and the root's.
    await writeFile(join(src, 'wide', 'w01500.txt'), 'changed in the middle\n');
    const fourth = await backup(backupOptions(a, 'tree', [src]));
    assert.equal(fourth.counters.filesChanged, 1);
    assert.equal(await pageCount(h), pagesAfterFirst + 7 + 2);

    for (const p of [first.point, third.point, fourth.point]) {
      const target = join(h.dir, `restored-${p.id}`);
      const r = await restore({ client: a.client, keys: a.keys, pointId: p.id, target });
      assert.equal(r.job.status, 'Completed');
    }
    assert.deepEqual(await compareTrees(src, join(h.dir, `restored-${fourth.point.id}`, 'tree')), []);
  } finally {
    await h.close();
  }
});

/** Uploads a tree pack of the given pages (entries already in name order) and returns their ids. */
async function uploadPages(a: TestAgent, pages: TreeEntry[][]): Promise<string[]> {
  const writer = new PackWriter('tree');
  const ids: string[] = [];
  for (const entries of pages) {
    const plain = Buffer.from(JSON.stringify({ v: 1, entries }));
    const id = chunkId(a.keys.idKey, plain);
    writer.add(id, Buffer.concat([encodeRefsPrefix(pageRefs(entries)), encodeBlob(a.keys, id, plain)]));
    ids.push(id.toString('hex'));
  }
  await a.client.putPack(a.state.containerId, randomBytes(16).toString('hex'), writer.finish().data);
  return ids;
}

/** Starts a backup, stores a root record naming `roots`, and commits. */
async function commitRoots(a: TestAgent, item: string, roots: TreeEntry[]) {
  const start = await a.client.startBackup(item, 'files', { paths: ['/forged'] });
  const manifest: RootManifest = { version: 3, item, time: new Date().toISOString(), roots, owners: { users: {}, groups: {} }, files: 0, bytes: 0 };
  await a.client.putPointObject(start.pointId, start.job.id, 'manifest', sealManifest(a.keys, start.pointId, manifest));
  const refs = pageRefs(roots);
  const all = [...refs.trees, ...refs.chunks];
  const buf = Buffer.alloc(all.length * ID_BYTES);
  all.forEach((id, i) => buf.write(id, i * ID_BYTES, 'hex'));
  await a.client.putPointObject(start.pointId, start.job.id, 'refs', buf);
  const counters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  return a.client.commit(start.pointId, { jobId: start.job.id, files: 0, bytes: 0, kind: 'OnDemand', consistency: 'crash', retainUntil: '2099-12-31', counters, warnings: [] });
}

const meta = { mode: 0o755, uid: 0, gid: 0, mtime: '1600000000000000000' };

test('the vault refuses a point whose tree names a chunk or a page it does not hold', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const absent = randomBytes(32).toString('hex');
    // A page naming a chunk that was never uploaded, one level down.
    const [leaf] = await uploadPages(a, [[{ ...meta, name: 'f', type: 'file', size: 5, chunks: [[absent, 5]] }]]);
    const [top] = await uploadPages(a, [[{ ...meta, name: 'sub', type: 'dir', tree: [leaf!] }]]);
    await assert.rejects(commitRoots(a, 'forged', [{ ...meta, name: 'root', type: 'dir', tree: [top!] }]),
      (e: unknown) => e instanceof CoffreError && e.code === 'ChunkMissing' && JSON.stringify(e.details).includes(absent));
    // A folder naming a page that was never uploaded.
    await assert.rejects(commitRoots(a, 'forged', [{ ...meta, name: 'root', type: 'dir', tree: [randomBytes(32).toString('hex')] }]),
      (e: unknown) => e instanceof CoffreError && e.code === 'ChunkMissing');
    const points = await h.admin.listPoints({ item: 'forged' }).catch(() => []);
    assert.deepEqual(points, []);
  } finally {
    await h.close();
  }
});

test('a forged page (a name that climbs out of the target) is refused and nothing is written outside the target', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const [evil] = await uploadPages(a, [[{ ...meta, name: '..', type: 'dir', tree: [randomBytes(32).toString('hex')] }]]);
    const [good] = await uploadPages(a, [[]]);
    const point = await commitRoots(a, 'forged', [
      { ...meta, name: 'a-good', type: 'dir', tree: [good!] },
      { ...meta, name: 'b-evil', type: 'dir', tree: [evil!] },
    ]).catch((e: unknown) => e);
    // The vault cannot read pages: the forged point commits only if its pages' ids resolve; it names an absent page.
    assert.ok(point instanceof CoffreError && point.code === 'ChunkMissing');
    const [evil2] = await uploadPages(a, [[{ ...meta, name: '..', type: 'dir', tree: [good!] }]]);
    const p = await commitRoots(a, 'forged2', [
      { ...meta, name: 'a-good', type: 'dir', tree: [good!] },
      { ...meta, name: 'b-evil', type: 'dir', tree: [evil2!] },
    ]);
    const target = join(h.dir, 'target');
    const r = await restore({ client: a.client, keys: a.keys, pointId: p.id, target });
    assert.equal(r.job.status, 'Failed');
    assert.deepEqual(r.errors.map((e) => [e.code, e.path]), [['ManifestInvalid', 'b-evil']]);
    assert.deepEqual((await readdir(target)).sort(), ['a-good', 'b-evil']);
    assert.deepEqual(await readdir(join(target, 'b-evil')), []);
    assert.deepEqual((await readdir(h.dir)).sort(), ['agent-0', 'data', 'target', 'vault.cred']);
  } finally {
    await h.close();
  }
});

test('garbage collection keeps what live points reach through their pages and drops the pages of deleted points', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'gc');
    await mkdir(join(src, 'kept'), { recursive: true });
    await mkdir(join(src, 'gone'), { recursive: true });
    await writeFile(join(src, 'kept', 'k.bin'), randomBytes(300_000));
    await writeFile(join(src, 'gone', 'g.bin'), randomBytes(300_000));
    const old = await backup({ ...backupOptions(a, 'gc', [src]), retainUntil: '2026-01-02' });
    await writeFile(join(src, 'gone', 'g.bin'), randomBytes(300_000));
    const live = await backup(backupOptions(a, 'gc', [src]));
    const pagesBefore = await pageCount(h);
    // The old point goes (its retain-until day is long past), then its garbage.
    const pruned = await h.admin.prune();
    assert.equal(pruned.status, 'Completed');
    const points = await h.admin.listPoints({ item: 'gc' });
    assert.deepEqual(points.map((p) => p.id), [live.point.id]);
    const gc = await collectGarbage({ db: h.server.db, stores: h.server.stores, clock: { now: () => new Date() } }, SYSTEM);
    assert.equal(gc.status, 'Completed');
    // The old point's own pages (its root and the old `gone`) went; the shared `kept` page stayed.
    assert.equal(await pageCount(h), pagesBefore - 2);
    assert.ok(old.point.id !== live.point.id);
    const target = join(h.dir, 'after-gc');
    const r = await restore({ client: a.client, keys: a.keys, pointId: live.point.id, target });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'gc')), []);
    const verified = await h.admin.verify({});
    assert.equal(verified.status, 'Completed');
  } finally {
    await h.close();
  }
});
