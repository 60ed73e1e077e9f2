/**
 * PostgreSQL end to end, on a real PostgreSQL 15 server: protection refused without archiving
 * (with the line to add), then Full → changes → Differential → changes → Log backups every
 * second or so while rows keep being committed; restores to chosen seconds (one between the
 * differential and the next log) each start, promote and hold exactly the rows committed up to
 * that second; a differential after a small change stores far less than the full.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { backupDb, restoreDb, requireDbConfig, type DbBackupResult } from '../src/agent/db/engine.js';
import type { PointInfo, RestorableRange } from '../src/core/api.js';
import { CoffreError } from '../src/core/errors.js';
import { cli, harness, type Harness, type TestAgent } from '../testkit/harness.js';
import { pgBin, spawnAsPostgres, startPostgres, type PgCluster } from '../testkit/postgres.js';
import { archiveSettings, committedBy, nextWholeSecond, restoreRoot, SOURCE_SETTINGS, withRestored, Workload } from '../testkit/db-fixtures.js';

let h: Harness;
let agent: TestAgent;
let source: PgCluster;
let spoolDir: string;
const DB = 'orders';
/** Large files are read in parts: small ones here, so that the tables of this small database are too. */
const PART = 1024 * 1024;

before(async () => {
  h = await harness();
  agent = await h.agent('dbhost');
  // Archiving off at first: protection must refuse it.
  source = await startPostgres({ settings: { ...SOURCE_SETTINGS } });
  spoolDir = join(source.root, 'spool');
  const r = await spawnAsPostgres(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(source.port), '-U', 'postgres', 'postgres']);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await source?.close();
  await h?.close();
});

const run = (args: string[]) => cli(['--agent-dir', agent.agentDir, ...args]);

async function backup(type: 'Full' | 'Differential' | 'Log'): Promise<DbBackupResult> {
  const config = await requireDbConfig(agent.agentDir, DB);
  return backupDb({ client: agent.client, containerId: agent.state.containerId, keys: agent.keys, agentDir: agent.agentDir, vaultId: agent.state.vaultId, config, archiveTimeoutMs: 60_000, partBytes: PART }, type);
}

