/**
 * /metrics in Prometheus text format, parsed by a Prometheus text parser: its job counters
 * match `coffre jobs`, its byte counters, points and stored bytes match the vault, and any
 * principal's key (none other) reads it. Reports over the same jobs, as JSON and CSV.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import https from 'node:https';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import type { JobInfo, PointInfo, VaultDetails } from '../src/core/api.js';
import type { Report } from '../src/core/monitor-api.js';
import { CSV_COLUMNS } from '../src/vault/reports.js';
import { backupOptions, cli, harness, storeFiles } from '../testkit/harness.js';

interface Family { name: string; type: string; metrics: { value?: string; labels?: Record<string, string>; count?: string; buckets?: Record<string, string> }[] }
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

/** GET /metrics over HTTPS, trusting the server's own certificate, as a Prometheus scraper configured with it would. */
async function scrape(server: { url: string; dataDir: string }, token?: string): Promise<{ status: number; text: string; type: string | null }> {
  const ca = await readFile(join(server.dataDir, 'tls', 'cert.pem'), 'utf8');
  return new Promise((resolve, reject) => {
    https.get(`${server.url}/metrics`, { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, type: res.headers['content-type'] ?? null }));
    }).on('error', reject);
  });
}

test('/metrics parses as Prometheus text and its counters match `coffre jobs`; reports as JSON and CSV', { timeout: 120_000 }, async () => {
  const h = await harness({ vault: 'v' });
  const env = { COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken, COFFRE_FINGERPRINT: h.server.fingerprint!, COFFRE_AGENT_DIR: join(h.dir, 'no-agent') };
  const coffre = async (...args: string[]) => {
    const r = await cli(args, env, { cwd: h.dir });
    assert.equal(r.code, 0, `coffre ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    const a = await h.agent('web01');
    const src = join(h.dir, 'site');
    await mkdir(src);
    await writeFile(join(src, 'index.html'), 'hello world\n'.repeat(5000));
    await backup(backupOptions(a, 'site', [src]));
    await writeFile(join(src, 'more.txt'), 'more\n'.repeat(100));
    const { point } = await backup(backupOptions(a, 'site', [src]));
    const failing = await a.client.startBackup('site', 'files', { paths: [src] });
    await a.client.finishJob(failing.job.id, { status: 'Failed', errors: [{ code: 'SourceUnreadable', message: 'gone' }] });
    await a.client.startBackup('site', 'files', { paths: [src] }); // still running
    await restore({ client: a.client, keys: a.keys, pointId: point.id, target: join(h.dir, 'restored') });
    await h.admin.verify({});
    assert.equal(await h.server.drainReplication(), 0);
    await h.server.maintain();

    assert.equal((await scrape(h.server)).status, 401);
    assert.equal((await scrape(h.server, 'cadm_not-a-key')).status, 401);
    assert.equal((await scrape(h.server, a.state.token)).status, 200, 'an agent key is a principal\'s key too');
    const { status, text, type } = await scrape(h.server, h.server.adminToken);
    assert.equal(status, 200);
    assert.match(type ?? '', /^text\/plain; version=0\.0\.4/);
    const families = new Map(parsePrometheus(text).map((f) => [f.name, f]));
    for (const name of families.keys()) assert.match(name, /^coffre_/);

    const jobs = JSON.parse(await coffre('jobs', '--json')) as JobInfo[];
    const expected = new Map<string, number>();
    for (const j of jobs) expected.set(`${j.operation}/${j.status}`, (expected.get(`${j.operation}/${j.status}`) ?? 0) + 1);
    const jobsTotal = families.get('coffre_jobs_total')!;
    assert.equal(jobsTotal.type, 'COUNTER');
    const got = new Map(jobsTotal.metrics.map((m) => [`${m.labels!.operation}/${m.labels!.status}`, Number(m.value)]));
    assert.deepEqual(got, expected);
    for (const k of ['Backup/Completed', 'Backup/Failed', 'Backup/InProgress', 'Restore/Completed', 'Verify/Completed', 'Prune/Completed']) assert.ok(got.has(k), k);
    assert.ok([...got.keys()].some((k) => k.startsWith('GarbageCollect/')));

    const byOp = (family: string, op: string) => Number(families.get(family)!.metrics.find((m) => m.labels!.operation === op)!.value);
    const sum = (f: (j: JobInfo) => number) => jobs.filter((j) => j.operation === 'Backup').reduce((n, j) => n + f(j), 0);
    assert.equal(byOp('coffre_job_bytes_scanned_total', 'Backup'), sum((j) => j.bytesScanned));
    assert.equal(byOp('coffre_job_bytes_new_total', 'Backup'), sum((j) => j.bytesNew));
    assert.equal(byOp('coffre_job_bytes_uploaded_total', 'Backup'), sum((j) => j.bytesUploaded));
    const points = JSON.parse(await coffre('points', '--json')) as PointInfo[];
    assert.deepEqual(families.get('coffre_points')!.metrics.map((m) => [m.labels!.vault, Number(m.value)]), [['v', points.length]]);
    const packBytes = [...(await storeFiles(h.server.dataDir, 'packs')).values()].reduce((n, s) => n + s, 0);
    assert.deepEqual(families.get('coffre_stored_bytes')!.metrics.map((m) => [m.labels!.vault, Number(m.value)]), [['v', packBytes]]);
    assert.deepEqual(families.get('coffre_items')!.metrics.map((m) => [m.labels!.health, Number(m.value)]), [['warning', 1]]);
    // The GRS vault's paired region, as `coffre vault show` tells it: caught up.
    const shown = JSON.parse(await coffre('vault', 'show', 'v', '--json')) as VaultDetails;
    const gauge = (name: string) => families.get(`coffre_replication_${name}`)!.metrics.map((m) => [m.labels!.vault, Number(m.value)]);
    assert.deepEqual([gauge('pending_objects'), gauge('pending_bytes'), gauge('oldest_pending_seconds')],
      [[['v', shown.replication.pendingObjects]], [['v', shown.replication.pendingBytes]], [['v', shown.replication.oldestPendingSeconds]]]);
    assert.deepEqual(shown.replication, { pendingObjects: 0, pendingBytes: 0, oldestPendingSeconds: 0 });
    const durations = families.get('coffre_job_duration_seconds')!;
    assert.equal(durations.type, 'HISTOGRAM');
    const ended = jobs.filter((j) => j.endTime !== null).length;
    // The parser keeps one series of a labelled histogram only, so its counts are read from the lines themselves.
    const counts = [...text.matchAll(/^coffre_job_duration_seconds_count\{[^}]*\} (\d+)$/gm)].map((m) => Number(m[1]));
    assert.equal(counts.reduce((n, c) => n + c, 0), ended, 'every job that ended through this server is in the histogram');
    const requests = families.get('coffre_http_requests_total')!.metrics;
    assert.ok(requests.some((m) => m.labels!.route === '/v1/containers/:c/packs/:pack' && m.labels!.method === 'PUT' && Number(m.value) > 0));
    assert.ok(requests.some((m) => m.labels!.route === '/metrics' && m.labels!.status === '401'));

    // Reports of the same period: three ended backups, one failed.
    const report = JSON.parse(await coffre('report', '--json')) as Report;
    const [vault, site] = report.rows;
    assert.deepEqual([vault!.scope, vault!.vault, site!.scope, site!.item], ['vault', 'v', 'item', 'site']);
    assert.deepEqual(site!.backups, { total: 4, succeeded: 2, withWarnings: 0, failed: 1 });
    assert.equal(site!.successRate, 0.667);
    assert.equal(site!.protectedBytes, points[points.length - 1]!.bytes);
    assert.equal(site!.bytesScanned, sum((j) => j.bytesScanned));
    assert.equal(site!.dedupRatio, Math.round((sum((j) => j.bytesScanned) / sum((j) => j.bytesNew)) * 1000) / 1000);
    assert.equal(vault!.storedBytesEnd, packBytes);
    assert.equal(vault!.storedGrowthBytes, packBytes, 'the vault was created in the period');
    const csv = await coffre('report', '--csv');
    const lines = csv.trimEnd().split('\r\n');
    assert.equal(lines[0], CSV_COLUMNS.join(','));
    assert.equal(lines.length, 3);
    assert.ok(lines[2]!.startsWith('item,v,site,web01,files,DefaultPolicy,4,2,0,1,0.667,'), lines[2]);
    assert.match(await coffre('report'), /site/);
    assert.equal((await cli(['report', '--from', '2026-13-01'], env, { cwd: h.dir })).code, 2);
  } finally {
    await h.close();
  }
});
