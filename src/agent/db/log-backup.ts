/**
 * Log backups: the WAL since the previous log point, as one point with the time range it makes
 * restorable.
 *
 * A log backup first commits a tiny transaction of its own (it takes a transaction id, so
 * PostgreSQL writes a commit record) and notes the clock just before that commit: `to`. Then
 * it switches WAL segments, so the point is never older than its schedule, and waits for
 * `archive_command` to spool the switched segment. Replay to any instant before `to` meets that
 * commit (or an earlier one past the instant) and stops there; without such a record,
 * PostgreSQL would refuse to end recovery at a target it never reached.
 *
 * The point holds the spooled segments from the one after the previous log point's last (the
 * vault knows it) through the switched one: every segment once, in order. A missing segment is
 * a gap that makes every later instant unrestorable: it is reported as WalGap and no point is
 * made. Only after the vault has committed the point are its segments removed from the spool;
 * a run killed before that leaves them for the next run, which skips what the vault already
 * holds. The vault itself refuses a log point overlapping another.
 */
import type pg from 'pg';
import type { DbPointMeta, JobCounters, JobProblem, PointInfo } from '../../core/api.js';
import type { DbManifest } from '../../core/db-manifest.js';
import { CoffreError } from '../../core/errors.js';
import { parseSegmentName, segmentName } from '../../core/wal.js';
import { JobReporter, defaultRetainUntil } from '../job-report.js';
import { addWal, DEFAULT_ARCHIVE_TIMEOUT_MS, lockFile, readyConnection, type DbBackupOptions, type DbBackupResult } from './base-backup.js';
import { PointWriter, putDbPointObjects } from './point-writer.js';
import { listSpool, removeFromSpool, takeLock, waitForSegments } from './spool.js';

interface Continuation { first: number; from: string; basedOn: string; restarted: boolean }

/**
 * Where this log point's WAL starts: right after the previous log point of this timeline; or,
 * when there is none, or the spool cannot continue it and a newer base exists, at the start
 * of the oldest base (newer than that log point) whose WAL the spool still holds in full, so
 * the new run of log points covers as much time as it can.
 */
function continuation(chain: PointInfo[], timeline: number, spooled: Set<number>, last: number, name: string): Continuation {
  const onTimeline = chain.filter((p) => p.database?.timeline === timeline);
  const logs = onTimeline.filter((p) => p.backupType === 'Log').sort((a, b) => a.database!.lastSegment - b.database!.lastSegment);
  const bases = onTimeline.filter((p) => p.backupType !== 'Log').sort((a, b) => Date.parse(a.database!.consistentAt!) - Date.parse(b.database!.consistentAt!));
  const prev = logs[logs.length - 1];
  if (bases.length === 0 && !prev) {
    throw new CoffreError('ChainIncomplete', `database ${name} has no full backup on timeline ${timeline} yet: log backups continue one; take it with \`coffre db backup ${name} --type full\``);
  }
  const held = (from: number) => { for (let n = from; n <= last; n++) if (!spooled.has(n)) return false; return true; };
  if (prev) {
    const next = prev.database!.lastSegment + 1;
    const continues = { first: next, from: prev.database!.to!, basedOn: prev.database!.basedOn ?? prev.id, restarted: false };
    if (held(next)) return continues;
    const newer = bases.find((b) => b.database!.firstSegment > next && Date.parse(b.database!.consistentAt!) > Date.parse(prev.database!.to!) && held(b.database!.firstSegment));
    // No newer base to restart from: the gap is reported on the continuing chain.
    return newer ? { first: newer.database!.firstSegment, from: newer.database!.consistentAt!, basedOn: newer.id, restarted: true } : continues;
  }
  const oldest = bases.find((b) => held(b.database!.firstSegment)) ?? bases[bases.length - 1]!;
  return { first: oldest.database!.firstSegment, from: oldest.database!.consistentAt!, basedOn: oldest.id, restarted: false };
}

export async function backupLog(opts: DbBackupOptions): Promise<DbBackupResult> {
  const { config } = opts;
  const release = takeLock(lockFile(opts.agentDir, config.name), `database ${config.name}`);
  let pgc: pg.Client | null = null;
  try {
    pgc = await readyConnection(config);
    return await runLog(opts, pgc);
  } finally {
    await pgc?.end().catch(() => undefined);
    release();
  }
}

