/**
 * Scheduled database backups, on a real PostgreSQL 15 server: the agent daemon asks the vault
 * what is due and runs fulls, differentials and logs from the database policy. The vault's
 * clock is injected, so a week of schedule passes in seconds (log backups every 15 minutes).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runDueOnce } from '../src/agent/daemon.js';
import { registerAgent } from '../src/agent/register.js';
import { requireState } from '../src/agent/state.js';
import { ManualClock } from '../src/core/clock.js';
import { startServer, type RunningServer } from '../src/vault/server.js';
import { cli, clientFor, credentialsFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import type { PgCluster } from '../testkit/postgres.js';
import { archivingCluster, WORKLOAD_TABLE } from '../testkit/db-fixtures.js';

let dir: string;
let server: RunningServer;
let source: PgCluster;
let spoolDir: string;
const clock = new ManualClock(new Date('2026-03-01T00:50:00Z')); // a Sunday

before(async () => {
  dir = await tempDir();
  server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  ({ cluster: source, spoolDir } = await archivingCluster());
  await source.query(WORKLOAD_TABLE);
});

after(async () => {
  await source?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

test('the daemon runs the database policy: full on Sunday, logs every 15 minutes, a differential on Wednesday', async () => {
  const admin = clientFor(server);
  await admin.createVault({ name: 'v' });
  await admin.createPolicy('Pg', {
    workload: 'PostgreSQL', timeZone: 'UTC',
    full: { frequency: 'Weekly', weekDays: ['Sunday'], time: '01:00', retention: { weekly: { count: 4, weekDays: ['Sunday'] } } },
    differential: { weekDays: ['Wednesday'], time: '01:00', retentionDays: 14 },
    log: { everyMinutes: 15, retentionDays: 7 },
  });
  const agentDir = join(dir, 'agent');
  await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: 'db01', credentials: await credentialsFor(server, 'v') });
  const protect = await cli(['--agent-dir', agentDir, 'db', 'protect', 'orders', '--connection', source.url, '--spool-dir', spoolDir, '--policy', 'Pg']);
  assert.equal(protect.code, 0, protect.stderr);
  const state = await requireState(agentDir);
  const client = clientFor(server, state.token);
  const daemon = { client, state, agentDir };
  const ran = async (at: string) => {
    clock.set(new Date(at));
    await source.query(`INSERT INTO events (payload) VALUES ($1)`, [at]);
    const out = await runDueOnce(daemon);
    for (const r of out) assert.equal(r.error, undefined, `${r.backupType} at ${r.scheduledAt}: ${r.error?.message}`);
    return out.map((r) => r.backupType);
  };

  assert.deepEqual(await ran('2026-03-01T00:55:00Z'), []);
  assert.deepEqual(await ran('2026-03-01T01:00:30Z'), ['Full', 'Log']);
  assert.deepEqual(await ran('2026-03-01T01:15:30Z'), ['Log']);
  assert.deepEqual(await ran('2026-03-01T01:20:00Z'), [], 'nothing twice');
  assert.deepEqual(await ran('2026-03-04T01:00:10Z'), ['Differential', 'Log']);

  // In chain order (the vault's clock stood still while a full and a log were committed at once).
  const at = (p: { database?: { consistentAt: string | null; to: string | null } }) => Date.parse((p.database!.consistentAt ?? p.database!.to)!);
  const points = (await client.dbChain('orders')).sort((a, b) => at(a) - at(b));
  assert.deepEqual(points.map((p) => p.backupType), ['Full', 'Log', 'Log', 'Differential', 'Log']);
  assert.ok(points.every((p) => p.kind === 'Scheduled'));
  const logs = points.filter((p) => p.backupType === 'Log');
  for (let i = 1; i < logs.length; i++) assert.equal(logs[i]!.database!.firstSegment, logs[i - 1]!.database!.lastSegment + 1);
  assert.equal(points[3]!.basedOn, points[0]!.id);
  const ranges = await client.dbRanges('orders');
  assert.equal(ranges.length, 1);
  assert.equal(ranges[0]!.from, points[0]!.database!.consistentAt);
  assert.equal(ranges[0]!.to, logs[2]!.to);
});
