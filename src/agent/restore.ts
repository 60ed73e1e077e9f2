/**
 * The restore engine. Every chunk is authenticated and its plaintext hash checked before a
 * byte is written; a file with a damaged chunk is removed, not left half-written, and named
 * in the job's errors. Nothing is ever written outside the target folder: names are checked
 * when the manifest is opened, folders are created by us (never followed if a symlink stands
 * in their place), and files are created with O_EXCL|O_NOFOLLOW.
 */
import {
  chmodSync, closeSync, constants as C, fchmodSync, fchownSync, ftruncateSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync,
  mkdirSync, openSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeSync,
} from 'node:fs';
import { mkdir, realpath, rm } from 'node:fs/promises';
import type { JobCounters, JobInfo, JobProblem, PointInfo } from '../core/api.js';
import type { KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { decodeName, openManifest, type Entry, type FileEntry } from '../core/manifest.js';
import type { VaultClient } from './client.js';
import { EncodePool } from './encode-pool.js';
import { planRanges, type PackRange } from './pack-ranges.js';
import { fetchRanges } from './range-fetch.js';
import { JobReporter } from './job-report.js';

export type OverwritePolicy = 'skip' | 'replace' | 'rename';

export interface RestoreOptions {
  client: VaultClient;
  keys: KeySet;
  pointId: string;
  target: string;
  paths?: string[];
  overwrite?: OverwritePolicy;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

export interface RestoreResult { job: JobInfo; point: PointInfo; errors: JobProblem[]; warnings: JobProblem[] }

// With the range limits (pack-ranges.ts), this bounds the memory of a restore.
const FETCHES_IN_FLIGHT = 3;
const MAX_OPEN_FILES = 128;
const IS_ROOT = process.getuid?.() === 0;

const display = (path: string[]) => path.map((n) => decodeName(n).toString('utf8')).join('/');

/** Selects entries under the given point paths, plus the folders above them. */
export function selectEntries(entries: Entry[], paths: string[] | undefined): Set<number> {
  const chosen = new Set<number>();
  if (!paths?.length) {
    entries.forEach((_, i) => chosen.add(i));
    return chosen;
  }
  const wanted = paths.map((p) => p.split('/').filter(Boolean).join('/'));
  entries.forEach((e, i) => {
    const d = display(e.path);
    if (wanted.some((w) => d === w || d.startsWith(w + '/') || w.startsWith(d + '/'))) chosen.add(i);
  });
  // A hard link needs the file it links to.
  entries.forEach((e, i) => { if (chosen.has(i) && e.type === 'hardlink') chosen.add(e.link); });
  if (chosen.size === 0) throw new CoffreError('InvalidArgument', `nothing in the point matches --path ${paths.join(', ')}`);
  return chosen;
}

/** Without an exception per missing file: called once per restored entry. */
function exists(p: Buffer): boolean {
  return lstatSync(p as unknown as string, { throwIfNoEntry: false }) !== undefined;
}

export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const { client, keys } = opts;
  const point = await client.getPoint(opts.pointId);
  if (point.itemKind !== 'files') {
    throw new CoffreError('InvalidArgument', `point ${point.id} is a ${point.itemKind} point of ${point.item}: restore it with \`coffre vm restore ${point.id} --target DIR\``);
  }
  const manifest = openManifest(keys, point.id, await client.manifest(point.id));
  const chosen = selectEntries(manifest.entries, opts.paths);
  const job = await client.startRestore(point.id, { target: opts.target, paths: opts.paths ?? [] });
  const reporter = new JobReporter(client, job.id, () => counters);
  const errors: JobProblem[] = [];
  const warnings: JobProblem[] = [];
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const overwrite = opts.overwrite ?? 'rename';
  /** Partial files not yet renamed into place: removed if the restore stops half-way. */
  const partial = new Set<string>();
  try {
    await mkdir(opts.target, { recursive: true });
    const root = Buffer.from(await realpath(opts.target));
    /** Where each entry goes (null: skipped). Parents are resolved before children. */
    const dest = new Array<Buffer | null>(manifest.entries.length).fill(null);
    const dirOf = new Map<string, Buffer>();
    const parentOf = (e: Entry): Buffer | null => e.path.length === 1 ? root : dirOf.get(e.path.slice(0, -1).join('/')) ?? null;
    const files: number[] = [];
    let bytesTotal = 0;

    for (let i = 0; i < manifest.entries.length; i++) {
      if (!chosen.has(i)) continue;
      const e = manifest.entries[i]!;
      const parent = parentOf(e);
      if (!parent) continue; // its folder could not be created; already reported
      let p: Buffer = Buffer.concat([parent, Buffer.from('/'), decodeName(e.path[e.path.length - 1]!)]);
      if (e.type === 'dir') {
        try {
          mkdirSync(p as unknown as string, { mode: 0o700 });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          // An existing folder is reused only if it is a real folder, never a symlink.
          const s = lstatSync(p as unknown as string);
          if (!s.isDirectory()) {
            errors.push({ code: 'PathConflict', message: `${display(e.path)} exists and is not a folder; its contents were not restored`, path: display(e.path) });
            continue;
          }
        }
        dirOf.set(e.path.join('/'), p);
        dest[i] = p;
        continue;
      }
      if (exists(p)) {
        if (overwrite === 'skip') {
          warnings.push({ code: 'Skipped', message: `${display(e.path)} exists and was kept (--overwrite skip)`, path: display(e.path) });
          continue;
        }
        if (overwrite === 'replace') {
          const s = lstatSync(p as unknown as string);
          if (s.isDirectory()) {
            errors.push({ code: 'PathConflict', message: `${display(e.path)} is a folder on disk; not replaced`, path: display(e.path) });
            continue;
          }
        } else {
          let n = 1;
          let candidate: Buffer;
          do {
            candidate = Buffer.concat([p, Buffer.from(`.restored-${n === 1 ? '' : n + '-'}${point.id.slice(0, 8)}`)]);
            n++;
          } while (exists(candidate));
          p = candidate;
        }
      }
      dest[i] = p;
      if (e.type === 'file') {
        files.push(i);
        bytesTotal += e.size;
      }
    }

    // Create every regular file first: O_EXCL|O_NOFOLLOW never follows or reuses what stands there.
    const tmpName = (p: Buffer) => Buffer.concat([p, Buffer.from(`.coffre-part-${job.id}`)]);
    for (const i of files) {
      const p = tmpName(dest[i]!);
      closeSync(openSync(p as unknown as string, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600));
      partial.add(p.toString('latin1'));
    }

    // Which file offsets each chunk fills.
    const targets = new Map<string, { file: number; offset: number }[]>();
    const plainSize = new Map<string, number>();
    for (const i of files) {
      let offset = 0;
      for (const [id, len] of (manifest.entries[i] as FileEntry).chunks) {
        if (id) {
          let t = targets.get(id);
          if (!t) { targets.set(id, (t = [])); plainSize.set(id, len); }
          t.push({ file: i, offset });
        }
        offset += len;
      }
    }
    const locations = await client.locate(point.containerId, [...targets.keys()]);
    const found = new Set(locations.map((l) => l.id));
    const damaged = new Set<number>();
    for (const id of targets.keys()) {
      if (!found.has(id)) for (const t of targets.get(id)!) damaged.add(t.file);
    }

    const ranges = planRanges(locations, (id) => plainSize.get(id) ?? 0);

    // Writes are synchronous (into the page cache): no two fetches interleave inside a file's
    // bookkeeping, and a descriptor is never closed under a write in flight.
    const open_ = new Map<number, number>();
    const pending = new Map<number, number>();
    for (const ts of targets.values()) for (const t of ts) pending.set(t.file, (pending.get(t.file) ?? 0) + 1);
    const fdOf = (file: number): number => {
      let fd = open_.get(file);
      if (fd !== undefined) return fd;
      if (open_.size >= MAX_OPEN_FILES) {
        const [oldest, old] = open_.entries().next().value as [number, number];
        open_.delete(oldest);
        closeSync(old);
      }
      fd = openSync(tmpName(dest[file]!) as unknown as string, C.O_WRONLY | C.O_NOFOLLOW);
      open_.set(file, fd);
      return fd;
    };
    const pool = new EncodePool(keys);
    const tick = () => {
      opts.onProgress?.({ ...counters, bytesTotal, filesTotal: files.length });
      reporter.progress();
    };

    const onRange = async (r: PackRange, data: Buffer) => {
      counters.bytesUploaded += data.length;
      // Opening, decompressing and checking every chunk happens in the worker pool.
      const plains = await pool.decode(r.blobs.map((b) => b.id), data,
        r.blobs.map((b): [number, number] => [b.offset - r.offset, b.length]));
      r.blobs.forEach((b, k) => {
        const plain = plains[k];
        for (const t of targets.get(b.id)!) {
          if (!plain) damaged.add(t.file);
          if (damaged.has(t.file)) continue;
          writeSparse(fdOf(t.file), plain!, t.offset);
          counters.bytesScanned += plain!.length;
          const left = pending.get(t.file)! - 1;
          pending.set(t.file, left);
          if (left === 0) { closeSync(open_.get(t.file)!); open_.delete(t.file); }
        }
      });
      tick();
    };
    const onDamage = (r: PackRange) => { for (const b of r.blobs) for (const t of targets.get(b.id)!) damaged.add(t.file); };
    try {
      await fetchRanges({ client, containerId: point.containerId, ranges, inFlight: FETCHES_IN_FLIGHT, onRange, onDamage });
    } finally {
      for (const fd of open_.values()) closeSync(fd);
      open_.clear();
      await pool.close();
    }

    // Finish files: size (holes stay holes), metadata, then the final name.
    for (const i of files) {
      const e = manifest.entries[i] as FileEntry;
      const tmp = tmpName(dest[i]!) as unknown as string;
      partial.delete(Buffer.from(tmp).toString('latin1'));
      if (damaged.has(i)) {
        rmSync(tmp, { force: true });
        errors.push({ code: 'ChecksumMismatch', message: `${display(e.path)} was not restored: a chunk of it is damaged or missing in the vault`, path: display(e.path) });
        dest[i] = null;
        continue;
      }
      const fd = openSync(tmp, C.O_WRONLY | C.O_NOFOLLOW);
      try {
        ftruncateSync(fd, e.size);
        setFileMeta(fd, e);
      } finally {
        closeSync(fd);
      }
      // rename() replaces an existing file atomically (and never follows a symlink there).
      renameSync(tmp, dest[i]! as unknown as string);
      counters.filesChanged++;
      counters.filesScanned++;
    }
    for (let i = 0; i < manifest.entries.length; i++) {
      const e = manifest.entries[i]!;
      const p = dest[i];
      if (!p) continue;
      if (e.type === 'hardlink') {
        const first = dest[e.link];
        if (!first) { errors.push({ code: 'LinkTargetMissing', message: `${display(e.path)} links to a file that was not restored`, path: display(e.path) }); continue; }
        if (overwrite === 'replace' && exists(p)) unlinkSync(p as unknown as string);
        linkSync(first as unknown as string, p as unknown as string);
      } else if (e.type === 'symlink') {
        if (overwrite === 'replace' && exists(p)) unlinkSync(p as unknown as string);
        symlinkSync(decodeName(e.target) as unknown as string, p as unknown as string);
        setLinkMeta(p as unknown as string, e);
      }
    }
    // Folders last, deepest first, so writing their contents does not change their mtime again.
    for (let i = manifest.entries.length - 1; i >= 0; i--) {
      const e = manifest.entries[i]!;
      if (e.type === 'dir' && dest[i]) setDirMeta(dest[i]! as unknown as string, e);
    }
    tick();
    await reporter.drain();
    const status = errors.length ? 'Failed' : warnings.length ? 'CompletedWithWarnings' : 'Completed';
    const done = await client.finishJob(job.id, { status, counters, errors, warnings });
    return { job: done, point, errors, warnings };
  } catch (e) {
    // No garbage left behind: half-written files go; complete ones already have their names.
    for (const p of partial) await rm(Buffer.from(p, 'latin1') as unknown as string, { force: true }).catch(() => undefined);
    await reporter.fail(e, warnings, errors);
    throw e;
  }
}

const HOLE_BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK);

