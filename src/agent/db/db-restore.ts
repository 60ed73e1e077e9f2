/**
 * Point-in-time restore of a PostgreSQL database into a new data folder.
 *
 * The plan (src/policy/db-chain.ts) picks the base closest before the target (a Full, or a
 * Differential and its Full) and the log points whose WAL replay needs. Everything that can be
 * refused is refused before a byte is written: a time no range holds (TimeNotRestorable, with
 * the nearest ranges), a piece of the chain that is missing (ChainIncomplete), a chunk the
 * vault lacks (ChunkMissing), a target that is not empty.
 *
 * Then: the Full's files, the Differential's changed pages over them, the base's backup_label
 * (so replay starts from the backup's checkpoint), the WAL the plan needs in `coffre-wal/`
 * inside the folder, `recovery.signal`, and recovery settings appended to
 * postgresql.auto.conf: `restore_command` copying from that folder, the target
 * (`recovery_target_time`, inclusive, or `immediate` for a base alone, or the end of the WAL),
 * `recovery_target_action = 'promote'`, and `archive_mode = off` (a restored copy must not
 * archive into the spool of the database it came from; `keepArchiving` keeps the setting).
 * `pg_ctl -D DIR start` then replays to exactly the target and promotes.
 */
import { chmodSync, closeSync, constants as C, lchownSync, mkdirSync, openSync, symlinkSync, writeSync, ftruncateSync, readdirSync, appendFileSync, writeFileSync, chownSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DbPointMeta, JobCounters, JobInfo, PointInfo, RestorableRange } from '../../core/api.js';
import type { KeySet } from '../../core/crypto.js';
import { openDbManifest, type DbManifest } from '../../core/db-manifest.js';
import { CoffreError } from '../../core/errors.js';
import { decodeName, type Entry, type FileEntry } from '../../core/manifest.js';
import { nearestRanges, planForPoint, planForTime, planLatest, planPoints, restorableRanges, usableBases, type ChainPoint, type RestorePlan } from '../../policy/db-chain.js';
import type { VaultClient } from '../client.js';
import { IS_ROOT, metaOf, setFileMeta } from '../file-meta.js';
import { JobReporter } from '../job-report.js';
import { RESTORE_DIRS } from './data-dir.js';
import { ChunkWriter } from '../chunk-writer.js';
import { locatePieces, writePieces, type Piece } from './piece-writer.js';

export const RESTORE_WAL_DIR = 'coffre-wal';

