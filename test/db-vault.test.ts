/**
 * The vault's side of database points, without a database (points are committed through the
 * API with the facts an agent sends): policy rules refused with clear messages, the kinds of
 * points listed with their ranges, a log point overlapping another refused, chain-aware
 * retention shown by `policy set --dry-run` and applied by prune, and the schedule of each
 * backup type handed to the agent (the vault's clock drives months in milliseconds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { registerAgent } from '../src/agent/register.js';
import type { DbBackupType, DbPointMeta, RetentionChange } from '../src/core/api.js';
import { ManualClock } from '../src/core/clock.js';
import { CoffreError } from '../src/core/errors.js';
import { startServer } from '../src/vault/server.js';
import type { VaultClient } from '../src/agent/client.js';
import { cli, clientFor, credentialsFor, PASSPHRASE, tempDir, vaultDir } from '../testkit/harness.js';

const DAY = 86_400_000;
const MIN = 60_000;

const dbPolicy = (logDays: number) => ({
  workload: 'PostgreSQL', timeZone: 'UTC',
  full: { frequency: 'Weekly', weekDays: ['Sunday'], time: '01:00', retention: { weekly: { count: 1, weekDays: ['Sunday'] } } },
  differential: { weekDays: ['Wednesday'], time: '01:00', retentionDays: 7 },
  log: { everyMinutes: 15, retentionDays: logDays },
});

async function setup() {
  const dir = await tempDir();
  // Sunday 2026-03-01, 00:00 UTC.
  const clock = new ManualClock(new Date('2026-03-01T00:00:00Z'));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  const admin = clientFor(server);
  await admin.createVault({ name: 'v' });
  const state = await registerAgent({ agentDir: join(dir, 'agent'), passphrase: PASSPHRASE, machine: 'db01', credentials: await credentialsFor(server, 'v') });
  const agent = clientFor(server, state.token);
  return { dir, clock, server, admin, agent, async close() { await server.close(); await rm(dir, { recursive: true, force: true }); } };
}

/** A point as the agent commits it: an (empty) manifest and reference list, and its database facts. */
async function commitPoint(agent: VaultClient, item: string, meta: Partial<DbPointMeta> & { type: DbBackupType }) {
  const start = await agent.dbStartBackup(item, meta.type);
  await agent.putPointObject(start.pointId, start.job.id, 'manifest', Buffer.from('sealed manifest'));
  await agent.putPointObject(start.pointId, start.job.id, 'refs', Buffer.alloc(0));
  const database: DbPointMeta = { timeline: 1, walSegmentSize: 16 * 1024 * 1024, firstSegment: 1, lastSegment: 1, startLsn: null, stopLsn: null, consistentAt: null, basedOn: null, from: null, to: null, ...meta };
  return agent.dbCommit(start.pointId, {
    jobId: start.job.id, files: 1, bytes: 1, kind: 'Scheduled', counters: { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 }, warnings: [], database,
  });
}