/**
 * Writes a chunk but leaves file-system blocks that are all zero unwritten: with the final
 * truncate they become holes, so sparse files (disk images) come back sparse.
 */
function writeSparse(fd: number, data: Buffer, offset: number): void {
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart >= 0) writeAll(fd, data, runStart, end - runStart, offset + runStart);
    runStart = -1;
  };
  // Blocks are aligned on file offsets, so holes line up with the file system's blocks.
  let pos = 0;
  while (pos < data.length) {
    const end = Math.min(data.length, pos + HOLE_BLOCK - ((offset + pos) % HOLE_BLOCK));
    const zero = data.subarray(pos, end).equals(ZERO_BLOCK.subarray(0, end - pos));
    if (zero) flush(pos);
    else if (runStart < 0) runStart = pos;
    pos = end;
  }
  flush(data.length);
}

function writeAll(fd: number, data: Buffer, from: number, length: number, position: number): void {
  for (let done = 0; done < length;) done += writeSync(fd, data, from + done, length - done, position + done);
}

/**
 * Metadata through the open descriptor (never a path that could have been swapped), with
 * synchronous calls: per-file thread-pool round trips dominated restores of many small files.
 */
function setFileMeta(fd: number, e: Entry): void {
  const secs = Number(BigInt(e.mtime) / 1000n) / 1e6;
  if (IS_ROOT) fchownSync(fd, e.uid, e.gid);
  // After chown, which clears set-id bits.
  fchmodSync(fd, e.mode);
  futimesSync(fd, secs, secs);
}

function setDirMeta(p: string, e: Entry): void {
  let fd: number;
  try {
    fd = openSync(p, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (err) {
    // A folder we may not read (not root) still takes its metadata by path; we created it.
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    const secs = Number(BigInt(e.mtime) / 1000n) / 1e6;
    chmodSync(p, e.mode);
    utimesSync(p, secs, secs);
    return;
  }
  try { setFileMeta(fd, e); } finally { closeSync(fd); }
}

function setLinkMeta(p: string, e: Entry): void {
  const secs = Number(BigInt(e.mtime) / 1000n) / 1e6;
  if (IS_ROOT) lchownSync(p, e.uid, e.gid);
  lutimesSync(p, secs, secs);
}

