/**
 * Corruption: damage in the vault's store is found by `verify` (naming the points it breaks),
 * and a restore never writes damaged bytes: the affected file is left out and named, the rest
 * comes back exactly, and the job and the CLI report failure. Damaged uploads are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { JobInfo } from '../src/core/api.js';
import { encodeBlob } from '../src/core/blob.js';
import { chunkId, ID_BYTES } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { PackWriter, packKind } from '../src/core/pack.js';
import { backupOptions, cli, harness, storeFiles, vaultDir, type Harness, type TestAgent } from '../testkit/harness.js';

const MiB = 1024 * 1024;


/** Every path under a folder, relative, for "nothing else was written" checks. */
async function listTree(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).map(String).sort();
}

async function flipBytes(file: string, offset: number, count: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const buf = Buffer.alloc(count);
    await fh.read(buf, 0, count, offset);
    for (let i = 0; i < count; i++) buf[i]! ^= 0xff;
    await fh.write(buf, 0, count, offset);
  } finally {
    await fh.close();
  }
}

async function blobIdSet(a: TestAgent): Promise<Set<string>> {
  const ids = await a.client.blobIds(a.state.containerId);
  const out = new Set<string>();
  for (let o = 0; o < ids.length; o += ID_BYTES) out.add(ids.toString('hex', o, o + ID_BYTES));
  return out;
}

/**
 * Two points of item "proj": the first holds only victim.bin, so the one pack it creates holds
 * victim.bin's chunks and nothing else; the second adds other files (in other packs).
 */
async function twoPointsWithKnownPack(h: Harness, a: TestAgent) {
  const dataDir = join(h.dir, 'data');
  const src = join(h.dir, 'proj');
  await mkdir(src);
  await writeFile(join(src, 'victim.bin'), randomBytes(3 * MiB));
  const before = await storeFiles(dataDir, 'packs');
  const p1 = (await backup(backupOptions(a, 'proj', [src]))).point;
  // Tree pages travel in packs of their own; the chunks of victim.bin in one pack of chunks.
  const fresh = [...(await storeFiles(dataDir, 'packs')).keys()].filter((p) => !before.has(p));
  const victimPacks: string[] = [];
  for (const p of fresh) if (packKind(await readFile(p)) === 'data') victimPacks.push(p);
  assert.equal(victimPacks.length, 1, 'the first backup stores one pack of chunks');
  await writeFile(join(src, 'other.bin'), randomBytes(2 * MiB + 17));
  await mkdir(join(src, 'notes'));
  await writeFile(join(src, 'notes', 'todo.md'), '- check the backups\n'.repeat(500));
  await writeFile(join(src, 'notes', 'empty.txt'), '');
  const second = await backup(backupOptions(a, 'proj', [src]));
  assert.equal(second.counters.filesChanged, 3, 'victim.bin is not read again: its chunks are shared by both points');
  return { src, p1, p2: second.point, victimPack: victimPacks[0]! };
}

