/**
 * The protection lifecycle through the API and the CLI, on a server with an injected clock:
 * stop with or without the data, soft delete (prune and GC keep everything during the period;
 * undelete; purge and reclaimed space after it), soft delete Disabled and AlwaysOn, deleting a
 * vault and unregistering a machine, cancelling a job, and an on-demand backup asked for by a
 * Backup Operator and made by the agent daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { runDueOnce } from '../src/agent/daemon.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { ManualClock } from '../src/core/clock.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { startServer, type RunningServer } from '../src/vault/server.js';
import { cli, clientFor, credentialsFor, PASSPHRASE, storeBytes, storeFiles, tempDir, type TestAgent } from '../testkit/harness.js';

const code = (c: string) => (e: unknown) => e instanceof CoffreError && e.code === c;
const DAY = 86_400_000;

async function setup(start: string) {
  const dir = await tempDir();
  const clock = new ManualClock(new Date(start));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  const admin = clientFor(server);
  await admin.createVault({ name: 'v' });
  const agent = async (machine: string): Promise<TestAgent> => {
    const agentDir = join(dir, `agent-${machine}`);
    const state = await registerAgent({ agentDir, credentials: await credentialsFor(server, 'v'), passphrase: PASSPHRASE, machine });
    return { state, keys: keysFromJSON(state.keys), client: clientFor(server, state.token), agentDir };
  };
  /** The real CLI as the administrator of this server (its certificate pinned). */
  const run = (args: string[], token = server.adminToken) => cli(args, { COFFRE_SERVER: server.url, COFFRE_TOKEN: token, COFFRE_FINGERPRINT: server.fingerprint!, COFFRE_AGENT_DIR: join(dir, 'no-agent') }, { cwd: dir });
  return { dir, clock, server, admin, agent, run, async close() { await server.close(); await rm(dir, { recursive: true, force: true }); } };
}

async function tree(dir: string, seed: string): Promise<void> {
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'big.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(dir, 'sub', 'notes.txt'), `notes of ${seed}\n`.repeat(1000));
}

const packBytes = async (s: RunningServer) => [...(await storeFiles(s.dataDir, 'packs')).values()].reduce((a, b) => a + b, 0);

test('soft delete: stop-with-delete survives prune and GC, undelete brings it back byte-identical, and after the period it is purged and its space reclaimed', async () => {
  const env = await setup('2026-03-01T10:00:00Z');
  try {
    const a = await env.agent('web01');
    const docs = join(env.dir, 'docs');
    const other = join(env.dir, 'other');
    await tree(docs, 'docs');
    await tree(other, 'other');
    const opts = (item: string, paths: string[], retainUntil: string) => ({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item, paths, retainUntil });
    const { point } = await backup(opts('docs', [docs], '2026-03-05'));
    await backup(opts('other', [other], '2099-01-01'));
    const packsBefore = await packBytes(env.server);

    // Stop with delete, through the CLI: the item is soft-deleted for the vault's 14 days.
    const stop = await env.run(['item', 'stop', 'docs', '--delete-data', '--json']);
    assert.equal(stop.code, 0, stop.stderr);
    const stopped = JSON.parse(stop.stdout) as { state: string; purgeAt: string };
    assert.equal(stopped.state, 'SoftDeleted');
    assert.equal(stopped.purgeAt, '2026-03-15T10:00:00.000Z');
    await assert.rejects(backup(opts('docs', [docs], '2026-04-01')), code('ItemSoftDeleted'));

    // Past the point's own retain-until date, prune and GC run: nothing of a soft-deleted item goes.
    env.clock.set(new Date('2026-03-10T10:00:00Z'));
    const prune = await env.admin.prune();
    assert.deepEqual(prune.details.pointsDeleted, []);
    const gc = await env.admin.gc();
    assert.equal(gc.status, 'Completed');
    await env.server.maintain();
    assert.equal(await packBytes(env.server), packsBefore);
    assert.equal((await env.admin.listPoints({ item: 'docs' })).length, 1);

    // Undelete (CLI): back as stopped-with-data, its points kept with no expiry, and restorable.
    const un = await env.run(['item', 'undelete', 'docs', '--json']);
    assert.equal(un.code, 0, un.stderr);
    assert.equal(JSON.parse(un.stdout).state, 'ProtectionStopped');
    assert.equal((await env.admin.listPoints({ item: 'docs' }))[0]!.expiresAt, '9999-12-31T23:59:59.999Z');
    const target = join(env.dir, 'restored');
    const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(await compareTrees(docs, join(target, 'docs')), []);

    // Deleted again; after the period the vault purges it by itself and reclaims the space.
    await env.admin.stopItem('docs', true);
    env.clock.advance(14 * DAY - 60_000);
    await env.server.maintain();
    assert.equal((await env.admin.listPoints({ item: 'docs' })).length, 1, 'kept until the very end of the period');
    env.clock.advance(120_000);
    await env.server.maintain();
    assert.deepEqual((await env.admin.listItems()).map((i) => i.name), ['other']);
    await assert.rejects(env.admin.listPoints({ item: 'docs' }), code('ItemNotFound'));
    const packsAfter = await packBytes(env.server);
    assert.ok(packsAfter < packsBefore - 2 * 1024 * 1024, `space reclaimed: ${packsBefore} -> ${packsAfter} bytes of packs`);
    // What stays is whole: the other item restores, and verify finds nothing wrong.
    const t2 = join(env.dir, 'restored-other');
    const otherPoint = (await env.admin.listPoints({ item: 'other' }))[0]!;
    assert.deepEqual((await restore({ client: a.client, keys: a.keys, pointId: otherPoint.id, target: t2 })).errors, []);
    assert.deepEqual(await compareTrees(other, join(t2, 'other')), []);
    assert.equal((await env.admin.verify({})).status, 'Completed');
    // The purge is in the audit log, done by the vault itself.
    const audit = await env.run(['audit', '--json']);
    const entries = JSON.parse(audit.stdout) as { principal: string; operation: string; target: string; details: { points?: number } }[];
    assert.ok(entries.some((e) => e.principal === 'system' && e.operation === 'protection.purge' && e.target === 'item docs' && e.details.points === 1), audit.stdout);
    assert.ok(entries.some((e) => e.principal === 'admin' && e.operation === 'protection.stopDelete'));
  } finally {
    await env.close();
  }
});