export interface DbRestoreOptions {
  client: VaultClient;
  keys: KeySet;
  item: string;
  target: string;
  time?: string;
  pointId?: string;
  latest?: boolean;
  keepArchiving?: boolean;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

export interface DbRestoreResult { job: JobInfo; plan: RestorePlan; target: string; recoveryTarget: string }

const chainOf = (points: PointInfo[]): ChainPoint[] => points.filter((p) => p.database).map((p) => {
  const m = p.database as DbPointMeta;
  return { id: p.id, type: m.type, timeline: m.timeline, firstSegment: m.firstSegment, lastSegment: m.lastSegment, consistentAt: m.consistentAt, basedOn: m.basedOn, from: m.from, to: m.to };
});

const rangeText = (r: RestorableRange) => `${r.from} to ${r.to} (timeline ${r.timeline})`;

/** Refuses what cannot be restored with the reason and what can; pure over the chain. */
export function choosePlan(points: PointInfo[], item: string, want: { time?: string; pointId?: string; latest?: boolean }): RestorePlan {
  const chain = chainOf(points);
  if (want.time !== undefined) {
    const t = Date.parse(want.time);
    if (Number.isNaN(t)) throw new CoffreError('InvalidArgument', `--time ${want.time} is not a date and time; use ISO 8601, e.g. 2026-03-01T12:34:56Z`);
    const iso = new Date(t).toISOString();
    const plan = planForTime(chain, iso);
    if (plan) return plan;
    const ranges = restorableRanges(chain);
    const near = nearestRanges(ranges, iso);
    throw new CoffreError('TimeNotRestorable', ranges.length === 0
      ? `${item} cannot be restored to ${iso}: it has no restorable range yet (a full backup followed by log backups); see \`coffre db ranges ${item}\``
      : `${item} cannot be restored to ${iso}: no full or differential backup and unbroken log backups cover it; nearest restorable range(s): ${near.map(rangeText).join('; ')}`,
    { nearest: near });
  }
  if (want.pointId !== undefined) {
    const matches = points.filter((p) => p.id.startsWith(want.pointId!));
    if (matches.length === 0) throw new CoffreError('PointNotFound', `${item} has no point ${want.pointId}; list them with \`coffre points --item ${item}\``);
    if (matches.length > 1) throw new CoffreError('InvalidArgument', `${want.pointId} matches several points: give more digits`);
    const p = matches[0]!;
    const plan = planForPoint(chain, p.id);
    if (plan) return plan;
    if (p.backupType === 'Differential') throw new CoffreError('ChainIncomplete', `differential ${p.id} cannot be restored: its full backup ${p.basedOn ?? '(unknown)'} is no longer in the vault`, { missing: [p.basedOn] });
    throw new CoffreError('ChainIncomplete', `log point ${p.id} cannot be restored: no full or differential backup is followed by unbroken log points up to it (a log point of the chain is missing); see \`coffre db ranges ${item}\``);
  }
  const plan = planLatest(chain);
  if (!plan) throw new CoffreError('ChainIncomplete', usableBases(chain).length ? `${item} has no restorable point` : `${item} has no full backup in the vault: nothing to restore`);
  return plan;
}

function emptyOrAbsent(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new CoffreError('InvalidArgument', `--target ${dir} is a file; give a new or empty folder`);
    throw e;
  }
  if (names.length) throw new CoffreError('InvalidArgument', `--target ${dir} is not empty; a restored data folder needs a new or empty folder`);
}

interface FilePlan { entry: FileEntry; size: number; base: Piece[]; overlay: Piece[] }

const pathKey = (path: string[]) => path.join('/');
const bytesPath = (root: string, path: string[]) => Buffer.concat([Buffer.from(root), ...path.map((c) => Buffer.concat([Buffer.from('/'), decodeName(c)]))]);

function piecesOf(dest: string, chunks: FileEntry['chunks'], start = 0): Piece[] {
  const out: Piece[] = [];
  let offset = start;
  for (const ref of chunks) { out.push({ path: dest, offset, ref }); offset += ref[1]; }
  return out;
}

export async function restoreDb(opts: DbRestoreOptions): Promise<DbRestoreResult> {
  const { client, keys } = opts;
  const target = resolve(opts.target);
  emptyOrAbsent(target);
  const points = await client.dbChain(opts.item);
  const plan = choosePlan(points, opts.item, opts);
  // The workers load their modules (~0.3 s each) while this thread waits on the vault for the
  // manifests and chunk locations; one pool serves both passes (base files, a differential's pages).
  const writer = new ChunkWriter(keys);
  try {
    return await restorePlan(opts, target, plan, writer);
  } finally {
    await writer.close();
  }
}

