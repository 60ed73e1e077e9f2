/**
 * Full and Differential backups of a PostgreSQL cluster while it runs.
 *
 * Why pg_backup_start/pg_backup_stop (non-exclusive, the session held open) rather than the
 * replication protocol (BASE_BACKUP): the agent runs on the database's machine, so it reads the
 * data folder itself — on every core through the file backup's workers, and page by page for a
 * Differential, which PostgreSQL 15's BASE_BACKUP cannot do (it sends whole files, one stream;
 * incremental base backups arrive only in PostgreSQL 17). pgBackRest makes the same choice. The
 * session that started the backup stays open until pg_backup_stop, so a killed agent aborts the
 * backup in PostgreSQL as well: nothing is left half-started.
 *
 * A base is consistent only with the WAL from its start to its stop position: pg_backup_stop
 * switches segments, the agent waits until `archive_command` has put every segment of that
 * span into the spool, and the point holds them. The `backup_label` and `tablespace_map`
 * pg_backup_stop returns go into the point (they do not exist in the data folder): a restore
 * writes the label back, so replay starts from the backup's checkpoint.
 *
 * A Differential reads the relation files its Full also had by 8 KiB page and keeps only the
 * pages whose LSN is at or after the Full's start (changed since), plus pages the Full did not
 * have; every other file is read whole and deduplicated against what the vault holds.
 */
import { readlink } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type pg from 'pg';
import type { DbPointMeta, JobCounters, JobProblem, PointInfo, PointKind } from '../../core/api.js';
import type { KeySet } from '../../core/crypto.js';
import { openDbManifest, PAGE_SIZE, type DbManifest } from '../../core/db-manifest.js';
import { CoffreError } from '../../core/errors.js';
import { encodeName, type Entry } from '../../core/manifest.js';
import { parseLsn, parseSegmentName, segmentName, segmentOf } from '../../core/wal.js';
import type { VaultClient } from '../client.js';
import { JobReporter, defaultRetainUntil } from '../job-report.js';
import { walk } from './data-walk.js';
import type { DbConfig } from './config.js';
import { dbRoot } from './config.js';
import { connect, notReady, readinessProblems, serverFacts } from './connection.js';
import { dataPathRule, isPagedRelation } from './data-dir.js';
import { FIXED_CHUNK, PointWriter, putDbPointObjects } from './point-writer.js';
import { listSpool, removeFromSpool, takeLock, waitForSegments } from './spool.js';

