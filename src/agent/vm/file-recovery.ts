/**
 * File-level recovery from a VM point: list or extract files and folders of an ext2/3/4 file
 * system inside one disk, without giving the user the whole disk. The disk image is the
 * instant-restore snapshot while this machine holds it, else a temporary sparse image restored
 * from the vault (only the disk's non-zero blocks are fetched) and removed afterwards. The file
 * system is read by e2fsprogs' debugfs, read-only (`ls -p`, `rdump`): no ext4 code of ours.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, lstat, rm, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { JobProblem } from '../../core/api.js';
import type { KeySet } from '../../core/crypto.js';
import { CoffreError } from '../../core/errors.js';
import type { VaultClient } from '../client.js';
import { vmRoot } from './config.js';
import { hasExtSuperblock, parsePartitions, PARTITION_HEAD_BYTES, type Partition } from './partitions.js';
import { loadVmPoint, restoreVm, usableSnapshot } from './vm-restore.js';

export interface FileRecoveryOptions {
  client: VaultClient;
  keys: KeySet;
  agentDir: string;
  pointId: string;
  disk: number;
  /** Absolute path inside the disk's file system, e.g. /etc/nginx. */
  path: string;
  /** 1-based partition of a partitioned disk (required when the disk has a partition table). */
  partition?: number;
  source?: 'auto' | 'snapshot' | 'vault';
}

export interface FsEntry {
  name: string;
  /** Path inside the file system. */
  path: string;
  type: 'dir' | 'file' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number | null;
  inode: number;
}

export interface ListResult { source: 'snapshot' | 'vault'; entries: FsEntry[] }
export interface ExtractResult { source: 'snapshot' | 'vault'; written: string; files: number; dirs: number; bytes: number; jobId: string }

const BANNER = /^debugfs \d[^\n]*\(.*\)$/;

/** Runs one debugfs request (read-only); stdout in full, stderr without debugfs' banner. */
function debugfs(request: string, image: string): Promise<{ stdout: string; problems: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn('debugfs', ['-R', request, image], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => { err += d.toString('utf8'); });
    child.on('error', (e) => reject(new CoffreError('Internal', `cannot run debugfs (${e.message}); install e2fsprogs`)));
    child.on('close', (code) => {
      const problems = err.split('\n').map((l) => l.trim()).filter((l) => l && !BANNER.test(l));
      if (code !== 0) problems.push(`debugfs exited with status ${code}`);
      resolve({ stdout: Buffer.concat(out).toString('utf8'), problems });
    });
  });
}

