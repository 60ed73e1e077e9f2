/**
 * Immutable vaults and multi-user authorization (the guard), through the API and the CLI.
 * Each refuses exactly its operations with its own code; an approved request succeeds once and
 * cannot be replayed; and the checks run in the order RBAC → immutability → guard → soft delete.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { registerAgent } from '../src/agent/register.js';
import type { VaultClient } from '../src/agent/client.js';
import { ManualClock } from '../src/core/clock.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { startServer } from '../src/vault/server.js';
import { cli, clientFor, credentialsFor, PASSPHRASE, tempDir } from '../testkit/harness.js';

const code = (c: string) => (e: unknown) => e instanceof CoffreError && e.code === c;
const DAY = 86_400_000;
const daily = (days: number) => ({ timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: days } } });

/** A vault "v" with items a, b and c, each with two daily points under DefaultPolicy (daily points kept 30 days). */
async function setup() {
  const dir = await tempDir();
  const clock = new ManualClock(new Date('2026-05-01T02:30:00Z'));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  const admin = clientFor(server);
  await admin.createVault({ name: 'v' });
  const state = await registerAgent({ agentDir: join(dir, 'agent'), credentials: await credentialsFor(server, 'v'), passphrase: PASSPHRASE, machine: 'm' });
  const agent = clientFor(server, state.token);
  const src = join(dir, 'src');
  await mkdir(src);
  await admin.createPolicy('Week', daily(7));
  await admin.createPolicy('Year', daily(365));
  for (let d = 0; d < 2; d++) {
    for (const item of ['a', 'b', 'c']) {
      await writeFile(join(src, 'f'), `${item} ${d}`);
      await backup({ client: agent, containerId: state.containerId, keys: keysFromJSON(state.keys), agentDir: join(dir, 'agent'), vaultId: state.vaultId, item, paths: [src], kind: 'Scheduled' });
    }
    clock.advance(DAY);
  }
  const principal = async (name: string, role?: string): Promise<{ key: string; client: VaultClient }> => {
    const { key } = await admin.createPrincipal(name);
    if (role) await admin.assignRole({ principal: name, role, scope: '/subscriptions/default/vaults/v' });
    return { key, client: clientFor(server, key) };
  };
  const run = (args: string[], token: string) => cli(args, { COFFRE_SERVER: server.url, COFFRE_TOKEN: token, COFFRE_FINGERPRINT: server.fingerprint!, COFFRE_AGENT_DIR: join(dir, 'none') }, { cwd: dir });
  const points = async () => (await admin.listPoints({})).length;
  return { dir, clock, server, admin, principal, run, points, async close() { await server.close(); await rm(dir, { recursive: true, force: true }); } };
}

test('an immutable vault refuses stop-with-delete, shortening a retention and disabling soft delete, each with its code; lengthening stays allowed; Locked is for good', async () => {
  const env = await setup();
  try {
    const on = await env.run(['vault', 'set-security', 'v', '--immutability', 'Unlocked', '--json'], env.server.adminToken);
    assert.equal(on.code, 0, on.stderr);
    assert.equal(JSON.parse(on.stdout).immutability, 'Unlocked');
    const before = await env.points();

    // Refused, each for what it is.
    const stop = await env.run(['item', 'stop', 'a', '--delete-data'], env.server.adminToken);
    assert.equal(stop.code, 1);
    assert.match(stop.stderr, /immutable \(Unlocked\).*stop protection and delete its data.*\[VaultImmutable\]/);
    await assert.rejects(env.admin.setPolicy('DefaultPolicy', daily(7), false), code('VaultImmutable'));
    await assert.rejects(env.admin.assignPolicy('Week', 'b'), code('VaultImmutable'));
    await assert.rejects(env.admin.setSecurity('v', { softDelete: 'Disabled' }), code('VaultImmutable'));
    await assert.rejects(env.admin.setSecurity('v', { immutability: 'Locked', softDelete: 'Disabled' }), code('VaultImmutable'));
    // A daily → weekly schedule change that drops daily points is a shortening too.
    await assert.rejects(env.admin.setPolicy('DefaultPolicy', { timeZone: 'UTC', schedule: { frequency: 'Weekly', weekDays: ['Sunday'], times: ['02:30'] }, retention: { weekly: { count: 52, weekDays: ['Sunday'] } } }, false), code('VaultImmutable'));
    assert.equal(await env.points(), before);

    // Allowed: lengthening, moving to a longer policy, stopping with the data kept, a dry run.
    const longer = await env.admin.setPolicy('DefaultPolicy', daily(60), false);
    assert.equal(longer.change.deleted.length, 0);
    await env.admin.assignPolicy('Year', 'b');
    await env.admin.stopItem('c', false);
    const dry = await env.admin.setPolicy('Year', daily(7), true);
    assert.equal(dry.change.changed.filter((c) => c.to < c.from).length, 2, 'a dry run tells what would shorten, and does nothing');
    // Resuming would make the kept points expire again: a shortening.
    await assert.rejects(env.admin.resumeItem('c'), code('VaultImmutable'));
    assert.equal(await env.points(), before);

    // Unlocked can be switched off; Locked cannot, and Locked comes only after Unlocked.
    await env.admin.setSecurity('v', { immutability: 'Disabled' });
    await assert.rejects(env.admin.setSecurity('v', { immutability: 'Locked' }), code('InvalidArgument'));
    await env.admin.setSecurity('v', { immutability: 'Unlocked' });
    await env.admin.setSecurity('v', { immutability: 'Locked' });
    const undo = await env.run(['vault', 'set-security', 'v', '--immutability', 'Unlocked'], env.server.adminToken);
    assert.match(undo.stderr, /Locked: that cannot be undone \[ImmutabilityLocked\]/);
    await assert.rejects(env.admin.setSecurity('v', { immutability: 'Disabled' }), code('ImmutabilityLocked'));
    await assert.rejects(env.admin.stopItem('a', true), code('VaultImmutable'));
    assert.equal((await env.admin.security('v')).immutability, 'Locked');
  } finally {
    await env.close();
  }
});

