/**
 * PostgreSQL backups that go wrong, on a real PostgreSQL 15 server: kill -9 of the agent in the
 * middle of a full and of a log backup (no partial point, the next run completes, no WAL
 * segment lost or counted twice); a segment missing from the archive (the log backup reports
 * the gap and makes no point); a piece of the chain missing at restore time (named before
 * anything is written).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, unlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { backupDb, requireDbConfig, restoreDb, type DbBackupResult } from '../src/agent/db/engine.js';
import { listSpool } from '../src/agent/db/spool.js';
import type { DbBackupType, PointInfo } from '../src/core/api.js';
import { CoffreError } from '../src/core/errors.js';
import { cli, harness, storeFiles, type CliResult, type Harness, type TestAgent } from '../testkit/harness.js';
import type { PgCluster } from '../testkit/postgres.js';
import { archivingCluster, restoreRoot, withRestored } from '../testkit/db-fixtures.js';

let h: Harness;
let agent: TestAgent;
let source: PgCluster;
let spoolDir: string;
const DB = 'ledger';

/** Rows of incompressible data (random bytes), so that a backup fills several packs and can be caught mid-way. */
async function addRandomRows(rows: number): Promise<void> {
  await source.query(`CREATE TABLE IF NOT EXISTS noise (id serial PRIMARY KEY, body bytea NOT NULL)`);
  await source.query(`ALTER TABLE noise ALTER COLUMN body SET STORAGE EXTERNAL`);
  await source.query(`INSERT INTO noise (body) SELECT (SELECT decode(string_agg(md5(random()::text || s || g), ''), 'hex') FROM generate_series(1, 512) AS s) FROM generate_series(1, $1) AS g`, [rows]);
}

