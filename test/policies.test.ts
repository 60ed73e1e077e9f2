/** Policies on a live vault: assignment, retroactive retention, dry run, prune. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { registerAgent } from '../src/agent/register.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { ManualClock } from '../src/core/clock.js';
import { CoffreError } from '../src/core/errors.js';
import { startServer } from '../src/vault/server.js';
import { clientFor, credentialsFor, PASSPHRASE, tempDir } from '../testkit/harness.js';

const DAY = 86_400_000;

test('shortening retention lists its victims in a dry run, then prunes them; every remaining point restores', async () => {
  const dir = await tempDir();
  const clock = new ManualClock(new Date('2026-03-01T02:30:00Z'));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  try {
    const admin = clientFor(server);
    await admin.createVault({ name: 'v' });
    const state = await registerAgent({ agentDir: join(dir, 'agent'), passphrase: PASSPHRASE, machine: 'm', credentials: await credentialsFor(server, 'v') });
    const client = clientFor(server, state.token);
    const keys = keysFromJSON(state.keys);
    const src = join(dir, 'src');
    await mkdir(src);
    const monthly = { name: 'Nightly', timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 30 }, weekly: { count: 8, weekDays: ['Sunday'] } } };
    await admin.createPolicy('Nightly', monthly);
    await assert.rejects(admin.createPolicy('Broken', { ...monthly, retention: { daily: { count: 3 } } }), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidPolicy' && /daily/.test(e.message));

    // A month of nightly points, each with different content.
    const contents = new Map<string, string>();
    for (let day = 0; day < 28; day++) {
      await writeFile(join(src, 'today.txt'), `day ${day}\n`);
      const r = await backup({ client, containerId: state.containerId, keys, agentDir: join(dir, 'agent'), vaultId: state.vaultId, item: 'files', paths: [src], kind: 'Scheduled' });
      contents.set(r.point.id, `day ${day}\n`);
      if (day === 0) await admin.assignPolicy('Nightly', 'files');
      clock.advance(DAY);
    }
    assert.equal((await admin.listPoints({ item: 'files' })).length, 28);

    // Keep 7 days of dailies, Sundays for 8 weeks.
    const shorter = { ...monthly, retention: { daily: { count: 7 }, weekly: { count: 8, weekDays: ['Sunday'] } } };
    const dry = await admin.setPolicy('Nightly', shorter, true);
    const points = await admin.listPoints({ item: 'files' });
    const now = clock.now().getTime();
    const sunday = (t: string) => new Date(t).getUTCDay() === 0;
    const expected = points.filter((p) => now - Date.parse(p.time) >= 7 * DAY && !sunday(p.time)).map((p) => p.id).sort();
    assert.deepEqual(dry.change.deleted.map((d) => d.id).sort(), expected);
    assert.ok(dry.change.deleted.length >= 15);
    assert.equal((await admin.listPoints({ item: 'files' })).length, 28, 'a dry run deletes nothing');

    const applied = await admin.setPolicy('Nightly', shorter, false);
    assert.deepEqual(applied.prune?.details.pointsDeleted && [...(applied.prune.details.pointsDeleted as string[])].sort(), expected);
    const left = await admin.listPoints({ item: 'files' });
    assert.equal(left.length, 28 - expected.length);
    for (const p of left) {
      const target = join(dir, `r-${p.id}`);
      await restore({ client, keys, pointId: p.id, target });
      assert.equal(await readFile(join(target, 'src', 'today.txt'), 'utf8'), contents.get(p.id));
    }
    // Agents cannot prune or change policies.
    await assert.rejects(client.prune(), (e: unknown) => e instanceof CoffreError && e.code === 'Forbidden');
    await assert.rejects(client.setPolicy('Nightly', monthly, false), (e: unknown) => e instanceof CoffreError && e.code === 'Forbidden');
    const shown = await admin.showPolicy('Nightly');
    assert.deepEqual(shown.items, ['files']);
  } finally {
    await server.close();
  }
});