export interface DbBackupOptions {
  client: VaultClient;
  containerId: string;
  keys: KeySet;
  agentDir: string;
  vaultId: string;
  config: DbConfig;
  kind?: PointKind;
  retainUntil?: string | null;
  /** How long to wait for PostgreSQL to archive the WAL a point needs (default 5 minutes). */
  archiveTimeoutMs?: number;
  /** Size of the parts large files are read in (default PART_BYTES; tests use small parts). */
  partBytes?: number;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

export interface DbBackupResult { point: PointInfo; jobId: string; counters: JobCounters; warnings: JobProblem[]; database: DbPointMeta }

export const DEFAULT_ARCHIVE_TIMEOUT_MS = 5 * 60_000;

export const lockFile = (agentDir: string, name: string) => join(dbRoot(agentDir), `${name}.lock`);

/** Connects and refuses a server not (or no longer) set up for backups by Coffre. */
export async function readyConnection(config: DbConfig): Promise<pg.Client> {
  const client = await connect(config.connection);
  try {
    const problems = readinessProblems(await serverFacts(client), config.spoolDir);
    if (problems.length) throw notReady(config.name, problems);
    return client;
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
}

/** The file tree of a base point: data/ only (its WAL excepted), path → size, for a Differential. */
async function fullFiles(opts: DbBackupOptions, fullId: string): Promise<Map<string, number>> {
  const m = openDbManifest(opts.keys, fullId, await opts.client.manifest(fullId));
  if (!m) throw new CoffreError('ChecksumMismatch', `the manifest of full backup ${fullId} is damaged or was not written with this machine's keys`);
  const out = new Map<string, number>();
  for (const e of m.entries) if (e.type === 'file' && e.path[0] === 'data') out.set(e.path.join('/'), e.size);
  return out;
}

/** Adds the spooled WAL segments first..last (and the timeline histories) under wal/. */
export async function addWal(writer: PointWriter, config: DbConfig, timeline: number, first: number, last: number, root: Entry | null): Promise<string[]> {
  const listing = listSpool(config.spoolDir, config.walSegmentSize);
  const wanted = listing.segments.filter((s) => s.timeline === timeline && s.segNo >= first && s.segNo <= last);
  if (wanted.length !== last - first + 1) throw new CoffreError('WalGap', `the spool lacks WAL segments between ${segmentName(timeline, first, config.walSegmentSize)} and ${segmentName(timeline, last, config.walSegmentSize)}`);
  const meta = { mode: 0o600, uid: root?.uid ?? 0, gid: root?.gid ?? 0, mtimeNs: '0', ctimeNs: '0' };
  writer.addDir(['wal'], { ...meta, mode: 0o700, size: 0 });
  const names = [...listing.histories, ...wanted.map((s) => s.name)];
  for (const n of names) {
    const segment = !n.endsWith('.history');
    await writer.addFile(['wal', n], join(config.spoolDir, n), { ...meta, size: segment ? config.walSegmentSize : 0 }, segment ? { fixedChunk: FIXED_CHUNK } : {});
  }
  return wanted.map((s) => s.name);
}

export async function backupBase(opts: DbBackupOptions, type: 'Full' | 'Differential'): Promise<DbBackupResult> {
  const { client, config } = opts;
  const release = takeLock(lockFile(opts.agentDir, config.name), `database ${config.name}`);
  let pgc: pg.Client | null = null;
  try {
    pgc = await readyConnection(config);
    let full: { id: string; startLsn: bigint; files: Map<string, number> } | null = null;
    if (type === 'Differential') {
      const fulls = (await client.dbChain(config.name)).filter((p) => p.backupType === 'Full');
      const last = fulls[fulls.length - 1];
      if (!last?.database?.startLsn) throw new CoffreError('ChainIncomplete', `database ${config.name} has no full backup yet: a differential saves the changes since one; take it with \`coffre db backup ${config.name} --type full\``);
      full = { id: last.id, startLsn: parseLsn(last.database.startLsn), files: await fullFiles(opts, last.id) };
    }
    return await runBase(opts, pgc, type, full);
  } finally {
    // Ending the session aborts a backup still in progress in PostgreSQL.
    await pgc?.end().catch(() => undefined);
    release();
  }
}

async function runBase(opts: DbBackupOptions, pgc: pg.Client, type: 'Full' | 'Differential', full: { id: string; startLsn: bigint; files: Map<string, number> } | null): Promise<DbBackupResult> {
  const { client, config } = opts;
  const segSize = config.walSegmentSize;
  const start = await client.dbStartBackup(config.name, type);
  const jobId = start.job.id;
  const warnings: JobProblem[] = [];
  let writer: PointWriter | null = null;
  let bytesTotal = 0;
  let filesTotal = 0;
  const counters = (): JobCounters => writer?.counters() ?? { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const reporter = new JobReporter(client, jobId, counters);
  const ticker = setInterval(() => { opts.onProgress?.({ ...counters(), bytesTotal, filesTotal }); reporter.progress(); }, 200);
  try {
    const label = `coffre ${type.toLowerCase()} ${start.pointId}`;
    const started = (await pgc.query(`SELECT lsn::text AS lsn, pg_walfile_name(lsn) AS walfile FROM pg_backup_start($1, true) AS lsn`, [label])).rows[0] as { lsn: string; walfile: string };
    const startLsn = parseLsn(started.lsn);
    const timeline = parseSegmentName(started.walfile, segSize)!.timeline;

    const unreadable: JobProblem[] = [];
    const all = walk(config.dataDir, (p) => unreadable.push(p));
    const siblings = new Map<string, Set<string>>();
    for (const e of all) {
      const dir = e.path.slice(1, -1).join('/');
      let s = siblings.get(dir);
      if (!s) siblings.set(dir, (s = new Set()));
      s.add(e.path[e.path.length - 1]!);
    }
    const copied = all.filter((e, i) => {
      if (i === 0) return true;
      const rel = e.path.slice(1);
      return dataPathRule(rel, siblings.get(rel.slice(0, -1).join('/')) ?? new Set()) === 'copy' && !hasSkippedParent(rel, siblings);
    });
    for (const e of copied) {
      if (e.path[1] === 'pg_tblspc' && e.path.length === 3) {
        throw new CoffreError('InvalidArgument', `database ${config.name} uses a tablespace (pg_tblspc/${e.path[2]}); tablespaces outside the data folder are not backed up by Coffre yet`);
      }
      if (e.stat.kind === 'file') { bytesTotal += e.stat.size; filesTotal++; }
    }
    writer = await PointWriter.open(client, opts.containerId, opts.keys, bytesTotal + 4 * segSize, opts.partBytes);
    const root = copied[0]!;
    for (const e of copied) {
      const path = ['data', ...e.path.slice(1)];
      const s = e.stat;
      if (s.kind === 'dir') writer.addDir(path, s);
      else if (s.kind === 'symlink') writer.addSymlink(path, s, encodeName(await readlink(e.abs as unknown as string, { encoding: 'buffer' })));
      else {
        const baseSize = full?.files.get(path.join('/'));
        const relation = isPagedRelation(e.path.slice(1));
        const pages = full && baseSize !== undefined && relation ? { minLsn: full.startLsn.toString(), basePages: Math.floor(baseSize / PAGE_SIZE) } : undefined;
        await writer.addFile(path, e.abs.toString('latin1'), s, { ...(pages ? { pages } : {}), ...(relation ? { fixedChunk: FIXED_CHUNK } : {}) });
      }
    }
    // Every data file is read before the backup stops: the WAL up to the stop repairs what changed meanwhile.
    await writer.drain();
    const stopped = (await pgc.query(`SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop(false)`)).rows[0] as { lsn: string; labelfile: string; spcmapfile: string };
    const consistentAt = new Date(String((await pgc.query(`SELECT clock_timestamp()::text AS t`)).rows[0].t)).toISOString();
    const stopLsn = parseLsn(stopped.lsn);
    const firstSegment = segmentOf(startLsn, segSize);
    const lastSegment = segmentOf(stopLsn - 1n, segSize);
    await waitForSegments(config.spoolDir, segSize, timeline, firstSegment, lastSegment, opts.archiveTimeoutMs ?? DEFAULT_ARCHIVE_TIMEOUT_MS, (n) => segmentName(timeline, n, segSize));
    await addWal(writer, config, timeline, firstSegment, lastSegment, root.stat.kind === 'dir' ? { type: 'dir', path: ['data'], mode: root.stat.mode, uid: root.stat.uid, gid: root.stat.gid, mtime: root.stat.mtimeNs } : null);
    const tree = await writer.finish();
    warnings.push(...unreadable.filter((p) => p.code !== 'Unreadable'));
    // A file that vanished during the walk is no longer part of the database; one that cannot be read is a broken backup.
    for (const p of unreadable) {
      if (p.code === 'Unreadable' && p.path && lstatSync(join(dirname(config.dataDir), p.path), { throwIfNoEntry: false })) {
        throw new CoffreError('Internal', `${p.message}; the backup needs every file of the database`);
      }
    }

    const manifest: DbManifest = {
      version: 1, kind: 'postgres', item: config.name, time: consistentAt, type, backupLabel: stopped.labelfile,
      ...(stopped.spcmapfile ? { tablespaceMap: stopped.spcmapfile } : {}), entries: tree.entries, deltas: tree.deltas,
    };
    await putDbPointObjects(client, opts.keys, start.pointId, jobId, manifest);
    await reporter.drain();
    const database: DbPointMeta = {
      type, timeline, walSegmentSize: segSize, firstSegment, lastSegment, startLsn: started.lsn, stopLsn: stopped.lsn,
      consistentAt, basedOn: full?.id ?? null, from: null, to: null,
    };
    const kind = opts.kind ?? 'OnDemand';
    const final = counters();
    const point = await client.dbCommit(start.pointId, {
      jobId, files: writer.files, bytes: writer.bytes, kind, retainUntil: opts.retainUntil ?? defaultRetainUntil(kind, new Date()),
      counters: final, warnings, database,
      details: { backupType: type, startLsn: started.lsn, stopLsn: stopped.lsn, walSegments: lastSegment - firstSegment + 1, pagedFiles: tree.deltas.length, changedPageBytes: writer.changedPageBytes },
    });
    await trimSpoolWithoutLogs(opts, start.item.policy, timeline, firstSegment);
    return { point, jobId, counters: final, warnings, database };
  } catch (e) {
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    clearInterval(ticker);
    await writer?.close();
  }
}

/** True when a folder above `rel` is skipped (its contents go with it). */
function hasSkippedParent(rel: readonly string[], siblings: Map<string, Set<string>>): boolean {
  for (let i = 1; i < rel.length; i++) {
    const parent = rel.slice(0, i);
    if (dataPathRule(parent, siblings.get(parent.slice(0, -1).join('/')) ?? new Set()) === 'skip') return true;
  }
  return false;
}

/**
 * Without log backups in the item's policy nothing else empties the spool: a base takes the
 * segments before its start off it (no point will ever need them). With log backups the log
 * backup does, once a log point holds them.
 */
async function trimSpoolWithoutLogs(opts: DbBackupOptions, policyName: string, timeline: number, firstSegment: number): Promise<void> {
  let hasLogs = true;
  try {
    const info = await opts.client.showPolicy(policyName);
    hasLogs = (info.policy as { log?: unknown }).log !== undefined;
  } catch (e) {
    // The policy cannot be read: keep the spool as it is (safe); the next run tries again.
    if (e instanceof CoffreError) return;
    throw e;
  }
  if (hasLogs) return;
  const listing = listSpool(opts.config.spoolDir, opts.config.walSegmentSize);
  removeFromSpool(opts.config.spoolDir, listing.segments.filter((s) => s.timeline < timeline || (s.timeline === timeline && s.segNo < firstSegment)).map((s) => s.name));
}
