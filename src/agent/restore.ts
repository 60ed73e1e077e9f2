/**
 * The restore engine. Every chunk is authenticated and its plaintext hash checked before a
 * byte is written; a file with a damaged chunk is removed, not left half-written, and named
 * in the job's errors. Nothing is ever written outside the target folder: names are checked
 * when the manifest is opened, folders are created by us (never followed if a symlink stands
 * in their place), and files are created with O_EXCL|O_NOFOLLOW.
 *
 * One entry that cannot be written (a name the target refuses, a full disk for one file, a
 * device node without root) is an error of the job naming that path; the rest is restored.
 * Metadata the target refuses (attributes on vfat, owners as a user) is a warning.
 */
import {
  closeSync, constants as C, ftruncateSync, linkSync, lstatSync,
  mkdirSync, openSync, renameSync, rmSync, symlinkSync, unlinkSync,
} from 'node:fs';
import { mkdir, opendir, realpath, rm } from 'node:fs/promises';
import type { JobCounters, JobInfo, JobProblem, PointInfo } from '../core/api.js';
import type { KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { decodeName, openManifest, type DeviceEntry, type Entry, type FileEntry, type FifoEntry } from '../core/manifest.js';
import type { VaultClient } from './client.js';
import { ChunkWriter, type WholeFile, type WriteBlob, type WriteTarget } from './chunk-writer.js';
import { DEFAULT_RANGE_LIMITS, planRanges, type PackRange } from './pack-ranges.js';
import { fetchRanges } from './range-fetch.js';
import { JobReporter } from './job-report.js';
import { IS_ROOT, metaOf, setFileMeta, type FileMeta, type MetaProblem } from './file-meta.js';
import { OwnerDirectory, ownerMapper } from './owners.js';
import { posix } from './posix.js';
import { ACCESS_ACL, DEFAULT_ACL } from './xattrs.js';
import { ProblemList } from './problem-list.js';

export type OverwritePolicy = 'skip' | 'replace' | 'rename';

export interface RestoreOptions {
  client: VaultClient;
  keys: KeySet;
  pointId: string;
  target: string;
  paths?: string[];
  overwrite?: OverwritePolicy;
  /** Owners by their recorded numbers, never mapped by name (tar's and restic's --numeric-owner). */
  numericOwner?: boolean;
  /** Where owner names are looked up (default: this system's); for restores as another machine. */
  ownerDirectory?: OwnerDirectory;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

export interface RestoreResult { job: JobInfo; point: PointInfo; errors: JobProblem[]; warnings: JobProblem[] }

// With the range limits (pack-ranges.ts), this bounds the memory of a restore.
const FETCHES_IN_FLIGHT = 4;
const MAX_KEPT_FDS = 256;
/** Linux's longest name (NAME_MAX, in bytes). */
const NAME_MAX = 255;
const SLASH = 0x2f;

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
  const entries = manifest.entries;
  const chosen = selectEntries(entries, opts.paths);
  const job = await client.startRestore(point.id, { target: opts.target, paths: opts.paths ?? [] });
  const reporter = new JobReporter(client, job.id, () => counters);
  const errors: JobProblem[] = [];
  const warnings = new ProblemList();
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const overwrite = opts.overwrite ?? 'rename';
  // Owners matter only to root, who alone may give files away.
  const ids = ownerMapper(manifest.owners, IS_ROOT && !opts.numericOwner ? opts.ownerDirectory ?? new OwnerDirectory() : null);
  /** Partial files not yet renamed into place: removed if the restore stops half-way. */
  const partial = new Set<string>();
  /** Entries that could not be written, with the error that says so; each is reported once. */
  const failed = new Map<number, JobProblem>();
  const fail = (i: number, code: string, why: string) => {
    if (!failed.has(i)) failed.set(i, { code, message: `${display(entries[i]!.path)} was not restored: ${why}`, path: display(entries[i]!.path) });
  };
  const metaProblems = (i: number, problems: MetaProblem[]) => {
    for (const p of problems) warnings.push({ code: p.code, message: `${display(entries[i]!.path)}: ${p.message}`, path: display(entries[i]!.path) });
  };
  try {
    await mkdir(opts.target, { recursive: true });
    const root = Buffer.from(await realpath(opts.target));
    // Asked of the folder itself, not of mkdir: `new/../existing` creates a folder, yet the
    // target is one that may hold files.
    const rootIsNew = await isEmptyFolder(root);
    /** Where each entry goes (null: skipped). Parents are resolved before children. */
    const dest = new Array<Buffer | null>(entries.length).fill(null);
    /**
     * Folders restored into: whether they were new (created by this restore, or an empty
     * target: nothing stood in them), and whether what is created in them inherits a default
     * ACL the backed-up entries did not have (the target folder's own, passed on by mkdir).
     */
    const dirOf = new Map<string, { path: Buffer; isNew: boolean; inherits: boolean }>();
    const rootDir = { path: root, isNew: rootIsNew, inherits: hasDefaultAcl(root) };
    const parentOf = (e: Entry) => e.path.length === 1 ? rootDir : dirOf.get(e.path.slice(0, -1).join('/')) ?? null;
    const inherited = new Set<number>();
    const files: number[] = [];
    let bytesTotal = 0;

    for (let i = 0; i < entries.length; i++) {
      if (!chosen.has(i)) continue;
      const e = entries[i]!;
      const parent = parentOf(e);
      if (!parent) continue; // its folder could not be created; already reported
      const name = decodeName(e.path[e.path.length - 1]!);
      let p: Buffer = Buffer.concat([parent.path, Buffer.from('/'), name]);
      if (parent.inherits) inherited.add(i);
      if (e.type === 'dir') {
        let isNew = true;
        try {
          mkdirSync(p as unknown as string, { mode: 0o700 });
        } catch (err) {
          isNew = false;
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
            fail(i, 'WriteFailed', `the folder could not be created, nor anything in it (${(err as Error).message})`);
            continue;
          }
          // An existing folder is reused only if it is a real folder, never a symlink.
          const s = lstatSync(p as unknown as string);
          if (!s.isDirectory()) {
            errors.push({ code: 'PathConflict', message: `${display(e.path)} exists and is not a folder; its contents were not restored`, path: display(e.path) });
            continue;
          }
        }
        dirOf.set(e.path.join('/'), { path: p, isNew, inherits: parent.inherits || (!isNew && hasDefaultAcl(p)) });
        dest[i] = p;
        continue;
      }
      // In a folder this restore created (mode 0700, ours) nothing can stand: no lstat per file.
      if (!parent.isNew && exists(p)) {
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
            candidate = Buffer.concat([parent.path, Buffer.from('/'), sideName(name, `.restored-${n === 1 ? '' : n + '-'}${point.id.slice(0, 8)}`)]);
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

    // A short name of fixed length in the file's own folder: a name of 255 bytes leaves no
    // room for a suffix, and a rename within one folder is atomic.
    const jobTag = job.id.slice(0, 8);
    const tmpName = (i: number): Buffer => {
      const d = dest[i]!;
      return Buffer.concat([d.subarray(0, d.lastIndexOf(SLASH) + 1), Buffer.from(`.coffre-${jobTag}-${i.toString(36)}`)]);
    };
    // A symbolic link has no ACL of its own to strip.
    const stripOf = (i: number, e: Entry) => !inherited.has(i) || e.type === 'symlink' ? undefined : e.type === 'dir' ? [ACCESS_ACL, DEFAULT_ACL] : [ACCESS_ACL];
    const metaFor = (i: number): FileMeta => {
      const e = entries[i]!;
      return metaOf(e, { uid: ids.uid(e.uid), gid: ids.gid(e.gid) }, stripOf(i, e));
    };
    const partialPath = new Map<number, string>();
    // Descriptors of created files, kept for finishing them (bounded: others are reopened).
    const fds = new Map<number, number>();
    /** Creates a file's partial copy just before its first chunk is written (overlapping the fetches); null if it cannot be. */
    const ensureCreated = (i: number): string | null => {
      let p = partialPath.get(i);
      if (p !== undefined) return p;
      if (failed.has(i)) return null;
      const tmp = tmpName(i);
      let fd: number;
      try {
        // O_EXCL|O_NOFOLLOW never follows or reuses what stands there.
        fd = openSync(tmp as unknown as string, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
      } catch (err) {
        fail(i, 'WriteFailed', (err as Error).message);
        return null;
      }
      if (fds.size < MAX_KEPT_FDS) fds.set(i, fd);
      else closeSync(fd);
      p = tmp.toString('latin1');
      partialPath.set(i, p);
      partial.add(p);
      return p;
    };

    // Which file offsets each chunk fills, and how many chunk writes each file waits for.
    const targets = new Map<string, { file: number; offset: number }[]>();
    const plainSize = new Map<string, number>();
    const waiting = new Map<number, number>();
    for (const i of files) {
      let offset = 0;
      for (const [id, len] of (entries[i] as FileEntry).chunks) {
        if (id) {
          let t = targets.get(id);
          if (!t) { targets.set(id, (t = [])); plainSize.set(id, len); }
          t.push({ file: i, offset });
          waiting.set(i, (waiting.get(i) ?? 0) + 1);
        }
        offset += len;
      }
    }
    // A file with one stored chunk is created, written and finished by the worker that writes
    // that chunk: most files of a tree are small, and their system calls leave the main thread.
    const solo = new Set<number>();
    for (const [i, n] of waiting) if (n === 1) solo.add(i);
    const whole = (i: number): WholeFile | null => {
      if (!solo.has(i)) return null;
      const e = entries[i] as FileEntry;
      return { dest: dest[i]!.toString('latin1'), size: e.size, ...metaFor(i) };
    };
    const locations = await client.locate(point.containerId, [...targets.keys()]);
    const found = new Set(locations.map((l) => l.id));
    const damaged = new Set<number>();
    for (const id of targets.keys()) {
      if (!found.has(id)) for (const t of targets.get(id)!) damaged.add(t.file);
    }

    const ranges = planRanges(locations, (id) => plainSize.get(id) ?? 0);

    const tick = () => {
      opts.onProgress?.({ ...counters, bytesTotal, filesTotal: files.length });
      reporter.progress();
    };
    const finished = new Set<number>();
    /** Removes what a file that will not be restored left, and closes its descriptor. */
    const discard = (i: number) => {
      const fd = fds.get(i);
      fds.delete(i);
      if (fd !== undefined) closeSync(fd);
      const partialName = partialPath.get(i);
      if (partialName === undefined) return;
      partial.delete(partialName);
      rmSync(Buffer.from(partialName, 'latin1') as unknown as string, { force: true });
    };
    /** Size (holes stay holes), metadata, then the final name; or, if damaged or failed, away with it. */
    const finish = (i: number) => {
      finished.add(i);
      const e = entries[i] as FileEntry;
      if (damaged.has(i)) {
        discard(i);
        errors.push({ code: 'ChecksumMismatch', message: `${display(e.path)} was not restored: a chunk of it is damaged or missing in the vault`, path: display(e.path) });
        dest[i] = null;
        return;
      }
      const partialName = failed.has(i) ? null : ensureCreated(i);
      if (partialName === null) {
        discard(i);
        dest[i] = null;
        return;
      }
      const tmp = Buffer.from(partialName, 'latin1') as unknown as string;
      try {
        let fd = fds.get(i);
        fds.delete(i);
        fd ??= openSync(tmp, C.O_WRONLY | C.O_NOFOLLOW);
        try {
          ftruncateSync(fd, e.size);
          metaProblems(i, setFileMeta(fd, metaFor(i)));
        } finally {
          closeSync(fd);
        }
        // rename() replaces an existing file atomically (and never follows a symlink there).
        renameSync(tmp, dest[i]! as unknown as string);
      } catch (err) {
        fail(i, 'WriteFailed', (err as Error).message);
        discard(i);
        dest[i] = null;
        return;
      }
      partial.delete(partialName);
      counters.filesChanged++;
      counters.filesScanned++;
    };

    // Opening, decompressing, checking and writing every chunk happens in the workers; the main
    // thread creates files before their chunks arrive and finishes them once all have.
    const writer = new ChunkWriter(keys);
    const buffers = new RangeBuffers();
    const onRange = async (r: PackRange, data: Buffer) => {
      counters.bytesUploaded += data.length;
      const buffer = buffers.holding(r, data);
      // The workers' partial copies of whole files are listed too: if the restore stops while
      // a worker is killed between creating one and renaming it, the cleanup removes it.
      const wholePartials: string[] = [];
      const blobs: WriteBlob[] = r.blobs.map((b) => ({
        id: b.id, offset: b.offset - r.offset, length: b.length, plainLength: plainSize.get(b.id) ?? 0,
        // Files already known to be damaged or failed are removed at the end: no need to write into them.
        targets: targets.get(b.id)!.flatMap((t): WriteTarget[] => {
          if (damaged.has(t.file) || failed.has(t.file)) return [];
          const w = whole(t.file);
          if (!w) {
            const path = ensureCreated(t.file);
            return path === null ? [] : [{ path, offset: t.offset, file: t.file }];
          }
          const path = tmpName(t.file).toString('latin1');
          wholePartials.push(path);
          partial.add(path);
          return [{ path, offset: t.offset, file: t.file, whole: w }];
        }),
      }));
      const result = await writer.write(buffer, data.length, blobs);
      // Renamed into place, or (a damaged chunk, a failed write) removed by the worker.
      for (const p of wholePartials) partial.delete(p);
      buffers.release(result.buffer);
      for (const k of result.damaged) for (const t of targets.get(r.blobs[k]!.id)!) damaged.add(t.file);
      for (const f of result.failed) fail(f.file, 'WriteFailed', f.message);
      for (const p of result.problems) metaProblems(p.file, [p]);
      counters.bytesScanned += result.written;
      for (const b of r.blobs) {
        for (const t of targets.get(b.id)!) {
          const left = waiting.get(t.file)! - 1;
          waiting.set(t.file, left);
          if (left !== 0 || damaged.has(t.file)) continue;
          if (!solo.has(t.file)) finish(t.file);
          else {
            finished.add(t.file);
            if (failed.has(t.file)) { dest[t.file] = null; continue; }
            // Written and finished whole by the worker.
            counters.filesChanged++;
            counters.filesScanned++;
          }
        }
      }
      tick();
    };
    const onDamage = (r: PackRange) => {
      buffers.abandon(r);
      for (const b of r.blobs) for (const t of targets.get(b.id)!) damaged.add(t.file);
    };
    try {
      try {
        await fetchRanges({ client, containerId: point.containerId, ranges, inFlight: FETCHES_IN_FLIGHT, onRange, onDamage, bufferFor: (r) => buffers.take(r) });
      } finally {
        await writer.close();
      }
      // Files without stored chunks (empty, all zeros) and damaged ones are finished here.
      for (const i of files) if (!finished.has(i)) finish(i);
    } finally {
      for (const fd of fds.values()) closeSync(fd);
    }

    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const p = dest[i];
      if (!p || e.type === 'dir' || e.type === 'file') continue;
      try {
        if (e.type === 'hardlink') {
          const first = dest[e.link];
          if (!first) { errors.push({ code: 'LinkTargetMissing', message: `${display(e.path)} links to a file that was not restored`, path: display(e.path) }); continue; }
          if (overwrite === 'replace' && exists(p)) unlinkSync(p as unknown as string);
          linkSync(first as unknown as string, p as unknown as string);
          continue;
        }
        if (e.type !== 'symlink' && e.type !== 'fifo' && !IS_ROOT) {
          warnings.push({ code: 'SpecialFileSkipped', message: `${display(e.path)} is a device node; only root can create one, so it was not restored`, path: display(e.path) });
          continue;
        }
        if (overwrite === 'replace' && exists(p)) unlinkSync(p as unknown as string);
        if (e.type === 'symlink') symlinkSync(decodeName(e.target) as unknown as string, p as unknown as string);
        else makeNode(p, e);
        metaProblems(i, setFileMeta(p, metaFor(i), { link: e.type === 'symlink' }));
      } catch (err) {
        fail(i, 'WriteFailed', (err as Error).message);
      }
    }
    // Folders last, deepest first, so writing their contents does not change their mtime again;
    // their attributes (a default ACL) too, so that what was restored in them inherited nothing.
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!;
      if (e.type !== 'dir' || !dest[i]) continue;
      try {
        metaProblems(i, setDirMeta(dest[i]!, metaFor(i)));
      } catch (err) {
        warnings.push({ code: 'MetadataNotRestored', message: `${display(e.path)}: folder metadata not set: ${(err as Error).message}`, path: display(e.path) });
      }
    }
    errors.push(...failed.values());
    tick();
    await reporter.drain();
    const warned = warnings.list();
    const status = errors.length ? 'Failed' : warned.length ? 'CompletedWithWarnings' : 'Completed';
    const done = await client.finishJob(job.id, { status, counters, errors, warnings: warned });
    return { job: done, point, errors, warnings: warned };
  } catch (e) {
    // No garbage left behind: half-written files go; complete ones already have their names.
    for (const p of partial) await rm(Buffer.from(p, 'latin1') as unknown as string, { force: true }).catch(() => undefined);
    await reporter.fail(e, warnings.list(), [...errors, ...failed.values()]);
    throw e;
  }
}

/**
 * `name` + `suffix`, shortened to fit in NAME_MAX bytes: the name is cut at a character
 * boundary (never in the middle of a UTF-8 sequence), the suffix kept whole.
 */
export function sideName(name: Buffer, suffix: string): Buffer {
  const tail = Buffer.from(suffix);
  let keep = Math.min(name.length, NAME_MAX - tail.length);
  // Back off continuation bytes (10xxxxxx) so that a multi-byte character is not split.
  if (keep < name.length) while (keep > 0 && (name[keep]! & 0xc0) === 0x80) keep--;
  return Buffer.concat([name.subarray(0, keep), tail]);
}

const FILE_TYPE = { fifo: C.S_IFIFO, chardev: C.S_IFCHR, blockdev: C.S_IFBLK } as const;

/** A FIFO or a device node, created with owner-only access until its metadata is set. */
function makeNode(p: Buffer, e: FifoEntry | DeviceEntry): void {
  const [major, minor] = e.type === 'fifo' ? [0, 0] : e.rdev;
  posix.mknod(p, FILE_TYPE[e.type] | 0o600, major, minor);
}

function hasDefaultAcl(dir: Buffer): boolean {
  try {
    return posix.listXattrs(dir).some(([name]) => name.toString('latin1') === DEFAULT_ACL);
  } catch {
    // A file system without attributes has no ACLs to inherit.
    return false;
  }
}

/**
 * The buffers ranges are fetched into and moved to the workers in: a handful, reused for the
 * whole restore. A fresh buffer per range cost page faults on every byte restored, and the
 * freed ones waited for the garbage collector (hundreds of MiB of resident memory).
 */
class RangeBuffers {
  private readonly free: ArrayBuffer[] = [];
  private readonly given = new Map<PackRange, ArrayBuffer>();

  take(r: PackRange): Uint8Array {
    const i = this.free.findIndex((b) => b.byteLength >= r.length);
    const buffer = i >= 0 ? this.free.splice(i, 1)[0]! : new ArrayBuffer(Math.max(r.length, DEFAULT_RANGE_LIMITS.maxStored));
    this.given.set(r, buffer);
    return new Uint8Array(buffer);
  }

  /** The buffer that holds a fetched range's data: the one given for it, filled if the client did not. */
  holding(r: PackRange, data: Buffer): ArrayBuffer {
    const given = this.given.get(r);
    this.given.delete(r);
    if (given && data.buffer === given) return given;
    const buffer = given && given.byteLength >= data.length ? given : new ArrayBuffer(data.length);
    data.copy(new Uint8Array(buffer));
    return buffer;
  }

  /** A range that could not be fetched gives its buffer back. */
  abandon(r: PackRange): void {
    const given = this.given.get(r);
    this.given.delete(r);
    if (given) this.free.push(given);
  }

  release(buffer: ArrayBuffer): void {
    this.free.push(buffer);
  }
}

/** Reads one entry at most: a target with millions of files is not listed to learn it is not empty. */
async function isEmptyFolder(path: Buffer): Promise<boolean> {
  const dir = await opendir(path as unknown as string);
  try {
    return (await dir.read()) === null;
  } finally {
    await dir.close();
  }
}

/** Through the folder's descriptor; one we may not read (not root) takes its metadata by path: we created it. */
function setDirMeta(p: Buffer, m: FileMeta): MetaProblem[] {
  let fd: number;
  try {
    fd = openSync(p as unknown as string, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    return setFileMeta(p, m);
  }
  try { return setFileMeta(fd, m); } finally { closeSync(fd); }
}