async function restorePlan(opts: DbRestoreOptions, target: string, plan: RestorePlan, writer: ChunkWriter): Promise<DbRestoreResult> {
  const { client, keys } = opts;
  const containerId = (await client.getPoint(plan.full)).containerId;

  // Every manifest of the plan, opened and checked before anything is written.
  const manifests = new Map<string, DbManifest>();
  for (const id of planPoints(plan)) {
    const m = openDbManifest(keys, id, await client.manifest(id));
    if (!m) throw new CoffreError('ChecksumMismatch', `the manifest of point ${id} is damaged or was not written with this machine's keys`);
    manifests.set(id, m);
  }
  const full = manifests.get(plan.full)!;
  const base = manifests.get(plan.differential ?? plan.full)!;

  // The data folder: the base's tree; for a differential, its tree with the full's files under its changed pages.
  const tree: Entry[] = base.entries.filter((e) => e.path[0] === 'data');
  const fullFiles = new Map(full.entries.filter((e): e is FileEntry => e.type === 'file').map((e) => [pathKey(e.path), e]));
  const files: FilePlan[] = [];
  for (const e of tree) if (e.type === 'file') files.push({ entry: e, size: e.size, base: piecesOf(bytesPath(target, e.path.slice(1)).toString('latin1'), e.chunks), overlay: [] });
  for (const d of base.deltas) {
    const entry: FileEntry = { type: 'file', path: d.path, mode: d.mode, uid: d.uid, gid: d.gid, mtime: d.mtime, size: d.size, chunks: [] };
    const dest = bytesPath(target, d.path.slice(1)).toString('latin1');
    const from = fullFiles.get(pathKey(d.path));
    if (!from) throw new CoffreError('ManifestInvalid', `differential ${plan.differential} changes pages of ${d.path.join('/')}, which its full backup does not hold`);
    const overlay = d.extents.flatMap(([offset, chunks]) => piecesOf(dest, chunks, offset));
    files.push({ entry, size: d.size, base: piecesOf(dest, from.chunks).filter((p) => p.offset < d.size), overlay });
    tree.push(entry);
  }
  // The WAL replay needs, once per segment (a base and a log point may both hold one).
  const wal = new Map<string, FileEntry>();
  for (const id of planPoints(plan)) for (const e of manifests.get(id)!.entries) if (e.type === 'file' && e.path[0] === 'wal') wal.set(e.path[1]!, e);
  const walDir = join(target, RESTORE_WAL_DIR);
  const walPieces = [...wal.entries()].flatMap(([name, e]) => piecesOf(Buffer.from(join(walDir, name)).toString('latin1'), e.chunks));

  const basePieces = [...files.flatMap((f) => f.base), ...walPieces];
  const overlayPieces = files.flatMap((f) => f.overlay);
  const locations = await locatePieces(client, containerId, [...basePieces, ...overlayPieces], () => `the points ${planPoints(plan).join(', ')}`);
  const bytesTotal = [...basePieces, ...overlayPieces].reduce((n, p) => n + (p.ref[0] ? p.ref[1] : 0), 0);

  const recoveryTarget = plan.target.kind === 'time' ? plan.target.time : plan.target.kind === 'immediate' ? 'immediate (the base backup\'s consistent point)' : 'end of the restored WAL';
  const job = await client.startRestore(plan.differential ?? plan.full, {
    kind: 'PostgreSQL', item: opts.item, target, plan: { full: plan.full, differential: plan.differential, logs: plan.logs.length }, recoveryTarget,
  });
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const reporter = new JobReporter(client, job.id, () => counters);
  const tick = () => { opts.onProgress?.({ ...counters, bytesTotal, filesTotal: files.length + wal.size }); reporter.progress(); };
  let created = false;
  try {
    // Folders and empty files first (the workers write into existing files), then the chunks.
    mkdirSync(target, { recursive: true, mode: 0o700 });
    created = true;
    const rootEntry = tree.find((e) => e.path.length === 1);
    for (const e of tree) {
      const p = bytesPath(target, e.path.slice(1)) as unknown as string;
      if (e.type === 'dir' && e.path.length > 1) mkdirSync(p, { mode: 0o700 });
      else if (e.type === 'file') closeSync(openSync(p, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600));
      else if (e.type === 'symlink') symlinkSync(decodeName(e.target) as unknown as string, p);
    }
    for (const d of RESTORE_DIRS) mkdirSync(join(target, d), { recursive: true, mode: 0o700 });
    mkdirSync(walDir, { mode: 0o700 });
    for (const name of wal.keys()) closeSync(openSync(join(walDir, name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600));
    const onBytes = (n: number) => { counters.bytesScanned += n; tick(); };
    await writePieces({ client, keys, containerId, pieces: basePieces, locations, onBytes, writer });
    // Over the full's bytes: a changed page's blocks of zeros must be written, not left as they were.
    await writePieces({ client, keys, containerId, pieces: overlayPieces, locations, onBytes, writer, overwrite: true });
    // A differential's page of zeros has no stored chunk: it is written here, over the full's page.
    for (const p of overlayPieces) if (!p.ref[0]) writeZeros(p.path, p.offset, p.ref[1]);
    for (const f of files) {
      const fd = openSync(bytesPath(target, f.entry.path.slice(1)) as unknown as string, C.O_WRONLY | C.O_NOFOLLOW);
      try { ftruncateSync(fd, f.size); setFileMeta(fd, metaOf(f.entry)); } finally { closeSync(fd); }
      counters.filesChanged++;
    }
    for (const [name, e] of wal) {
      const fd = openSync(join(walDir, name), C.O_WRONLY | C.O_NOFOLLOW);
      try { ftruncateSync(fd, e.size); } finally { closeSync(fd); }
    }
    writeRecoverySettings(target, base, plan, opts.keepArchiving ?? false);
    // Owner and mode last, folders included: PostgreSQL refuses a data folder it does not own or others can read.
    const uid = rootEntry?.uid ?? process.getuid?.() ?? 0;
    const gid = rootEntry?.gid ?? process.getgid?.() ?? 0;
    for (const e of tree) {
      const p = bytesPath(target, e.path.slice(1)) as unknown as string;
      if (e.type === 'dir') { if (IS_ROOT) chownSync(p, e.uid, e.gid); chmodSync(p, e.mode); } else if (e.type === 'symlink' && IS_ROOT) lchownSync(p, e.uid, e.gid);
    }
    if (IS_ROOT) for (const extra of [...RESTORE_DIRS, RESTORE_WAL_DIR, 'backup_label', 'tablespace_map', 'recovery.signal', 'postgresql.auto.conf', ...[...wal.keys()].map((n) => `${RESTORE_WAL_DIR}/${n}`)]) {
      try { chownSync(join(target, extra), uid, gid); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; }
    }
    chmodSync(target, 0o700);
    counters.filesScanned = files.length + wal.size;
    tick();
    await reporter.drain();
    const done = await client.finishJob(job.id, { status: 'Completed', counters, details: { recoveryTarget, logs: plan.logs, walSegments: wal.size } });
    return { job: done, plan, target, recoveryTarget };
  } catch (e) {
    // Nothing half-restored is left behind: the folder was new or empty.
    if (created) await rm(target, { recursive: true, force: true });
    await reporter.fail(e, []);
    throw e;
  }
}

function writeZeros(path: string, offset: number, length: number): void {
  const fd = openSync(Buffer.from(path, 'latin1') as unknown as string, C.O_WRONLY | C.O_NOFOLLOW);
  try {
    const zero = Buffer.alloc(Math.min(length, 1024 * 1024));
    for (let done = 0; done < length;) done += writeSync(fd, zero, 0, Math.min(zero.length, length - done), offset + done);
  } finally {
    closeSync(fd);
  }
}

const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

function writeRecoverySettings(target: string, base: DbManifest, plan: RestorePlan, keepArchiving: boolean): void {
  writeFileSync(join(target, 'backup_label'), base.backupLabel!, { mode: 0o600 });
  if (base.tablespaceMap) writeFileSync(join(target, 'tablespace_map'), base.tablespaceMap, { mode: 0o600 });
  writeFileSync(join(target, 'recovery.signal'), '', { mode: 0o600 });
  const lines = [
    '',
    `# Added by coffre db restore: recovery to ${plan.target.kind === 'time' ? plan.target.time : plan.target.kind === 'immediate' ? 'the end of the base backup' : 'the end of the restored WAL'}.`,
    `# Once the server is promoted, remove these lines and the ${RESTORE_WAL_DIR} folder.`,
    `restore_command = ${quote(`cp "${join(target, RESTORE_WAL_DIR)}/%f" "%p"`)}`,
    `recovery_target_timeline = 'current'`,
  ];
  if (plan.target.kind === 'time') lines.push(`recovery_target_time = ${quote(plan.target.time.replace('T', ' ').replace('Z', '+00'))}`, `recovery_target_inclusive = on`, `recovery_target_action = 'promote'`);
  else if (plan.target.kind === 'immediate') lines.push(`recovery_target = 'immediate'`, `recovery_target_action = 'promote'`);
  if (!keepArchiving) lines.push(`# A restored copy must not archive into the spool of the database it came from: turn it on again with coffre db protect.`, `archive_mode = 'off'`);
  appendFileSync(join(target, 'postgresql.auto.conf'), lines.join('\n') + '\n');
}