test('stop with retain data: no more backups, no missed schedules, points never expire; resume applies retention again', async () => {
  const env = await setup('2026-03-01T02:30:00Z');
  try {
    const a = await env.agent('db01');
    const src = join(env.dir, 'src');
    await mkdir(src);
    await env.admin.createPolicy('Week', { timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 7 } } });
    const opts = { client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item: 'db', paths: [src], kind: 'Scheduled' as const };
    for (let d = 0; d < 3; d++) {
      await writeFile(join(src, 'f.txt'), `day ${d}`);
      await backup(opts);
      if (d === 0) await env.admin.assignPolicy('Week', 'db');
      env.clock.advance(DAY);
    }
    const stop = await env.run(['item', 'stop', 'db', '--retain-data']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /3 point\(s\) are kept with no expiry/);
    await assert.rejects(backup(opts), code('ProtectionStopped'));
    // A month passes: no run is due, none is recorded as missed, no point expires.
    env.clock.advance(30 * DAY);
    await env.server.maintain();
    assert.deepEqual(await a.client.due(), []);
    assert.equal((await env.admin.listJobs()).filter((j) => j.errors.some((e) => e.code === 'MissedSchedule')).length, 0);
    await env.admin.prune();
    const kept = await env.admin.listPoints({ item: 'db' });
    assert.equal(kept.length, 3);
    assert.ok(kept.every((p) => p.expiresAt.startsWith('9999-')));
    const items = await env.admin.listItems();
    assert.equal(items[0]!.state, 'ProtectionStopped');
    // Resume: the policy's 7 days apply again; the month-old points go.
    const resumed = await env.run(['item', 'resume', 'db', '--json']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).state, 'Protected');
    assert.equal((await env.admin.listPoints({ item: 'db' })).length, 0);
    await writeFile(join(src, 'f.txt'), 'after resume');
    await backup(opts);
    assert.equal((await env.admin.listPoints({ item: 'db' })).length, 1);
  } finally {
    await env.close();
  }
});