/** A path as debugfs' request parser takes it: absolute, normalised, in double quotes. */
function fsPath(p: string): string {
  if (!p.startsWith('/')) throw new CoffreError('InvalidArgument', `--path must be absolute inside the disk's file system, e.g. /etc/nginx (got ${p})`);
  if (/["\n\r\\]/.test(p)) throw new CoffreError('InvalidArgument', '--path must not contain double quotes, backslashes or line breaks');
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

function entryType(mode: number): FsEntry['type'] {
  switch (mode & 0o170000) {
    case 0o040000: return 'dir';
    case 0o100000: return 'file';
    case 0o120000: return 'symlink';
    default: return 'other';
  }
}

/** Parses `ls -p` lines: /inode/mode/uid/gid/name/size/ (size empty for folders). */
export function parseLsP(stdout: string, dir: string): FsEntry[] {
  const out: FsEntry[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\/(\d+)\/([0-7]+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line.trim());
    if (!m || m[5] === '.' || m[5] === '..') continue;
    const mode = parseInt(m[2]!, 8);
    out.push({
      name: m[5]!, path: posix.join(dir, m[5]!), type: entryType(mode), mode: mode & 0o7777,
      uid: Number(m[3]), gid: Number(m[4]), size: m[6] === '' ? null : Number(m[6]), inode: Number(m[1]),
    });
  }
  return out;
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(PARTITION_HEAD_BYTES);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The image as debugfs opens it: the file, or `file?offset=N` for a partition. */
async function fsImage(file: string, disk: number, partition: number | undefined): Promise<string> {
  if (file.includes('?')) throw new CoffreError('InvalidArgument', `debugfs cannot open a path containing '?': ${file}`);
  const head = await readHead(file);
  const parts = parsePartitions(head);
  const listing = (ps: Partition[]) => ps.map((p) => `${p.number} (${Math.round(p.size / 1048576)} MiB at ${p.offset})`).join(', ');
  if (partition === undefined) {
    if (hasExtSuperblock(head) || parts.length === 0) return file;
    throw new CoffreError('InvalidArgument', `disk ${disk} is partitioned: choose a partition with --partition N (${listing(parts)})`);
  }
  const p = parts.find((x) => x.number === partition);
  if (!p) throw new CoffreError('InvalidArgument', `disk ${disk} has no partition ${partition}${parts.length ? ` (it has ${listing(parts)})` : ' (it has no partition table)'}`);
  return `${file}?offset=${p.offset}`;
}

/**
 * Calls `fn` with a disk image of the point: the kept snapshot, or a temporary image restored
 * from the vault (removed when `fn` ends) under the given job, or a restore job of its own.
 */
async function withDiskImage<T>(opts: FileRecoveryOptions, job: { details: Record<string, unknown> } | { id: string }, fn: (image: string, source: 'snapshot' | 'vault') => Promise<T>): Promise<T> {
  const { point, manifest } = await loadVmPoint(opts.client, opts.keys, opts.pointId);
  const disk = manifest.disks[opts.disk];
  if (!disk) throw new CoffreError('InvalidArgument', `point ${point.id} has no disk ${opts.disk}: its disks are 0 to ${manifest.disks.length - 1}`);
  const snap = opts.source === 'vault' ? null : await usableSnapshot(opts.agentDir, manifest, point.id);
  const snapDisk = snap?.disks.find((d) => d.index === opts.disk && d.dataSize === disk.size);
  if (snap && snapDisk && !snapDisk.internal) return fn(join(snap.dir, snapDisk.file), 'snapshot');
  if (opts.source === 'snapshot' && !snapDisk) throw new CoffreError('NotFound', `this machine holds no instant-restore snapshot of point ${point.id}; use --source vault`);
  // An internal snapshot inside a qcow2 image is no file debugfs can read: it is restored to a raw image first, locally.
  const source = snapDisk ? 'snapshot' : 'vault';
  const tmpRoot = join(vmRoot(opts.agentDir), 'tmp');
  await mkdir(tmpRoot, { recursive: true, mode: 0o700 });
  const tmp = await mkdtemp(join(tmpRoot, 'files-'));
  try {
    const r = await restoreVm({ client: opts.client, keys: opts.keys, agentDir: opts.agentDir, pointId: point.id, target: tmp, disks: [opts.disk], format: 'raw', source: snapDisk ? 'auto' : 'vault', ...('id' in job ? { useJob: job.id } : { jobDetails: job.details }) });
    if (r.errors.length) throw new CoffreError('ChecksumMismatch', r.errors[0]!.message);
    return await fn(r.disks[0]!.file, source);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function notFound(path: string, problems: string[]): CoffreError {
  return new CoffreError('NotFound', `${path} is not in the disk's file system${problems.length ? ` (debugfs: ${problems.join('; ')})` : ''}`);
}

async function describe(image: string, path: string): Promise<FsEntry | null> {
  if (path === '/') return { name: '/', path: '/', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: null, inode: 2 };
  const parent = posix.dirname(path);
  const r = await debugfs(`ls -p "${parent}"`, image);
  return parseLsP(r.stdout, parent).find((e) => e.name === posix.basename(path)) ?? null;
}

async function openFs(image: string, disk: number, partition: number | undefined): Promise<string> {
  const fs = await fsImage(image, disk, partition);
  const probe = await debugfs('stats -h', fs);
  if (probe.problems.some((p) => /Bad magic|while trying to open|superblock/i.test(p))) {
    throw new CoffreError('InvalidArgument', `disk ${disk}${partition ? ` partition ${partition}` : ''} holds no ext2/3/4 file system debugfs can read (${probe.problems[0]})`);
  }
  return fs;
}

/** Lists a folder (or describes a file) inside a disk of a point. */
export async function listFiles(opts: FileRecoveryOptions): Promise<ListResult> {
  const path = fsPath(opts.path);
  return withDiskImage(opts, { details: { purpose: 'file-list', disk: opts.disk, path } }, async (image, source) => {
    const fs = await openFs(image, opts.disk, opts.partition);
    const self = await describe(fs, path);
    if (!self) throw notFound(path, []);
    if (self.type !== 'dir') return { source, entries: [self] };
    const r = await debugfs(`ls -p "${path}"`, fs);
    if (r.problems.length) throw notFound(path, r.problems);
    return { source, entries: parseLsP(r.stdout, path) };
  });
}

async function tally(p: string): Promise<{ files: number; dirs: number; bytes: number }> {
  const s = await lstat(p);
  if (!s.isDirectory()) return { files: 1, dirs: 0, bytes: s.isFile() ? s.size : 0 };
  const t = { files: 0, dirs: 1, bytes: 0 };
  for (const name of await readdir(p)) {
    const c = await tally(join(p, name));
    t.files += c.files;
    t.dirs += c.dirs;
    t.bytes += c.bytes;
  }
  return t;
}

/**
 * Extracts a file or folder (recursively, with modes, owners when run as root, and times) into
 * `target`, as `target/<name>`; the root folder's contents go into `target` itself.
 */
export async function extractFiles(opts: FileRecoveryOptions & { target: string }): Promise<ExtractResult> {
  const path = fsPath(opts.path);
  await mkdir(opts.target, { recursive: true });
  const written = path === '/' ? opts.target : join(opts.target, posix.basename(path));
  if (path !== '/' && await stat(written).then(() => true, () => false)) {
    throw new CoffreError('InvalidArgument', `${written} already exists; choose another --target`);
  }
  if (/["\n\r\\]/.test(opts.target)) throw new CoffreError('InvalidArgument', '--target must not contain double quotes, backslashes or line breaks');
  const job = await opts.client.startRestore(opts.pointId, { kind: 'vm-files', disk: opts.disk, path, target: opts.target, ...(opts.partition ? { partition: opts.partition } : {}) });
  const warnings: JobProblem[] = [];
  try {
    const result = await withDiskImage(opts, { id: job.id }, async (image, source) => {
      const fs = await openFs(image, opts.disk, opts.partition);
      if (!(await describe(fs, path))) throw notFound(path, []);
      const r = await debugfs(`rdump "${path}" "${opts.target}"`, fs);
      const exists = await lstat(written).then(() => true, () => false);
      if (!exists) throw new CoffreError('Internal', `debugfs did not write ${written}: ${r.problems.join('; ') || 'no reason given'}`);
      // rdump goes on past a file it cannot write (and says so): those are warnings, the rest is there.
      for (const p of r.problems) warnings.push({ code: 'NotExtracted', message: `debugfs: ${p}` });
      return { source, ...(await tally(written)) };
    });
    if (path === '/') result.dirs = Math.max(0, result.dirs - 1);
    const counters = { bytesScanned: result.bytes, bytesNew: 0, bytesUploaded: 0, filesScanned: result.files, filesChanged: result.files };
    await opts.client.finishJob(job.id, { status: warnings.length ? 'CompletedWithWarnings' : 'Completed', counters, warnings, details: { source: result.source, written } });
    return { ...result, written, jobId: job.id };
  } catch (e) {
    const err = e instanceof CoffreError ? e : new CoffreError('Internal', (e as Error).message);
    await opts.client.finishJob(job.id, { status: 'Failed', errors: [{ code: err.code, message: err.message }], warnings }).catch(() => undefined);
    throw e;
  }
}