async function runLog(opts: DbBackupOptions, pgc: pg.Client): Promise<DbBackupResult> {
  const { client, config } = opts;
  const segSize = config.walSegmentSize;
  const chain = await client.dbChain(config.name);
  const start = await client.dbStartBackup(config.name, 'Log');
  const jobId = start.job.id;
  const warnings: JobProblem[] = [];
  let writer: PointWriter | null = null;
  const counters = (): JobCounters => writer?.counters() ?? { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const reporter = new JobReporter(client, jobId, counters);
  let bytesTotal = 0;
  const ticker = setInterval(() => { opts.onProgress?.({ ...counters(), bytesTotal, filesTotal: 0 }); reporter.progress(); }, 200);
  try {
    // The end of the range: a commit record just after this instant (see the module comment).
    await pgc.query('BEGIN');
    const to = new Date(String((await pgc.query(`SELECT txid_current(), clock_timestamp()::text AS t`)).rows[0].t)).toISOString();
    await pgc.query('COMMIT');
    const switched = (await pgc.query(`SELECT pg_walfile_name(lsn) AS walfile FROM pg_switch_wal() AS lsn`)).rows[0] as { walfile: string };
    const { timeline, segNo: last } = parseSegmentName(switched.walfile, segSize)!;
    const segName = (n: number) => segmentName(timeline, n, segSize);
    await waitForSegments(config.spoolDir, segSize, timeline, last, last, opts.archiveTimeoutMs ?? DEFAULT_ARCHIVE_TIMEOUT_MS, segName);

    const listing = listSpool(config.spoolDir, segSize);
    const spooled = new Set(listing.segments.filter((s) => s.timeline === timeline).map((s) => s.segNo));
    const c = continuation(chain, timeline, spooled, last, config.name);
    if (c.first > last) throw new CoffreError('WalOverlap', `the vault already holds WAL up to ${segName(c.first - 1)}, past the segment just switched (${segName(last)}); is another machine archiving into ${config.name}?`);
    const missing: number[] = [];
    for (let n = c.first; n <= last; n++) if (!spooled.has(n)) missing.push(n);
    if (missing.length) {
      const shown = missing.length > 3 ? `${segName(missing[0]!)} … ${segName(missing[missing.length - 1]!)} (${missing.length} segments)` : missing.map(segName).join(', ');
      throw new CoffreError('WalGap', `the WAL chain of ${config.name} is broken: ${shown} never reached the spool ${config.spoolDir} (removed, or archive_command was changed); no instant after ${c.from} can be restored until a new full backup: take one with \`coffre db backup ${config.name} --type full\``, { missing: missing.map(segName) });
    }
    if (c.restarted) {
      warnings.push({ code: 'WalGap', message: `the WAL between the previous log point and the full backup ${c.basedOn} is missing; instants in that span cannot be restored, the chain continues from that full backup` });
    }
    bytesTotal = (last - c.first + 1) * segSize;
    writer = await PointWriter.open(client, opts.containerId, opts.keys, bytesTotal, opts.partBytes);
    const names = await addWal(writer, config, timeline, c.first, last, null);
    const tree = await writer.finish();
    const manifest: DbManifest = { version: 1, kind: 'postgres', item: config.name, time: to, type: 'Log', entries: tree.entries, deltas: [] };
    await putDbPointObjects(client, opts.keys, start.pointId, jobId, manifest);
    await reporter.drain();
    const database: DbPointMeta = {
      type: 'Log', timeline, walSegmentSize: segSize, firstSegment: c.first, lastSegment: last,
      startLsn: null, stopLsn: null, consistentAt: null, basedOn: c.basedOn, from: c.from, to,
    };
    const kind = opts.kind ?? 'OnDemand';
    const final = counters();
    const point = await client.dbCommit(start.pointId, {
      jobId, files: names.length, bytes: writer.bytes, kind, retainUntil: opts.retainUntil ?? defaultRetainUntil(kind, new Date()),
      counters: final, warnings, database, details: { backupType: 'Log', from: c.from, to, segments: names },
    });
    // The point holds them now: off the spool, with anything older of this timeline (already in the vault).
    removeFromSpool(config.spoolDir, [
      ...listing.segments.filter((s) => s.timeline === timeline && s.segNo <= last).map((s) => s.name),
      ...listing.other.filter((n) => n.endsWith('.backup') && (parseSegmentName(n.slice(0, 24), segSize)?.segNo ?? Infinity) <= last),
    ]);
    return { point, jobId, counters: final, warnings, database };
  } catch (e) {
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    clearInterval(ticker);
    await writer?.close();
  }
}