test('a damaged pack: verify fails naming the points, restore leaves out only the damaged file and reports it', async () => {
  const h = await harness({ redundancy: 'LRS' });
  try {
    const a = await h.agent();
    const { src, p1, p2, victimPack } = await twoPointsWithKnownPack(h, a);
    const packId = basename(victimPack);

    // Before the damage, everything checks out.
    const clean = await h.admin.verify({});
    assert.equal(clean.status, 'Completed');
    assert.deepEqual(clean.errors, []);

    // Flip bytes inside the first blob of victim.bin's pack (well before the footer).
    assert.ok((await stat(victimPack)).size > 3 * MiB);
    await flipBytes(victimPack, 4096, 8);

    // verify: Failed, a ChecksumMismatch for that pack that names both points using the chunk.
    const job = await h.admin.verify({});
    assert.equal(job.status, 'Failed');
    assert.ok(job.errors.length >= 1);
    for (const e of job.errors) {
      assert.equal(e.code, 'ChecksumMismatch', e.message);
      assert.ok(e.message.includes(packId), `the error names the damaged pack: ${e.message}`);
      assert.ok(e.message.includes(p1.id) && e.message.includes(p2.id), `the error names both affected points: ${e.message}`);
    }
    // The recorded job says the same.
    const stored = await h.admin.getJob(job.id);
    assert.equal(stored.status, 'Failed');
    assert.deepEqual(stored.errors, job.errors);

    // The CLI: non-zero exit, JSON job with the error.
    const verifyCli = await cli(['verify', '--json'], { COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken, COFFRE_FINGERPRINT: h.server.fingerprint! }, { cwd: h.dir });
    assert.equal(verifyCli.code, 1, verifyCli.stderr);
    const cliJob = JSON.parse(verifyCli.stdout) as JobInfo;
    assert.equal(cliJob.status, 'Failed');
    assert.ok(cliJob.errors.some((e) => e.code === 'ChecksumMismatch' && e.message.includes(p2.id)));

    // Restore of the second point: victim.bin is left out, everything else is exact.
    const target = join(h.dir, 'restore-p2');
    const r = await restore({ client: a.client, keys: a.keys, pointId: p2.id, target });
    assert.equal(r.job.status, 'Failed');
    assert.deepEqual(r.errors.map((e) => [e.code, e.path]), [['ChecksumMismatch', 'proj/victim.bin']]);
    assert.deepEqual(await compareTrees(src, join(target, 'proj')), [{ path: 'victim.bin', what: 'missing' }]);
    assert.deepEqual(await listTree(target), ['proj', 'proj/notes', 'proj/notes/empty.txt', 'proj/notes/todo.md', 'proj/other.bin'],
      'no partial or temporary file is left behind');
    const restoreJob = await h.admin.getJob(r.job.id);
    assert.equal(restoreJob.operation, 'Restore');
    assert.equal(restoreJob.status, 'Failed');
    assert.ok(restoreJob.errors.some((e) => e.code === 'ChecksumMismatch' && e.path === 'proj/victim.bin' && e.message.includes('proj/victim.bin')));

    // The first point holds only the damaged file: nothing of it is written.
    const target1 = join(h.dir, 'restore-p1');
    const r1 = await restore({ client: a.client, keys: a.keys, pointId: p1.id, target: target1 });
    assert.equal(r1.job.status, 'Failed');
    assert.deepEqual(r1.errors.map((e) => e.path), ['proj/victim.bin']);
    assert.deepEqual(await listTree(target1), ['proj']);

    // The CLI restore exits non-zero; an existing good copy of the damaged file is not clobbered
    // even with --overwrite replace.
    const target2 = join(h.dir, 'restore-cli');
    await mkdir(join(target2, 'proj'), { recursive: true });
    await writeFile(join(target2, 'proj', 'victim.bin'), 'my local copy');
    const restoreCli = await cli(['restore', p2.id, '--target', target2, '--overwrite', 'replace', '--json'],
      { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url }, { cwd: h.dir });
    assert.equal(restoreCli.code, 1, restoreCli.stderr);
    assert.match(restoreCli.stderr, /ChecksumMismatch/);
    const cliRestoreJob = JSON.parse(restoreCli.stdout) as JobInfo;
    assert.equal(cliRestoreJob.status, 'Failed');
    assert.ok(cliRestoreJob.errors.some((e) => e.path === 'proj/victim.bin'));
    assert.equal(await readFile(join(target2, 'proj', 'victim.bin'), 'utf8'), 'my local copy');
    assert.ok((await readFile(join(target2, 'proj', 'other.bin'))).equals(await readFile(join(src, 'other.bin'))));
    assert.deepEqual(await compareTrees(join(src, 'notes'), join(target2, 'proj', 'notes')), []);
    assert.ok(!(await listTree(target2)).some((n) => n.includes('.coffre-part-')));
  } finally {
    await h.close();
  }
});

for (const damage of ['truncated', 'deleted'] as const) {
  test(`a ${damage} pack: verify fails, restore leaves out only the files that need it and leaves no partial file`, async () => {
    const h = await harness({ redundancy: 'LRS' });
    try {
      const a = await h.agent();
      const { src, p2, victimPack } = await twoPointsWithKnownPack(h, a);
      if (damage === 'truncated') {
        // The tail of the pack is lost (a disk error, a partial copy).
        const fh = await open(victimPack, 'r+');
        await fh.truncate(Math.floor((await fh.stat()).size / 2));
        await fh.close();
      } else {
        await rm(victimPack);
      }

      const job = await h.admin.verify({});
      assert.equal(job.status, 'Failed');
      assert.ok(job.errors.length >= 1);
      if (damage === 'truncated') {
        assert.ok(job.errors.every((e) => e.code === 'ChecksumMismatch' && e.message.includes(p2.id)), JSON.stringify(job.errors));
      } else {
        assert.deepEqual(job.errors.map((e) => e.code), ['ObjectMissing']);
        assert.ok(job.errors[0]!.message.includes(basename(victimPack)), job.errors[0]!.message);
      }

      const target = join(h.dir, 'restore');
      const r = await restore({ client: a.client, keys: a.keys, pointId: p2.id, target });
      assert.equal(r.job.status, 'Failed');
      assert.deepEqual(r.errors.map((e) => [e.code, e.path]), [['ChecksumMismatch', 'proj/victim.bin']]);
      assert.deepEqual(await compareTrees(src, join(target, 'proj')), [{ path: 'victim.bin', what: 'missing' }]);
      assert.deepEqual(await listTree(target), ['proj', 'proj/notes', 'proj/notes/empty.txt', 'proj/notes/todo.md', 'proj/other.bin'],
        'no partial or temporary file is left behind');
    } finally {
      await h.close();
    }
  });
}

