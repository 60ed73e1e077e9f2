/**
 * Self-healing: bytes flipped in one copy of a pack (the primary's, of a GRS vault) do not
 * fail a restore: the range is served from the intact copy in the paired region, the damaged
 * copy is rewritten, and the restore job names the repair. `verify` reports damage per store
 * and `verify --repair` fixes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { JobInfo } from '../src/core/api.js';
import { packKind } from '../src/core/pack.js';
import { backupOptions, cli, harness, vaultDir } from '../testkit/harness.js';
import { MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

async function flip(file: string, at: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(16);
    await fh.read(b, 0, 16, at);
    for (let i = 0; i < b.length; i++) b[i]! ^= 0x5a;
    await fh.write(b, 0, 16, at);
  } finally {
    await fh.close();
  }
}

interface StoreReport { store: string; damaged: number; missing: number; repaired: number }

test('a damaged copy of a pack: restore succeeds from another copy, the job names the repair; verify reports then repairs', async () => {
  const h = await harness({ vault: 'heal' });
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await writeTree(src, { 'big.bin': seededBytes('heal', 3 * MiB), 'note.txt': seededText('heal', 200) });
    const { point } = await backup(backupOptions(a, 'src', [src]));
    assert.equal(await h.server.drainReplication(), 0);
    const data = join(h.dir, 'data');
    const packsDir = join(vaultDir(data, h.credentials.vaultId), 'packs', a.state.containerId);
    // A data pack: the point's tree pack is a few hundred bytes, too small for the flips below.
    let prefix: string | undefined;
    let packId: string | undefined;
    for (const pre of await readdir(packsDir)) {
      for (const id of await readdir(join(packsDir, pre))) {
        if (!packId && packKind(await readFile(join(packsDir, pre, id))) === 'data') [prefix, packId] = [pre, id];
      }
    }
    assert.ok(packId, 'the backup stored a data pack');
    const primaryCopy = join(packsDir, prefix!, packId!);
    const secondaryCopy = join(vaultDir(data, h.credentials.vaultId, join('secondary', 'zone-1')), 'packs', a.state.containerId, prefix!, packId!);
    const intact = await readFile(secondaryCopy);
    assert.deepEqual(await readFile(primaryCopy), intact);

    await flip(primaryCopy, 1000);
    const env = { COFFRE_SERVER: h.server.url, COFFRE_FINGERPRINT: h.server.fingerprint! };
    const target = join(h.dir, 'restored');
    const r = await cli(['--agent-dir', a.agentDir, 'restore', point.id, '--target', target, '--json'], env, { cwd: h.dir });
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout) as JobInfo;
    assert.equal(job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'src'), { mtimes: true }), []);
    const repairs = job.details.repairs as { store: string; key: string; problem: string; repaired: boolean }[];
    assert.deepEqual(repairs.map((x) => [x.store, x.key, x.problem, x.repaired]), [['primary/zone-1', `packs/${a.state.containerId}/${prefix}/${packId}`, 'damaged', true]]);
    assert.deepEqual(await readFile(primaryCopy), intact, 'the damaged copy was rewritten');

    // Damage again: verify finds it in that store only, and --repair fixes it.
    await flip(primaryCopy, 2000);
    const admin = { COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken, COFFRE_FINGERPRINT: h.server.fingerprint! };
    const found = await cli(['verify', '--json'], admin, { cwd: h.dir });
    assert.equal(found.code, 1);
    const v1 = JSON.parse(found.stdout) as JobInfo;
    assert.equal(v1.status, 'Failed');
    assert.ok(v1.errors.length > 0 && v1.errors.every((e) => e.code === 'ChecksumMismatch' && e.message.includes(packId!) && e.message.includes('store primary/zone-1') && e.message.includes(point.id)), JSON.stringify(v1.errors));
    const s1 = v1.details.stores as StoreReport[];
    assert.deepEqual(s1.map((s) => [s.store, s.damaged, s.missing, s.repaired]), [['primary/zone-1', 1, 0, 0], ['secondary/zone-1', 0, 0, 0]]);
    const fixed = await cli(['verify', '--repair', '--json'], admin, { cwd: h.dir });
    assert.equal(fixed.code, 0, fixed.stdout);
    const v2 = JSON.parse(fixed.stdout) as JobInfo;
    assert.equal(v2.status, 'Completed');
    assert.deepEqual((v2.details.stores as StoreReport[]).map((s) => [s.store, s.damaged, s.repaired]), [['primary/zone-1', 1, 1], ['secondary/zone-1', 0, 0]]);
    assert.deepEqual(await readFile(primaryCopy), intact);
    const clean = await cli(['verify'], admin, { cwd: h.dir });
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /primary\/zone-1.*│ 0 +│ 0 +│ 0/s);
  } finally {
    await h.close();
  }
});
