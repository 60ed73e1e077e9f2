/**
 * GRS on the embedded default, as a user sees it from the command line: the paired region
 * receives every object asynchronously; `vault show` reports the lag and `points` whether each
 * point is replicated; a cross-region restore reads the secondary only, refuses a point not
 * yet there (NotReplicated), and is byte-identical with every primary store deleted — for
 * files and for a VM. Redundancy locks with the first protected item; cross-region restore
 * is GRS-only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { JobInfo, PointInfo, VaultDetails } from '../src/core/api.js';
import { backupOptions, cli, harness } from '../testkit/harness.js';
import { cmp, MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

test('GRS: replication lag is reported then reaches zero; with every primary store deleted, restore --from secondary is byte-identical', async () => {
  const h = await harness({ vault: 'geo' });
  try {
    const a = await h.agent('laptop');
    const data = join(h.dir, 'data');
    const admin = (args: string[]) => cli(args, { COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken, COFFRE_FINGERPRINT: h.server.fingerprint! }, { cwd: h.dir });
    const agent = (args: string[]) => cli(['--agent-dir', a.agentDir, ...args], { COFFRE_SERVER: h.server.url, COFFRE_FINGERPRINT: h.server.fingerprint! }, { cwd: h.dir });
    const show = async () => {
      const r = await admin(['vault', 'show', 'geo', '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as VaultDetails;
    };

    const fresh = await show();
    assert.equal(fresh.redundancy, 'GRS');
    assert.equal(fresh.crossRegionRestore, false);
    assert.equal(fresh.redundancyLocked, false);
    assert.deepEqual(fresh.stores, [{ name: 'primary/zone-1', role: 'primary' }, { name: 'secondary/zone-1', role: 'secondary' }]);
    const on = await admin(['vault', 'set', 'geo', '--cross-region-restore', '--json']);
    assert.equal(on.code, 0, on.stderr);
    assert.equal((JSON.parse(on.stdout) as VaultDetails).crossRegionRestore, true);

    // The paired region is away: the backup completes on the primary, the copies wait.
    const secondary = join(data, 'regions', 'secondary', 'zone-1');
    await rename(secondary, `${secondary}.away`);
    const src = join(h.dir, 'docs');
    await writeTree(src, { 'report.txt': seededText('grs', 3000), 'photos/big.bin': seededBytes('grs', 3 * MiB), 'empty.txt': '' });
    const first = await backup(backupOptions(a, 'docs', [src]));
    const lagging = await show();
    assert.ok(lagging.replication.pendingObjects > 0, 'objects wait for the secondary');
    assert.ok(lagging.replication.pendingBytes > 3 * MiB * 0.9, `pending bytes ${lagging.replication.pendingBytes}`);
    assert.ok(lagging.replication.oldestPendingSeconds >= 0);
    assert.equal(lagging.redundancyLocked, true);
    const listed = JSON.parse((await admin(['points', '--json'])).stdout) as PointInfo[];
    assert.deepEqual(listed.map((p) => [p.id, p.replicated]), [[first.point.id, false]]);
    const early = await agent(['restore', first.point.id, '--target', join(h.dir, 'early'), '--from', 'secondary']);
    assert.equal(early.code, 1);
    assert.match(early.stderr, /not yet replicated.*\[NotReplicated\]/);

    // Redundancy is locked now; cross-region restore needs GRS.
    const locked = await admin(['vault', 'set', 'geo', '--redundancy', 'ZRS']);
    assert.equal(locked.code, 1);
    assert.match(locked.stderr, /locked by the first backup.*\[RedundancyLocked\]/);
    await h.admin.createVault({ name: 'local', redundancy: 'LRS' });
    const notGeo = await admin(['vault', 'set', 'local', '--cross-region-restore']);
    assert.equal(notGeo.code, 2);
    assert.match(notGeo.stderr, /needs a GRS vault.*\[InvalidArgument\]/);
    const unlocked = await admin(['vault', 'set', 'local', '--redundancy', 'GRS', '--cross-region-restore', '--json']);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.deepEqual([(JSON.parse(unlocked.stdout) as VaultDetails).redundancy, (JSON.parse(unlocked.stdout) as VaultDetails).crossRegionRestore], ['GRS', true]);

    // The paired region is back: the lag drains to zero and the point counts as replicated.
    await rename(`${secondary}.away`, secondary);
    assert.equal(await h.server.drainReplication(), 0);
    const caught = await show();
    assert.deepEqual(caught.replication, { pendingObjects: 0, pendingBytes: 0, oldestPendingSeconds: 0 });
    assert.deepEqual((JSON.parse((await admin(['points', '--json'])).stdout) as PointInfo[]).map((p) => p.replicated), [true]);

    // A VM protected on the same vault, replicated too.
    const disk = join(h.dir, 'vm01.img');
    await writeFile(disk, Buffer.concat([seededBytes('disk', 2 * MiB), Buffer.alloc(2 * MiB), seededBytes('tail', MiB)]));
    assert.equal((await agent(['vm', 'protect', 'vm01', '--disk', disk])).code, 0);
    const vmBackup = await agent(['vm', 'backup', 'vm01', '--json']);
    assert.equal(vmBackup.code, 0, vmBackup.stderr);
    const vmPoint = (JSON.parse(vmBackup.stdout) as JobInfo).pointId!;
    assert.equal(await h.server.drainReplication(), 0);

    // The primary region is lost: every primary store deleted.
    await rm(join(data, 'regions', 'primary'), { recursive: true });
    const target = join(h.dir, 'from-secondary');
    const r = await agent(['restore', first.point.id, '--target', target, '--from', 'secondary', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout) as JobInfo;
    assert.equal(job.status, 'Completed');
    assert.equal(job.details.from, 'secondary');
    assert.deepEqual(await compareTrees(src, join(target, 'docs'), { mtimes: true }), []);
    const vmTarget = join(h.dir, 'vm-from-secondary');
    await mkdir(vmTarget);
    const vr = await agent(['vm', 'restore', vmPoint, '--target', vmTarget, '--from', 'secondary', '--json']);
    assert.equal(vr.code, 0, vr.stderr);
    assert.equal((JSON.parse(vr.stdout) as JobInfo).status, 'Completed');
    assert.ok(await cmp(disk, join(vmTarget, 'vm01.img')), 'the disk comes back byte for byte');
  } finally {
    await h.close();
  }
});

test('GRS: cross-region restore must be enabled on the vault', async () => {
  const h = await harness({ vault: 'geo2' });
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await writeTree(src, { 'a.txt': 'a' });
    const p = (await backup(backupOptions(a, 'src', [src]))).point;
    await h.server.drainReplication();
    const r = await cli(['--agent-dir', a.agentDir, 'restore', p.id, '--target', join(h.dir, 't'), '--from', 'secondary'], { COFFRE_SERVER: h.server.url, COFFRE_FINGERPRINT: h.server.fingerprint! }, { cwd: h.dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /coffre vault set geo2 --cross-region-restore.*\[CrossRegionRestoreDisabled\]/);
  } finally {
    await h.close();
  }
});