test('the guard: a critical operation waits for its approval, runs once, cannot be replayed; the requester never approves their own', async () => {
  const env = await setup();
  try {
    const ops = await env.principal('backupadmin', 'Backup Contributor');
    const sec = await env.principal('secadmin');
    const set = await env.run(['vault', 'set-security', 'v', '--guard', 'secadmin', '--guard-window', '60'], ops.key);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /guard\s+secadmin/);

    // 1. Asked without a request: refused, and a pending request names what would happen.
    const ask = await env.run(['item', 'stop', 'a', '--delete-data'], ops.key);
    assert.equal(ask.code, 3);
    assert.match(ask.stderr, /guarded by secadmin.*coffre guard approve [0-9a-f]+.*--request [0-9a-f]+ \[GuardApprovalRequired\]/);
    const requestId = /--request ([0-9a-f]+)/.exec(ask.stderr)![1]!;
    assert.equal((await env.admin.listItems()).find((i) => i.name === 'a')!.state, 'Protected');
    // Before approval it does not run.
    await assert.rejects(ops.client.withGuardRequest(requestId).stopItem('a', true), code('GuardRequestPending'));
    // Only the guard approves: not the requester (who is not the guard), nor an Owner.
    await assert.rejects(ops.client.approveGuardRequest(requestId), code('Forbidden'));
    await assert.rejects(env.admin.approveGuardRequest(requestId), code('Forbidden'));
    const listed = await env.run(['guard', 'requests', '--json'], sec.key);
    assert.deepEqual((JSON.parse(listed.stdout) as { id: string; status: string }[]).map((r) => [r.id, r.status]), [[requestId, 'Pending']]);
    const ok = await env.run(['guard', 'approve', requestId], sec.key);
    assert.equal(ok.code, 0, ok.stderr);

    // 2. An approval is for that operation: another item, or another principal, cannot use it.
    await assert.rejects(ops.client.withGuardRequest(requestId).stopItem('b', true), code('GuardRequestMismatch'));
    const other = await env.principal('other', 'Owner');
    await assert.rejects(other.client.withGuardRequest(requestId).stopItem('a', true), code('GuardRequestMismatch'));
    // 3. It runs once...
    const done = await env.run(['item', 'stop', 'a', '--delete-data', '--request', requestId, '--json'], ops.key);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(JSON.parse(done.stdout).state, 'SoftDeleted');
    await env.admin.undeleteItem('a');
    // ...and never again.
    const replay = await env.run(['item', 'stop', 'a', '--delete-data', '--request', requestId], ops.key);
    assert.match(replay.stderr, /already used.*\[GuardRequestUsed\]/);
    assert.equal((await env.admin.listItems()).find((i) => i.name === 'a')!.state, 'ProtectionStopped');

    // The guard cannot approve a request of its own.
    await env.admin.assignRole({ principal: 'secadmin', role: 'Backup Contributor', scope: '/subscriptions/default/vaults/v' });
    const own = await sec.client.stopItem('b', true).catch((e: CoffreError) => e);
    assert.ok(own instanceof CoffreError && own.code === 'GuardApprovalRequired');
    const ownId = (own.details as { requestId: string }).requestId;
    await assert.rejects(sec.client.approveGuardRequest(ownId), code('GuardSelfApproval'));

    // Requests expire.
    const late = await ops.client.setPolicy('DefaultPolicy', daily(7), false).catch((e: CoffreError) => e);
    assert.ok(late instanceof CoffreError && late.code === 'GuardApprovalRequired', String(late));
    const lateId = (late.details as { requestId: string }).requestId;
    env.clock.advance(61 * 60_000);
    await assert.rejects(sec.client.approveGuardRequest(lateId), code('GuardRequestExpired'));
    // An approved one that is not used in time expires too.
    const slow = (await ops.client.setPolicy('DefaultPolicy', daily(7), false).catch((e: CoffreError) => e)) as CoffreError;
    const slowId = (slow.details as { requestId: string }).requestId;
    await sec.client.approveGuardRequest(slowId);
    env.clock.advance(61 * 60_000);
    await assert.rejects(ops.client.withGuardRequest(slowId).setPolicy('DefaultPolicy', daily(7), false), code('GuardRequestExpired'));

    // Shortening a retention by reassignment, and by policy change, both wait for the guard.
    await assert.rejects(ops.client.assignPolicy('Week', 'c'), code('GuardApprovalRequired'));
    const shorten = (await ops.client.setPolicy('DefaultPolicy', daily(7), false).catch((e: CoffreError) => e)) as CoffreError;
    assert.equal(shorten.code, 'GuardApprovalRequired');
    await sec.client.approveGuardRequest((shorten.details as { requestId: string }).requestId);
    const applied = await ops.client.withGuardRequest((shorten.details as { requestId: string }).requestId).setPolicy('DefaultPolicy', daily(7), false);
    assert.equal((applied.policy.policy as { retention: { daily: { count: number } } }).retention.daily.count, 7);
    // Lengthening, and stopping with the data kept, need no approval.
    await ops.client.setPolicy('DefaultPolicy', daily(90), false);
    assert.equal((await ops.client.stopItem('b', false)).state, 'ProtectionStopped');

    // Disabling soft delete and removing the guard are guarded too.
    await assert.rejects(ops.client.setSecurity('v', { softDelete: 'Disabled' }), code('GuardApprovalRequired'));
    const drop = (await ops.client.setSecurity('v', { guard: null }).catch((e: CoffreError) => e)) as CoffreError;
    assert.equal(drop.code, 'GuardApprovalRequired');
    await sec.client.approveGuardRequest((drop.details as { requestId: string }).requestId);
    const unguarded = await env.run(['vault', 'set-security', 'v', '--no-guard', '--request', (drop.details as { requestId: string }).requestId, '--json'], ops.key);
    assert.equal(unguarded.code, 0, unguarded.stderr);
    assert.equal(JSON.parse(unguarded.stdout).guard, null);
  } finally {
    await env.close();
  }
});