before(async () => {
  h = await harness();
  agent = await h.agent('dbhost');
  ({ cluster: source, spoolDir } = await archivingCluster());
  await addRandomRows(1200);
  const r = await cli(['--agent-dir', agent.agentDir, 'db', 'protect', DB, '--connection', source.url, '--spool-dir', spoolDir]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await source?.close();
  await h?.close();
});

async function backup(type: DbBackupType): Promise<DbBackupResult> {
  const config = await requireDbConfig(agent.agentDir, DB);
  return backupDb({ client: agent.client, containerId: agent.state.containerId, keys: agent.keys, agentDir: agent.agentDir, vaultId: agent.state.vaultId, config, archiveTimeoutMs: 60_000 }, type);
}

/** Runs `coffre db backup` in its own process and kills it -9 once new packs have reached the vault. */
async function killMidway(type: 'full' | 'log'): Promise<CliResult> {
  const packsBefore = await storeFiles(h.server.dataDir, 'packs');
  let pid = 0;
  let ended = false;
  const child = cli(['--agent-dir', agent.agentDir, 'db', 'backup', DB, '--type', type], {}, { onSpawn: (p) => { pid = p; } });
  void child.then(() => { ended = true; });
  for (let i = 0; ; i++) {
    if (ended) throw new Error(`the ${type} backup ended before it could be killed mid-way: ${(await child).stderr}`);
    const now = await storeFiles(h.server.dataDir, 'packs');
    if ([...now.keys()].some((k) => !packsBefore.has(k))) break;
    if (i > 6000) throw new Error('no pack arrived within 60 s');
    await sleep(10);
  }
  process.kill(pid, 'SIGKILL');
  const r = await child;
  assert.equal(r.signal, 'SIGKILL', `the ${type} backup was killed before it ended`);
  return r;
}

const points = async () => (await agent.client.dbChain(DB)) as PointInfo[];

/** Every log point's segments, in order: together they must be one run without a gap or a repeat. */
function assertContinuousLogs(all: PointInfo[], fromSegment: number): void {
  const logs = all.filter((p) => p.backupType === 'Log').sort((a, b) => a.database!.firstSegment - b.database!.firstSegment);
  let next = fromSegment;
  for (const l of logs) {
    assert.equal(l.database!.firstSegment, next, `log point ${l.id} starts right after the previous one (no segment lost or counted twice)`);
    next = l.database!.lastSegment + 1;
  }
}

test('kill -9 during a full and during a log backup: no partial point, the next runs complete, every WAL segment once', async (t) => {
  const t0 = Date.now();
  const lap = (what: string) => t.diagnostic(`${what}: ${Date.now() - t0} ms`);
  const killedFull = await killMidway('full');
  assert.equal(killedFull.stdout, '');
  assert.deepEqual(await points(), [], 'no partial point after the killed full');
  // The killed agent's lock and PostgreSQL's abandoned backup are both gone for the next run.
  lap('killed full');
  const full = await backup('Full');
  lap('full');
  assert.equal((await points()).length, 1);

  await addRandomRows(1000); // some WAL for the log backup to carry
  lap('more rows');
  await killMidway('log');
  lap('killed log');
  const afterKill = await points();
  assert.ok(afterKill.filter((p) => p.backupType === 'Log').length <= 1);
  await source.query(`INSERT INTO noise (body) VALUES ('\\x01')`);
  const log = await backup('Log');
  lap('log');
  assert.equal(log.point.backupType, 'Log');
  const all = await points();
  assertContinuousLogs(all, full.database.firstSegment);
  const lastLog = all.filter((p) => p.backupType === 'Log').at(-1)!;
  // Whatever the spool held up to the last log point is in the vault and gone from the spool.
  assert.deepEqual(listSpool(spoolDir, full.database.walSegmentSize).segments.filter((s) => s.segNo <= lastLog.database!.lastSegment), []);

  // Nothing was lost: the latest restore holds every row.
  const [expected] = await source.query<{ n: string; s: string }>(`SELECT count(*)::text AS n, sum(length(body))::text AS s FROM noise`);
  const root = restoreRoot();
  await restoreDb({ client: agent.client, keys: agent.keys, item: DB, target: join(root, 'data'), latest: true });
  const got = await withRestored(root, join(root, 'data'), async (c) => (await c.query<{ n: string; s: string }>(`SELECT count(*)::text AS n, sum(length(body))::text AS s FROM noise`))[0]);
  lap('restored and checked');
  assert.deepEqual(got, expected);
});

test('a segment missing from the archive: the log backup reports the gap and makes no point; a new full starts a new chain', async () => {
  const before = await points();
  // A segment archived after the last log point disappears from the spool.
  await source.query(`INSERT INTO noise (body) VALUES ('\\x02')`);
  await source.query(`SELECT pg_switch_wal()`);
  await source.query(`INSERT INTO noise (body) VALUES ('\\x03')`);
  const config = await requireDbConfig(agent.agentDir, DB);
  const lastLog = before.filter((p) => p.backupType === 'Log').at(-1)!;
  const lost = lastLog.database!.lastSegment + 1;
  for (let i = 0; !listSpool(spoolDir, config.walSegmentSize).segments.some((s) => s.segNo === lost); i++) {
    if (i > 600) throw new Error('the switched segment was never archived');
    await sleep(100);
  }
  const lostName = listSpool(spoolDir, config.walSegmentSize).segments.find((s) => s.segNo === lost)!.name;
  unlinkSync(join(spoolDir, lostName));
  await assert.rejects(backup('Log'), (e: unknown) => e instanceof CoffreError && e.code === 'WalGap' && e.message.includes(lostName) && /full backup/.test(e.message));
  assert.equal((await points()).length, before.length, 'no point for a broken chain');
  const viaCli = await cli(['--agent-dir', agent.agentDir, 'db', 'backup', DB, '--type', 'log']);
  assert.equal(viaCli.code, 1);
  assert.match(viaCli.stderr, new RegExp(`${lostName}.*\\[WalGap\\]`, 's'));

  // A new full: the next log point restarts the chain from it, says so, and the ranges show the gap.
  const full2 = await backup('Full');
  const log = await backup('Log');
  assert.equal(log.database.firstSegment, full2.database.firstSegment);
  assert.ok(log.warnings.some((w) => w.code === 'WalGap'));
  const ranges = await agent.client.dbRanges(DB);
  assert.equal(ranges.length, 2, 'two ranges: before the gap, and from the new full on');
  assert.equal(ranges[1]!.from, full2.database.consistentAt);

  // A differential whose full is gone cannot be restored: named before anything is written.
  const diff = await backup('Differential');
  assert.equal(diff.database.basedOn, full2.point.id);
  await h.server.db.deleteFrom('points').where('id', '=', full2.point.id).execute();
  const target = join(restoreRoot(), 'data');
  await assert.rejects(restoreDb({ client: agent.client, keys: agent.keys, item: DB, target, pointId: diff.point.id }),
    (e: unknown) => e instanceof CoffreError && e.code === 'ChainIncomplete' && e.message.includes(full2.point.id));
  assert.equal(existsSync(target), false, 'nothing written');
});