test('database policies: rules refused with clear messages, and only for database items', async () => {
  const env = await setup();
  try {
    const file = join(env.dir, 'p.json');
    const refusals: [unknown, RegExp][] = [
      [{ ...dbPolicy(7), log: { everyMinutes: 10, retentionDays: 7 } }, /log\.everyMinutes must be at least 15: a log backup runs at most every 15 minutes/],
      [{ ...dbPolicy(7), full: { ...dbPolicy(7).full, times: ['01:00', '13:00'], time: undefined } }, /at most once a day/],
      [{ ...dbPolicy(7), differential: { weekDays: ['Sunday'], time: '02:00', retentionDays: 7 } }, /never runs on a full's day/],
    ];
    for (const [body, message] of refusals) {
      await writeFile(file, JSON.stringify(body));
      const r = await cli(['--server', env.server.url, '--fingerprint', env.server.fingerprint!, '--token', env.server.adminToken, 'policy', 'create', 'Bad', '--file', file]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /\[InvalidPolicy\]/);
      // The vault refuses it too, whoever asks.
      await assert.rejects(env.admin.createPolicy('Bad', body), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidPolicy');
    }
    await env.admin.createPolicy('Pg', dbPolicy(7));
    await assert.rejects(env.agent.dbProtect('orders', 'DefaultPolicy'), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidPolicy' && /not a database policy/.test(e.message));
    const p = await env.agent.dbProtect('orders', 'Pg');
    assert.equal(p.item.kind, 'PostgreSQL');
    assert.equal(p.item.policy, 'Pg');
    // Without a policy a database gets the vault's default database policy, never the file one.
    assert.equal((await env.agent.dbProtect('billing')).item.policy, 'DefaultDatabasePolicy');
    await assert.rejects(env.admin.assignPolicy('DefaultPolicy', 'orders'), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidPolicy' && /is a PostgreSQL database/.test(e.message));
  } finally {
    await env.close();
  }
});

test('points carry their type, range and chain; overlapping WAL is refused; retention keeps a full while points need it', async () => {
  const env = await setup();
  try {
    await env.admin.createPolicy('Pg', dbPolicy(10));
    await env.agent.dbProtect('orders', 'Pg');
    const t = (min: number) => new Date(Date.parse('2026-03-01T01:00:00Z') + min * MIN).toISOString();
    env.clock.set(new Date(t(1)));
    const full = await commitPoint(env.agent, 'orders', { type: 'Full', firstSegment: 10, lastSegment: 11, startLsn: '0/A000028', stopLsn: '0/B000100', consistentAt: t(1) });
    env.clock.set(new Date(t(15)));
    const log1 = await commitPoint(env.agent, 'orders', { type: 'Log', firstSegment: 10, lastSegment: 13, from: t(1), to: t(15), basedOn: full.id });
    env.clock.set(new Date(t(30)));
    const log2 = await commitPoint(env.agent, 'orders', { type: 'Log', firstSegment: 14, lastSegment: 15, from: t(15), to: t(30), basedOn: full.id });
    await assert.rejects(commitPoint(env.agent, 'orders', { type: 'Log', firstSegment: 15, lastSegment: 16, from: t(30), to: t(45) }),
      (e: unknown) => e instanceof CoffreError && e.code === 'WalOverlap' && e.message.includes(log2.id));
    await assert.rejects(commitPoint(env.agent, 'orders', { type: 'Differential', firstSegment: 16, lastSegment: 16, startLsn: '0/10000028', stopLsn: '0/10000100', consistentAt: t(31), basedOn: log1.id }),
      (e: unknown) => e instanceof CoffreError && e.code === 'ChainIncomplete');

    const listed = await cli(['--server', env.server.url, '--fingerprint', env.server.fingerprint!, '--token', env.server.adminToken, 'points', '--item', 'orders', '--json']);
    const points = JSON.parse(listed.stdout) as { id: string; backupType: string; from: string | null; to: string | null; expiresAt: string }[];
    assert.deepEqual(points.map((p) => [p.backupType, p.from, p.to]), [['Full', null, null], ['Log', t(1), t(15)], ['Log', t(15), t(30)]]);
    assert.deepEqual(await env.agent.dbRanges('orders'), [{ from: t(1), to: t(30), timeline: 1 }]);
    // The full's weekly rule keeps it a week; the logs it serves are kept 10 days: so is the full.
    assert.equal(points[0]!.expiresAt, new Date(Date.parse(t(30)) + 10 * DAY).toISOString());

    // A dry run of shorter log retention shows the full now expires with them, and why.
    const file = join(env.dir, 'p.json');
    await writeFile(file, JSON.stringify(dbPolicy(8)));
    const dry = await cli(['--server', env.server.url, '--fingerprint', env.server.fingerprint!, '--token', env.server.adminToken, 'policy', 'set', 'Pg', '--file', file, '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const change = JSON.parse(dry.stdout) as RetentionChange;
    const fullChange = change.changed.find((c) => c.id === full.id)!;
    assert.equal(fullChange.to, new Date(Date.parse(t(30)) + 8 * DAY).toISOString());
    assert.deepEqual(fullChange.keptFor?.sort(), [log1.id, log2.id].sort());
    const text = await cli(['--server', env.server.url, '--fingerprint', env.server.fingerprint!, '--token', env.server.adminToken, 'policy', 'set', 'Pg', '--file', file, '--dry-run']);
    assert.match(text.stdout, new RegExp(`keep +${full.id}.*needed by 2 kept point`));

    // Eight days on, past the full's own week: prune keeps it, since the logs still need it; past them, all go.
    env.clock.set(new Date(Date.parse(t(30)) + 8 * DAY));
    await env.admin.prune();
    assert.equal((await env.admin.listPoints({ item: 'orders' })).length, 3);
    env.clock.set(new Date(Date.parse(t(30)) + 10 * DAY + MIN));
    await env.admin.prune();
    assert.deepEqual(await env.admin.listPoints({ item: 'orders' }), []);
    assert.deepEqual(await env.agent.dbRanges('orders'), []);
  } finally {
    await env.close();
  }
});

test('the vault hands each backup type out on its schedule: fulls on Sunday, differentials on Wednesday, logs every 15 minutes', async () => {
  const env = await setup();
  try {
    await env.admin.createPolicy('Pg', dbPolicy(7));
    await env.agent.dbProtect('orders', 'Pg');
    const due = async () => (await env.agent.due()).map((r) => [(r.source as { backupType: string }).backupType, r.scheduledAt]);
    env.clock.set(new Date('2026-03-01T00:10:00Z'));
    assert.deepEqual(await due(), []);
    env.clock.set(new Date('2026-03-01T01:05:00Z'));
    assert.deepEqual(await due(), [['Full', '2026-03-01T01:00:00.000Z'], ['Log', '2026-03-01T01:00:00.000Z']]);
    await env.agent.claim('orders', '2026-03-01T01:00:00.000Z', { backupType: 'Full' });
    await assert.rejects(env.agent.claim('orders', '2026-03-01T01:00:00.000Z', { backupType: 'Full' }), (e: unknown) => e instanceof CoffreError && e.code === 'BadRequest');
    assert.deepEqual(await due(), [['Log', '2026-03-01T01:00:00.000Z']]);
    // Log runs not taken are superseded by the next one: only the latest is due, none is reported missed.
    env.clock.set(new Date('2026-03-01T01:40:00Z'));
    assert.deepEqual(await due(), [['Log', '2026-03-01T01:30:00.000Z']]);
    await env.agent.claim('orders', '2026-03-01T01:30:00.000Z', { backupType: 'Log' });
    env.clock.set(new Date('2026-03-04T01:02:00Z'));
    const wednesday = await due();
    assert.deepEqual(wednesday, [['Differential', '2026-03-04T01:00:00.000Z'], ['Log', '2026-03-04T01:00:00.000Z']]);
    const jobs = await env.admin.listJobs();
    assert.ok(!jobs.some((j) => j.errors.some((e) => e.code === 'MissedSchedule')), 'nothing missed yet');
    // A differential nobody takes within its window becomes a failed job that says so.
    env.clock.set(new Date('2026-03-04T06:00:00Z'));
    await env.agent.due();
    const missed = (await env.admin.listJobs()).filter((j) => j.errors.some((e) => e.code === 'MissedSchedule'));
    assert.equal(missed.length, 1);
    assert.match(missed[0]!.errors[0]!.message, /differential backup scheduled at 2026-03-04T01:00:00.000Z did not run/);
  } finally {
    await env.close();
  }
});

/** The catalog is lost, the stores (under the same data folder) are not: a server rebuilds it from the primary region. */
async function recoverLostCatalog(env: { dir: string; clock: ManualClock }) {
  const data = join(env.dir, 'data');
  for (const f of ['catalog.sqlite', 'catalog.sqlite-wal', 'catalog.sqlite-shm']) await rm(join(data, f), { force: true });
  return startServer({ dataDir: data, listen: '127.0.0.1:0', clock: env.clock, recoverFrom: 'primary', log: () => undefined });
}

test('a lost catalog recovered from the stores brings database points back with their chain: types, ranges and what they are based on', async () => {
  const env = await setup();
  let recovered: Awaited<ReturnType<typeof startServer>> | null = null;
  let closed = false;
  try {
    await env.admin.createPolicy('Pg', dbPolicy(10));
    await env.agent.dbProtect('orders', 'Pg');
    const t = (min: number) => new Date(Date.parse('2026-03-01T01:00:00Z') + min * MIN).toISOString();
    env.clock.set(new Date(t(1)));
    const full = await commitPoint(env.agent, 'orders', { type: 'Full', firstSegment: 10, lastSegment: 11, startLsn: '0/A000028', stopLsn: '0/B000100', consistentAt: t(1) });
    env.clock.set(new Date(t(15)));
    await commitPoint(env.agent, 'orders', { type: 'Log', firstSegment: 10, lastSegment: 13, from: t(1), to: t(15), basedOn: full.id });
    env.clock.set(new Date(t(20)));
    const diff = await commitPoint(env.agent, 'orders', { type: 'Differential', firstSegment: 14, lastSegment: 14, startLsn: '0/E000028', stopLsn: '0/E000100', consistentAt: t(20), basedOn: full.id });
    const chainBefore = await env.agent.dbChain('orders');
    const rangesBefore = await env.agent.dbRanges('orders');
    await env.server.close();
    closed = true;

    recovered = await recoverLostCatalog(env);
    assert.deepEqual([recovered.recovery!.points, recovered.recovery!.pointsSkipped], [3, []]);
    const state = await registerAgent({ agentDir: join(env.dir, 'agent-again'), passphrase: PASSPHRASE, machine: 'db01', credentials: await credentialsFor(recovered, 'v') });
    assert.equal(state.reattached, true);
    const agent = clientFor(recovered, state.token);
    const strip = (points: typeof chainBefore) => points.map((p) => ({ id: p.id, backupType: p.backupType, from: p.from, to: p.to, basedOn: p.basedOn, database: p.database }));
    assert.deepEqual(strip(await agent.dbChain('orders')), strip(chainBefore));
    assert.deepEqual(await agent.dbRanges('orders'), rangesBefore);
    assert.equal(strip(await agent.dbChain('orders')).find((p) => p.id === diff.id)!.basedOn, full.id);
    // The schedules start again from the recovery: no run is counted missed for the time the catalog was lost.
    env.clock.advance(DAY);
    await agent.due();
    const jobs = await clientFor(recovered).listJobs('v');
    assert.deepEqual(jobs.filter((j) => j.status === 'Failed').map((j) => j.errors?.[0]?.code), []);
  } finally {
    await recovered?.close();
    if (closed) await rm(env.dir, { recursive: true, force: true });
    else await env.close();
  }
});

test('a recovery from records written before database points carried their chain brings back what it can and names what it leaves out', async () => {
  const env = await setup();
  let recovered: Awaited<ReturnType<typeof startServer>> | null = null;
  let closed = false;
  try {
    // Both take the vault's DefaultDatabasePolicy.
    const orders = (await env.agent.dbProtect('orders')).item;
    const billing = (await env.agent.dbProtect('billing')).item;
    const t = (min: number) => new Date(Date.parse('2026-03-01T01:00:00Z') + min * MIN).toISOString();
    env.clock.set(new Date(t(1)));
    const oldFull = await commitPoint(env.agent, 'orders', { type: 'Full', firstSegment: 10, lastSegment: 11, startLsn: '0/A000028', stopLsn: '0/B000100', consistentAt: t(1) });
    env.clock.set(new Date(t(30)));
    const full = await commitPoint(env.agent, 'orders', { type: 'Full', firstSegment: 12, lastSegment: 13, startLsn: '0/C000028', stopLsn: '0/D000100', consistentAt: t(30) });
    const lost = await commitPoint(env.agent, 'billing', { type: 'Full', firstSegment: 3, lastSegment: 4, startLsn: '0/3000028', stopLsn: '0/4000100', consistentAt: t(30) });
    const vaultId = (await env.admin.showVault('v')).id;
    await env.server.close();
    closed = true;

    // The stores as the code before 2026-12-02 left them: no record of the default database
    // policy, none of the item billing, and a point record without its chain facts.
    const dir = vaultDir(join(env.dir, 'data'), vaultId);
    for (const f of await readdir(join(dir, 'policies'))) {
      if ((JSON.parse(await readFile(join(dir, 'policies', f), 'utf8')) as { name: string }).name === 'DefaultDatabasePolicy') await rm(join(dir, 'policies', f));
    }
    await rm(join(dir, 'items', `${billing.id}.json`));
    const record = join(dir, 'points', oldFull.id, 'record.json');
    const { database: _dropped, ...old } = JSON.parse(await readFile(record, 'utf8')) as { database?: unknown };
    await writeFile(record, JSON.stringify(old));

    recovered = await recoverLostCatalog(env);
    const report = recovered.recovery!;
    assert.equal(report.points, 1);
    assert.deepEqual(report.pointsSkipped.map((p) => p.id).sort(), [oldFull.id, lost.id].sort());
    assert.match(report.pointsSkipped.find((p) => p.id === oldFull.id)!.why, /database chain facts/);
    assert.match(report.pointsSkipped.find((p) => p.id === lost.id)!.why, /its item did not come back/);
    const state = await registerAgent({ agentDir: join(env.dir, 'agent-again'), passphrase: PASSPHRASE, machine: 'db01', credentials: await credentialsFor(recovered, 'v') });
    const agent = clientFor(recovered, state.token);
    assert.deepEqual((await agent.dbChain('orders')).map((p) => [p.id, p.backupType]), [[full.id, 'Full']]);
    const item = (await clientFor(recovered).listItems('v')).find((i) => i.name === orders.name);
    assert.equal(item?.policy, 'DefaultDatabasePolicy', 'the item takes the vault\'s default database policy again');
  } finally {
    await recovered?.close();
    if (closed) await rm(env.dir, { recursive: true, force: true });
    else await env.close();
  }
});
