/**
 * ZRS on the embedded default's three zone folders: a backup completes with one zone gone and
 * the zone is repaired when it returns; a restore is byte-identical with any one zone
 * deleted (the deleted zone is then rebuilt by `verify --repair`); with two zones gone a
 * backup fails with StorageUnavailable and commits nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { JobInfo, VaultDetails } from '../src/core/api.js';
import { CoffreError } from '../src/core/errors.js';
import { backupOptions, cli, harness } from '../testkit/harness.js';
import { MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

/** Every file of a folder, relative path → size. */
async function files(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await readdir(dir, { recursive: true })) {
    const p = join(dir, String(name));
    const s = await stat(p);
    if (s.isFile() && !relative(dir, p).startsWith('.tmp')) out.set(relative(dir, p), s.size);
  }
  return out;
}

test('ZRS: one zone gone, a backup completes and the zone is repaired on return; restore with any one zone deleted; two zones gone fail', async () => {
  const h = await harness({ vault: 'zoned', redundancy: 'ZRS' });
  try {
    const a = await h.agent();
    const zone = (n: number) => join(h.dir, 'data', 'regions', 'primary', `zone-${n}`);
    const admin = (args: string[]) => cli(args, { COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken, COFFRE_FINGERPRINT: h.server.fingerprint! }, { cwd: h.dir });
    const src = join(h.dir, 'src');
    await writeTree(src, { 'notes.md': seededText('zrs', 2000), 'bin/blob': seededBytes('zrs', 2 * MiB), 'bin/other': seededBytes('zrs2', MiB + 7) });

    await rename(zone(2), `${zone(2)}.away`);
    const first = await backup(backupOptions(a, 'src', [src]));
    assert.equal(first.point.files, 3);
    const shown = JSON.parse((await admin(['vault', 'show', 'zoned', '--json'])).stdout) as VaultDetails;
    assert.equal(shown.redundancy, 'ZRS');
    assert.deepEqual(shown.stores.map((s) => s.name), ['primary/zone-1', 'primary/zone-2', 'primary/zone-3']);
    assert.ok(shown.zoneRepair.pendingObjects > 0, 'the missed copies are queued');
    assert.deepEqual(shown.replication, { pendingObjects: 0, pendingBytes: 0, oldestPendingSeconds: 0 }, 'ZRS has no paired region');

    await rename(`${zone(2)}.away`, zone(2));
    assert.equal(await h.server.drainReplication(), 0);
    assert.deepEqual(await files(zone(2)), await files(zone(1)), 'zone 2 holds every object again');
    assert.deepEqual(await files(zone(3)), await files(zone(1)));
    const after = JSON.parse((await admin(['vault', 'show', 'zoned', '--json'])).stdout) as VaultDetails;
    assert.equal(after.zoneRepair.pendingObjects, 0);

    for (const n of [1, 2, 3]) {
      await rm(zone(n), { recursive: true });
      const target = join(h.dir, `restore-without-zone-${n}`);
      const r = await restore({ client: a.client, keys: a.keys, pointId: first.point.id, target });
      assert.equal(r.job.status, 'Completed', `zone ${n} deleted: ${JSON.stringify(r.errors)}`);
      assert.deepEqual(await compareTrees(src, join(target, 'src'), { mtimes: true }), [], `zone ${n} deleted`);
      // The zone comes back as an empty disk; verify --repair rebuilds it from the others.
      await mkdir(zone(n));
      const repair = await admin(['verify', '--repair', '--json']);
      assert.equal(repair.code, 0, repair.stderr);
      const job = JSON.parse(repair.stdout) as JobInfo;
      const reports = job.details.stores as { store: string; missing: number; repaired: number; damaged: number }[];
      const mine = reports.find((s) => s.store === `primary/zone-${n}`)!;
      assert.ok(mine.missing > 0 && mine.repaired === mine.missing, JSON.stringify(mine));
      assert.deepEqual(reports.filter((s) => s !== mine).map((s) => s.missing + s.damaged), [0, 0]);
      assert.deepEqual(await files(zone(n)), await files(zone(n === 1 ? 2 : 1)), `zone ${n} rebuilt`);
    }

    await rename(zone(1), `${zone(1)}.away`);
    await rename(zone(3), `${zone(3)}.away`);
    await writeTree(src, { 'new.txt': seededText('more', 500) });
    const pointsBefore = await h.admin.listPoints({});
    await assert.rejects(backup(backupOptions(a, 'src', [src])), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && /2 are needed/.test(e.message));
    assert.deepEqual((await h.admin.listPoints({})).map((p) => p.id), pointsBefore.map((p) => p.id), 'nothing was committed');
    const jobs = await h.admin.listJobs();
    assert.equal(jobs[jobs.length - 1]!.status, 'Failed');
  } finally {
    await h.close();
  }
});