test('protection, full, differential, logs and restores to chosen seconds', async (t) => {
  // Refused: no archiving. The message names what to change, including the archive_command line.
  const refused = await run(['db', 'protect', DB, '--connection', source.url, '--spool-dir', spoolDir]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /\[DatabaseNotReady\]/);
  assert.match(refused.stderr, /archive_mode = 'on'/);
  assert.match(refused.stderr, /archive_command = '.*coffre-archive-wal.js" --spool .*%p.*%f/);

  source.configure(archiveSettings(spoolDir));
  source.stop();
  await source.start();
  const protect = await run(['db', 'protect', DB, '--connection', source.url, '--spool-dir', spoolDir, '--json']);
  assert.equal(protect.code, 0, protect.stderr);
  assert.equal(JSON.parse(protect.stdout).item.kind, 'PostgreSQL');

  const work = new Workload(source.url);
  let stopped = false;
  try {
    await sleep(800);
    const full = await backup('Full');
    assert.equal(full.database.type, 'Full');
    await sleep(800);
    // A small change: a hundred accounts of the 100,000.
    await source.query(`UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid BETWEEN 1000 AND 1100`);
    await sleep(400);
    const diff = await backup('Differential');
    assert.equal(diff.database.basedOn, full.point.id);
    t.diagnostic(`full: ${full.counters.bytesScanned} bytes read, ${full.counters.bytesUploaded} stored; differential: ${diff.counters.bytesScanned} read, ${diff.counters.bytesUploaded} stored (${(100 * diff.counters.bytesUploaded / full.counters.bytesUploaded).toFixed(1)}% of the full)`);
    assert.ok(diff.counters.bytesUploaded * 10 < full.counters.bytesUploaded, `a differential after a small change stores under a tenth of the full (${diff.counters.bytesUploaded} vs ${full.counters.bytesUploaded})`);
    const changed = (await agent.client.getJob(diff.jobId)).details.changedPageBytes as number;
    t.diagnostic(`differential: ${changed} bytes of changed pages in ${(await agent.client.getJob(diff.jobId)).details.pagedFiles as number} relation files read by page`);
    assert.ok(changed > 0 && changed < full.point.bytes / 100, `the differential keeps only the changed pages (${changed} bytes)`);

    const logs: DbBackupResult[] = [];
    for (let i = 0; i < 4; i++) {
      await sleep(1100);
      logs.push(await backup('Log'));
    }
    await work.stop();
    stopped = true;
    // One more log point: every row committed is now in the vault.
    logs.push(await backup('Log'));
    // Logs follow each other without a gap or an overlap, each range starting where the previous ended.
    for (let i = 1; i < logs.length; i++) {
      assert.equal(logs[i]!.database.firstSegment, logs[i - 1]!.database.lastSegment + 1);
      assert.equal(logs[i]!.database.from, logs[i - 1]!.database.to);
    }
    assert.equal(logs[0]!.database.firstSegment, full.database.firstSegment, 'the first log point continues the full');

    // The vault lists the three kinds with their ranges and chain.
    const listed = await run(['points', '--item', DB, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const points = JSON.parse(listed.stdout) as PointInfo[];
    assert.deepEqual(points.map((p) => p.backupType), ['Full', 'Differential', 'Log', 'Log', 'Log', 'Log', 'Log']);
    assert.equal(points[1]!.basedOn, full.point.id);
    for (const p of points.filter((x) => x.backupType === 'Log')) assert.ok(p.from && p.to && p.from < p.to);
    const rangesOut = await run(['db', 'ranges', DB, '--json']);
    const ranges = JSON.parse(rangesOut.stdout) as RestorableRange[];
    assert.deepEqual(ranges, [{ from: full.database.consistentAt, to: logs[4]!.database.to, timeline: 1 }]);

    // Five chosen seconds: after the full, between the differential and the next log, and in three later logs.
    const seconds = [
      nextWholeSecond(full.database.consistentAt!),
      nextWholeSecond(diff.database.consistentAt!),
      nextWholeSecond(logs[1]!.database.from!),
      nextWholeSecond(logs[2]!.database.from!),
      nextWholeSecond(logs[3]!.database.from!),
    ];
    assert.ok(Date.parse(seconds[1]!) < Date.parse(logs[0]!.database.to!), 'the second chosen after the differential lies before the next log backup ended');
    for (const [i, s] of seconds.entries()) {
      assert.ok(ranges.some((r) => r.from <= s && s < r.to), `${s} lies in a restorable range`);
      const expected = await committedBy(source, s);
      const root = restoreRoot();
      const target = join(root, 'data');
      const t0 = Date.now();
      const r = await restoreDb({ client: agent.client, keys: agent.keys, item: DB, target, time: s });
      t.diagnostic(`restore to ${s}: ${Date.now() - t0} ms`);
      assert.equal(r.job.status, 'Completed');
      if (i === 1) assert.equal(r.plan.differential, diff.point.id, 'a second after the differential restores from it');
      if (i === 0) assert.equal(r.plan.differential, null);
      const got = await withRestored(root, target, async (c) => {
        const rows = await c.query<{ id: string }>('SELECT id FROM events ORDER BY id');
        const [acct] = await c.query<{ n: string }>(`SELECT sum(abalance)::text AS n FROM pgbench_accounts WHERE aid BETWEEN 1000 AND 1100`);
        return { ids: rows.map((x) => Number(x.id)), balance: Number(acct!.n) };
      });
      t.diagnostic(`started and checked: ${Date.now() - t0} ms`);
      assert.ok(expected.length > 0 && expected.length < work.inserted, `rows exist on both sides of ${s}`);
      assert.deepEqual(got.ids, expected, `restored to ${s}: exactly the rows committed up to it`);
      assert.equal(got.balance, i === 0 ? 0 : 101 * 7, 'the update committed before the differential is there after it, not before');
    }

    // --point: the differential alone, to its end; --latest: everything the last log holds.
    const root = restoreRoot();
    const viaCli = await run(['db', 'restore', DB, '--latest', '--target', join(root, 'data'), '--json']);
    assert.equal(viaCli.code, 0, viaCli.stderr);
    const latestIds = await withRestored(root, join(root, 'data'), async (c) => (await c.query<{ n: string }>('SELECT count(*) AS n FROM events'))[0]!.n);
    assert.equal(Number(latestIds), work.inserted, 'the latest state holds every row');

    // Refused: a time outside every range, named with the nearest ranges; nothing is written.
    const early = new Date(Date.parse(full.database.consistentAt!) - 3_600_000).toISOString();
    const notRestorable = await run(['db', 'restore', DB, '--time', early, '--target', join(restoreRoot(), 'x')]);
    assert.equal(notRestorable.code, 1);
    assert.match(notRestorable.stderr, /\[TimeNotRestorable\]/);
    assert.ok(notRestorable.stderr.includes(full.database.consistentAt!), notRestorable.stderr);
    await assert.rejects(restoreDb({ client: agent.client, keys: agent.keys, item: DB, target: join(restoreRoot(), 'y'), time: new Date(Date.now() + 3_600_000).toISOString() }),
      (e: unknown) => e instanceof CoffreError && e.code === 'TimeNotRestorable' && (e.details as { nearest: RestorableRange[] }).nearest.length === 1);
  } finally {
    if (!stopped) await work.stop();
  }
});