test('a pack whose blob was damaged before upload is refused with ChecksumMismatch and nothing is stored', async () => {
  const h = await harness({ redundancy: 'LRS' });
  try {
    const a = await h.agent();
    const plain = randomBytes(200_000);
    const id = chunkId(a.keys.idKey, plain);
    const writer = new PackWriter();
    writer.add(id, encodeBlob(a.keys, id, plain));
    const { data: pack } = writer.finish();
    const damaged = Buffer.from(pack);
    damaged[1000]! ^= 0x01; // one bit, inside the blob: the footer's checksum no longer matches
    const packId = randomBytes(16).toString('hex');

    await assert.rejects(a.client.putPack(a.state.containerId, packId, damaged),
      (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
    // Neither stored nor indexed: the agent's next backup sends the chunk again.
    assert.equal([...(await storeFiles(join(h.dir, 'data'), 'packs')).keys()].filter((p) => basename(p) === packId).length, 0);
    assert.equal((await blobIdSet(a)).has(id.toString('hex')), false);
    assert.deepEqual(await a.client.locate(a.state.containerId, [id.toString('hex')]), []);

    // The intact pack is accepted under the same id, so the refusal was the damage's doing.
    await a.client.putPack(a.state.containerId, packId, pack);
    assert.equal((await blobIdSet(a)).has(id.toString('hex')), true);
  } finally {
    await h.close();
  }
});

test('a manifest moved to another point is refused: it is bound to its own point', async () => {
  const h = await harness({ redundancy: 'LRS' });
  try {
    const a = await h.agent();
    const one = join(h.dir, 'one');
    const two = join(h.dir, 'two');
    await mkdir(one);
    await mkdir(two);
    await writeFile(join(one, 'a.txt'), 'one');
    await writeFile(join(two, 'b.txt'), 'two');
    const p1 = (await backup(backupOptions(a, 'one', [one]))).point;
    const p2 = (await backup(backupOptions(a, 'two', [two]))).point;
    const points = join(vaultDir(join(h.dir, 'data'), h.credentials.vaultId), 'points');
    const moved = await readFile(join(points, p1.id, 'manifest'));
    await writeFile(join(points, p2.id, 'manifest'), moved);
    // As a vault that serves what it was given would: the manifest's recorded hash follows it,
    // so it reaches the agent, whose binding check is what this test is about.
    await h.server.db.updateTable('point_objects').set({ manifest_sha256: createHash('sha256').update(moved).digest('hex') }).where('point_id', '=', p2.id).execute();
    const target = join(h.dir, 'out');
    await assert.rejects(restore({ client: a.client, keys: a.keys, pointId: p2.id, target }),
      (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch');
    await assert.rejects(lstat(target), { code: 'ENOENT' }, 'nothing is written');
    // The point that owns the manifest still restores.
    const r = await restore({ client: a.client, keys: a.keys, pointId: p1.id, target: join(h.dir, 'out1') });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(one, join(h.dir, 'out1', 'one')), []);
  } finally {
    await h.close();
  }
});

test('a point whose reference list names a chunk the vault lacks is refused with ChunkMissing and never listed', async () => {
  const h = await harness({ redundancy: 'LRS' });
  try {
    const a = await h.agent();
    const src = join(h.dir, 'docs');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'kept');
    const first = (await backup(backupOptions(a, 'docs', [src]))).point;
    const stored = await a.client.blobIds(a.state.containerId);
    assert.ok(stored.length >= ID_BYTES);
    const absent = randomBytes(ID_BYTES);

    const start = await a.client.startBackup('docs', 'files', { paths: [src], excludes: [] });
    const points = join(vaultDir(join(h.dir, 'data'), h.credentials.vaultId), 'points');
    await a.client.putPointObject(start.pointId, start.job.id, 'manifest', await readFile(join(points, first.id, 'manifest')));
    // Every chunk the vault has, and one it never received.
    await a.client.putPointObject(start.pointId, start.job.id, 'refs', Buffer.concat([stored, absent]));
    const commit = { jobId: start.job.id, files: 1, bytes: 4, kind: 'OnDemand' as const, retainUntil: new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10), consistency: 'crash' as const, counters: { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 }, warnings: [] };
    await assert.rejects(a.client.commit(start.pointId, commit), (e: unknown) => {
      assert.ok(e instanceof CoffreError && e.code === 'ChunkMissing', String(e));
      assert.deepEqual((e.details as { missing: string[] }).missing, [absent.toString('hex')]);
      return true;
    });
    assert.deepEqual((await a.client.listPoints({ item: 'docs' })).map((p) => p.id), [first.id]);

    // With the reference list the vault can satisfy, the same point commits.
    await a.client.putPointObject(start.pointId, start.job.id, 'refs', stored);
    const point = await a.client.commit(start.pointId, commit);
    assert.equal(point.id, start.pointId);
    assert.deepEqual((await a.client.listPoints({ item: 'docs' })).map((p) => p.id).sort(), [first.id, start.pointId].sort());
  } finally {
    await h.close();
  }
});
