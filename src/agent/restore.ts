/**
 * The restore engine. Every chunk is authenticated and its plaintext hash checked before a
 * byte is written; a file with a damaged chunk is removed, not left half-written, and named
 * in the job's errors. Nothing is ever written outside the target folder: names are checked
 * when the manifest is opened, folders are created by us (never followed if a symlink stands
 * in their place), and files are created with O_EXCL|O_NOFOLLOW.
 */
import {
  chmodSync, closeSync, constants as C, ftruncateSync, lchownSync, linkSync, lstatSync, lutimesSync,
  mkdirSync, openSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync,
} from 'node:fs';
import { mkdir, opendir, realpath, rm } from 'node:fs/promises';
import type { JobCounters, JobInfo, JobProblem, PointInfo } from '../core/api.js';
import type { KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { decodeName, openManifest, type Entry, type FileEntry } from '../core/manifest.js';
import type { VaultClient } from './client.js';
import { ChunkWriter, type WholeFile, type WriteBlob, type WriteTarget } from './chunk-writer.js';
import { DEFAULT_RANGE_LIMITS, planRanges, type PackRange } from './pack-ranges.js';
import { fetchRanges } from './range-fetch.js';
import { JobReporter } from './job-report.js';
import { IS_ROOT, metaOf, mtimeSeconds, setFileMeta } from './file-meta.js';

export type OverwritePolicy = 'skip' | 'replace' | 'rename';

export interface RestoreOptions {
  client: VaultClient;
  keys: KeySet;
  pointId: string;
  target: string;
  paths?: string[];
  overwrite?: OverwritePolicy;
  /** `secondary`: a cross-region restore, reading only the paired region's copy. */
  from?: 'secondary';
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

export interface RestoreResult { job: JobInfo; point: PointInfo; errors: JobProblem[]; warnings: JobProblem[] }

// With the range limits (pack-ranges.ts), this bounds the memory of a restore.
const FETCHES_IN_FLIGHT = 4;
const MAX_KEPT_FDS = 256;

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
  const read = opts.from ? { from: opts.from } : {};
  const point = await client.getPoint(opts.pointId, read);
  if (point.itemKind !== 'files') {
    throw new CoffreError('InvalidArgument', `point ${point.id} is a ${point.itemKind} point of ${point.item}: restore it with \`coffre vm restore ${point.id} --target DIR\``);
  }
  const manifest = openManifest(keys, point.id, await client.manifest(point.id, read));
  const chosen = selectEntries(manifest.entries, opts.paths);
  const job = await client.startRestore(point.id, { target: opts.target, paths: opts.paths ?? [], ...read });
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
    // Asked of the folder itself, not of mkdir: `new/../existing` creates a folder, yet the
    // target is one that may hold files.
    const rootIsNew = await isEmptyFolder(root);
    /** Where each entry goes (null: skipped). Parents are resolved before children. */
    const dest = new Array<Buffer | null>(manifest.entries.length).fill(null);
    /** Folders restored into, and whether they were new (created by this restore, or an empty target): nothing stood in them. */
    const dirOf = new Map<string, { path: Buffer; isNew: boolean }>();
    const parentOf = (e: Entry) => e.path.length === 1 ? { path: root, isNew: rootIsNew } : dirOf.get(e.path.slice(0, -1).join('/')) ?? null;
    const files: number[] = [];
    let bytesTotal = 0;

    for (let i = 0; i < manifest.entries.length; i++) {
      if (!chosen.has(i)) continue;
      const e = manifest.entries[i]!;
      const parent = parentOf(e);
      if (!parent) continue; // its folder could not be created; already reported
      let p: Buffer = Buffer.concat([parent.path, Buffer.from('/'), decodeName(e.path[e.path.length - 1]!)]);
      if (e.type === 'dir') {
        let isNew = true;
        try {
          mkdirSync(p as unknown as string, { mode: 0o700 });
        } catch (err) {
          isNew = false;
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          // An existing folder is reused only if it is a real folder, never a symlink.
          const s = lstatSync(p as unknown as string);
          if (!s.isDirectory()) {
            errors.push({ code: 'PathConflict', message: `${display(e.path)} exists and is not a folder; its contents were not restored`, path: display(e.path) });
            continue;
          }
        }
        dirOf.set(e.path.join('/'), { path: p, isNew });
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

    const tmpName = (p: Buffer) => Buffer.concat([p, Buffer.from(`.coffre-part-${job.id}`)]);
    const partialPath = new Map<number, string>();
    // Descriptors of created files, kept for finishing them (bounded: others are reopened).
    const fds = new Map<number, number>();
    /** Creates a file's partial copy just before its first chunk is written (overlapping the fetches). */
    const ensureCreated = (i: number): string => {
      let p = partialPath.get(i);
      if (p !== undefined) return p;
      const tmp = tmpName(dest[i]!);
      // O_EXCL|O_NOFOLLOW never follows or reuses what stands there.
      const fd = openSync(tmp as unknown as string, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
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
      for (const [id, len] of (manifest.entries[i] as FileEntry).chunks) {
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
      const e = manifest.entries[i] as FileEntry;
      return { dest: dest[i]!.toString('latin1'), size: e.size, ...metaOf(e) };
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
    /** Size (holes stay holes), metadata, then the final name; or, if damaged, away with it. */
    const finish = (i: number) => {
      finished.add(i);
      const e = manifest.entries[i] as FileEntry;
      if (damaged.has(i)) {
        const partialName = partialPath.get(i);
        if (partialName !== undefined) {
          const fd = fds.get(i);
          fds.delete(i);
          if (fd !== undefined) closeSync(fd);
          partial.delete(partialName);
          rmSync(Buffer.from(partialName, 'latin1') as unknown as string, { force: true });
        }
        errors.push({ code: 'ChecksumMismatch', message: `${display(e.path)} was not restored: a chunk of it is damaged or missing in the vault`, path: display(e.path) });
        dest[i] = null;
        return;
      }
      const partialName = ensureCreated(i);
      const tmp = Buffer.from(partialName, 'latin1') as unknown as string;
      partial.delete(partialName);
      let fd = fds.get(i);
      fds.delete(i);
      fd ??= openSync(tmp, C.O_WRONLY | C.O_NOFOLLOW);
      try {
        ftruncateSync(fd, e.size);
        setFileMeta(fd, metaOf(e));
      } finally {
        closeSync(fd);
      }
      // rename() replaces an existing file atomically (and never follows a symlink there).
      renameSync(tmp, dest[i]! as unknown as string);
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
        // Files already known to be damaged are removed at the end: no need to write into them.
        targets: targets.get(b.id)!.filter((t) => !damaged.has(t.file)).map((t): WriteTarget => {
          const w = whole(t.file);
          if (!w) return { path: ensureCreated(t.file), offset: t.offset };
          const path = tmpName(dest[t.file]!).toString('latin1');
          wholePartials.push(path);
          partial.add(path);
          return { path, offset: t.offset, whole: w };
        }),
      }));
      const result = await writer.write(buffer, data.length, blobs);
      // Renamed into place, or (a damaged chunk) never created.
      for (const p of wholePartials) partial.delete(p);
      buffers.release(result.buffer);
      for (const k of result.damaged) for (const t of targets.get(r.blobs[k]!.id)!) damaged.add(t.file);
      counters.bytesScanned += result.written;
      for (const b of r.blobs) {
        for (const t of targets.get(b.id)!) {
          const left = waiting.get(t.file)! - 1;
          waiting.set(t.file, left);
          if (left !== 0 || damaged.has(t.file)) continue;
          if (!solo.has(t.file)) finish(t.file);
          else {
            // Written and finished whole by the worker.
            finished.add(t.file);
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
        await fetchRanges({ client, containerId: point.containerId, ranges, inFlight: FETCHES_IN_FLIGHT, onRange, onDamage, bufferFor: (r) => buffers.take(r), read: { ...read, job: job.id } });
      } finally {
        await writer.close();
      }
      // Files without stored chunks (empty, all zeros) and damaged ones are finished here.
      for (const i of files) if (!finished.has(i)) finish(i);
    } finally {
      for (const fd of fds.values()) closeSync(fd);
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

function setDirMeta(p: string, e: Entry): void {
  let fd: number;
  try {
    fd = openSync(p, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (err) {
    // A folder we may not read (not root) still takes its metadata by path; we created it.
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    const secs = mtimeSeconds(e);
    chmodSync(p, e.mode);
    utimesSync(p, secs, secs);
    return;
  }
  try { setFileMeta(fd, metaOf(e)); } finally { closeSync(fd); }
}

function setLinkMeta(p: string, e: Entry): void {
  const secs = mtimeSeconds(e);
  if (IS_ROOT) lchownSync(p, e.uid, e.gid);
  lutimesSync(p, secs, secs);
}