test('soft delete Disabled purges at once; AlwaysOn cannot be undone; a vault with items or machines is not deleted, then is', async () => {
  const env = await setup('2026-03-01T10:00:00Z');
  try {
    const a = await env.agent('m1');
    const src = join(env.dir, 'src');
    await tree(src, 'x');
    await backup({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item: 'x', paths: [src] });
    await env.admin.stopItem('x', true);
    const del = await env.run(['vault', 'delete', 'v']);
    assert.equal(del.code, 1);
    assert.match(del.stderr, /1 item\(s\) \(soft-deleted ones included\).*\[VaultNotEmpty\]/);
    const machineDel = await env.run(['machine', 'unregister', 'm1']);
    assert.match(machineDel.stderr, /x: SoftDeleted.*\[MachineHasItems\]/);

    // Disabling soft delete purges what it holds, and GC gives the space back.
    const before = await storeBytes(env.server.dataDir);
    const off = await env.run(['vault', 'set-security', 'v', '--soft-delete', 'Disabled', '--json']);
    assert.equal(off.code, 0, off.stderr);
    assert.deepEqual(JSON.parse(off.stdout).purged, ['x']);
    assert.ok(await storeBytes(env.server.dataDir) < before - 2 * 1024 * 1024);
    // With soft delete Disabled, stop-with-delete deletes at once.
    await backup({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item: 'y', paths: [src] });
    const gone = await env.admin.stopItem('y', true);
    assert.equal(gone.purged, true);
    assert.deepEqual(await env.admin.listItems(), []);

    // The machine goes (its key with it), then the vault.
    const un = await env.run(['machine', 'unregister', 'm1', '--json']);
    assert.equal(un.code, 0, un.stderr);
    await assert.rejects(a.client.listPoints({}), code('Unauthorized'));
    assert.deepEqual([...(await storeFiles(env.server.dataDir, 'packs')).keys()], []);
    const ok = await env.run(['vault', 'delete', 'v']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(await env.admin.listVaults(), []);

    // AlwaysOn is for good.
    await env.admin.createVault({ name: 'w' });
    await env.admin.setSecurity('w', { softDelete: 'AlwaysOn' });
    await assert.rejects(env.admin.setSecurity('w', { softDelete: 'Enabled' }), code('SoftDeleteAlwaysOn'));
    await assert.rejects(env.admin.setSecurity('w', { softDelete: 'Disabled' }), code('SoftDeleteAlwaysOn'));
    await assert.rejects(env.admin.setSecurity('w', { softDeleteDays: 200 }), code('InvalidArgument'));
    assert.equal((await env.admin.setSecurity('w', { softDeleteDays: 30 })).softDelete.days, 30);
    assert.deepEqual((await env.admin.security('w')).softDelete, { state: 'AlwaysOn', days: 30 });
  } finally {
    await env.close();
  }
});

test('a Backup Operator asks for a backup now and the agent makes it; a running job is cancelled and its agent stops', async () => {
  const env = await setup('2026-03-01T10:00:00Z');
  try {
    const a = await env.agent('app01');
    const src = join(env.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'first');
    const common = { client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item: 'app', paths: [src] };
    await backup(common);
    const { key } = await env.admin.createPrincipal('operator');
    await env.admin.assignRole({ principal: 'operator', role: 'Backup Operator', scope: '/subscriptions/default/vaults/v' });
    const asked = await env.run(['item', 'backup', 'app', '--retain-until', '2099-06-30', '--json'], key);
    assert.equal(asked.code, 0, asked.stderr);
    await writeFile(join(src, 'a.txt'), 'second');
    const ran = await runDueOnce({ client: a.client, state: { ...a.state, keySet: a.keys }, agentDir: a.agentDir });
    assert.equal(ran.length, 1, JSON.stringify(ran));
    assert.equal(ran[0]!.error, undefined);
    const points = await env.admin.listPoints({ item: 'app' });
    assert.equal(points.length, 2);
    const made = points.find((p) => p.id === ran[0]!.result!.point.id)!;
    assert.equal(made.kind, 'OnDemand');
    assert.equal(made.retainUntil, '2099-06-30');
    assert.deepEqual(await a.client.due(), [], 'an on-demand request runs once');

    // Cancel: the job ends Cancelled and the agent is told so at its next report.
    const { job } = await a.client.startBackup('app', 'files', { paths: [src] });
    const cancel = await env.run(['job', 'cancel', job.id, '--json'], key);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(JSON.parse(cancel.stdout).status, 'Cancelled');
    await assert.rejects(a.client.progress(job.id, { bytesScanned: 1 }), code('JobCancelled'));
    const again = await env.run(['job', 'cancel', job.id], key);
    assert.match(again.stderr, /\[JobNotCancellable\]/);
  } finally {
    await env.close();
  }
});