test('the checks run in order: RBAC, then immutability, then the guard, then soft delete', async () => {
  const env = await setup();
  try {
    const ops = await env.principal('backupadmin', 'Backup Contributor');
    const reader = await env.principal('auditor', 'Reader');
    const sec = await env.principal('secadmin');
    await ops.client.setSecurity('v', { guard: 'secadmin' });
    const pending = async () => (await sec.client.guardRequests()).length;

    // RBAC first: a Reader is refused before anything records a request.
    await assert.rejects(reader.client.stopItem('a', true), code('Forbidden'));
    assert.equal(await pending(), 0);
    // Immutability before the guard: no request is made for what immutability refuses.
    await env.admin.setSecurity('v', { immutability: 'Unlocked' });
    await assert.rejects(ops.client.stopItem('a', true), code('VaultImmutable'));
    assert.equal(await pending(), 0);
    await env.admin.setSecurity('v', { immutability: 'Disabled' });
    // Then the guard; and soft delete last: the approved deletion keeps the data for the period.
    const e = (await ops.client.stopItem('a', true).catch((x: CoffreError) => x)) as CoffreError;
    assert.equal(e.code, 'GuardApprovalRequired');
    const id = (e.details as { requestId: string }).requestId;
    await sec.client.approveGuardRequest(id);
    const deleted = await ops.client.withGuardRequest(id).stopItem('a', true);
    assert.equal(deleted.state, 'SoftDeleted');
    assert.equal((await env.admin.listPoints({ item: 'a' })).length, 2);
    // Soft delete's own rule comes after the guard: AlwaysOn refuses even an approved request.
    await env.admin.setSecurity('v', { softDelete: 'AlwaysOn' });
    const off = (await ops.client.setSecurity('v', { softDelete: 'Disabled' }).catch((x: CoffreError) => x)) as CoffreError;
    assert.equal(off.code, 'GuardApprovalRequired');
    await sec.client.approveGuardRequest((off.details as { requestId: string }).requestId);
    await assert.rejects(ops.client.withGuardRequest((off.details as { requestId: string }).requestId).setSecurity('v', { softDelete: 'Disabled' }), code('SoftDeleteAlwaysOn'));
    assert.equal((await env.admin.security('v')).softDelete.state, 'AlwaysOn');
  } finally {
    await env.close();
  }
});
