/**
 * The restore engine. Every chunk is authenticated and its plaintext hash checked before a
 * byte is written; a file with a damaged chunk is removed, not left half-written, and named
 * in the job's errors. Nothing is ever written outside the target folder: names are checked
 * before use (tree pages are validated as they arrive), folders are created by us (never
 * followed if a symlink stands in their place), and files are created with O_EXCL|O_NOFOLLOW.
 *
 * The tree is read folder by folder (restore-source.ts) and files are restored in windows of
 * a bounded size: memory does not grow with the point. A folder gets its metadata once
 * everything in it is done, so writing its contents does not move its mtime again.
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
import { decodeName, openManifest, type OwnerNames } from '../core/manifest.js';
import type { TreeDevice, TreeEntry, TreeFifo, TreeFile } from '../core/tree.js';
import type { ReadOptions, VaultClient } from './client.js';
import { ChunkWriter, type WholeFile, type WriteBlob, type WriteTarget } from './chunk-writer.js';
import { DEFAULT_RANGE_LIMITS, planRanges, type PackRange } from './pack-ranges.js';
import { fetchRanges } from './range-fetch.js';
import { JobReporter } from './job-report.js';
import { IS_ROOT, metaOf, setFileMeta, type FileMeta, type MetaProblem } from './file-meta.js';
import { OwnerDirectory, ownerMapper } from './owners.js';
import { posix } from './posix.js';
import { ACCESS_ACL, DEFAULT_ACL } from './xattrs.js';
import { ProblemList } from './problem-list.js';
import { sourceFor, type Listing, type RestoreSource } from './restore-source.js';

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
  /** `secondary`: a cross-region restore, reading only the paired region's copy. */
  from?: 'secondary';
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
  /** Called with the restore job as soon as the vault created it (a restore request links it). */
  onJob?: (job: JobInfo) => void | Promise<void>;
}

export interface RestoreResult { job: JobInfo; point: PointInfo; errors: JobProblem[]; warnings: JobProblem[] }

// With the range limits (pack-ranges.ts), this bounds the memory of a restore.
const FETCHES_IN_FLIGHT = 4;
const MAX_KEPT_FDS = 256;
/**
 * A window of files is restored at once: up to this many files, chunks or bytes. On 100,000
 * small files, windows of 4096 instead of 16384 took the restore's peak from 351 to 226 MiB
 * at the same CPU time (a window's plan is objects per file and per range).
 */
const WINDOW_FILES = 4096;
const WINDOW_CHUNKS = 4096;
const WINDOW_BYTES = 512 * 1024 * 1024;
/** Folders whose pages are fetched together (one lookup, a few ranged reads). */
const PAGE_BATCH = 256;
/** Linux's longest name (NAME_MAX, in bytes). */
const NAME_MAX = 255;
const SLASH = 0x2f;
/** Read once: files are created with their final mode when this mask leaves it whole. */
const UMASK = process.umask();
const EUID = process.geteuid?.() ?? -1;
const EGID = process.getegid?.() ?? -1;
const S_ISGID = 0o2000;

/** A folder restored into: where, whether it was new (nothing stood in it), what it still waits for. */
interface Folder {
  display: string;
  dest: Buffer;
  isNew: boolean;
  /** What is created in it inherits a default ACL the backed-up entries did not have. */
  inherits: boolean;
  /** It is set-group-id (or made in one that is): what is created in it takes its group, not ours. */
  groupForced: boolean;
  /** The folder's own entry, whose metadata it gets when done (null: the target, or not restored). */
  entry: TreeEntry | null;
  parent: Folder | null;
  /** Whether all of its contents are selected (else only what leads to a selected path). */
  selected: boolean;
  /** Its pages, for the listing to come. */
  pages: string[] | null;
  pending: number;
}

/** A file of the current window. */
interface FileJob {
  id: number;
  entry: TreeFile;
  display: string;
  dest: Buffer;
  folder: Folder;
  inherits: boolean;
  /** Created in its folder, it is ours with our group (the folder does not force one). */
  ownFolder: boolean;
}

/** A further name of a file with several names: linked to the first once it is written. */
interface LinkJob { display: string; dest: Buffer; first: { dest: Buffer | null; done: boolean }; folder: Folder }

/** Selects what lies under the given point paths (and the folders above them). */
function selector(paths: string[] | undefined): { all: boolean; wants(display: string): 'all' | 'above' | null } {
  if (!paths?.length) return { all: true, wants: () => 'all' };
  const wanted = paths.map((p) => p.split('/').filter(Boolean).join('/'));
  return {
    all: false,
    wants: (d) => wanted.some((w) => d === w || d.startsWith(w + '/')) ? 'all' : wanted.some((w) => w.startsWith(d + '/')) ? 'above' : null,
  };
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
    const how = point.itemKind === 'PostgreSQL' ? `coffre db restore ${point.item} --point ${point.id} --target DIR` : `coffre vm restore ${point.id} --target DIR`;
    throw new CoffreError('InvalidArgument', `point ${point.id} is a ${point.itemKind} point of ${point.item}: restore it with \`${how}\``);
  }
  const manifest = openManifest(keys, point.id, await client.manifest(point.id, read));
  const source = sourceFor(client, keys, point.containerId, manifest, read);
  for (const p of opts.paths ?? []) {
    if (!(await pathExists(source, p))) throw new CoffreError('InvalidArgument', `nothing in the point matches --path ${p}; a path starts with the name of the folder that was backed up, e.g. projects/src`);
  }
  const job = await client.startRestore(point.id, { target: opts.target, paths: opts.paths ?? [], ...read });
  await opts.onJob?.(job);
  source.forJob(job.id);
  const run = new Restore(opts, point, job, source, manifest.owners, read);
  return run.run();
}

/** Whether a path names an entry of the point: its folders' listings are read on the way down. */
async function pathExists(source: RestoreSource, path: string): Promise<boolean> {
  const parts = path.split('/').filter(Boolean);
  let entries: readonly TreeEntry[] = source.roots;
  for (let i = 0; i < parts.length; i++) {
    const e = entries.find((x) => decodeName(x.name).toString('utf8') === parts[i]);
    if (!e) return false;
    if (i === parts.length - 1) return true;
    if (e.type !== 'dir') return false;
    const listing = (await source.listings([e.tree])).get(e.tree)?.();
    if (!listing || listing instanceof CoffreError) return false;
    entries = listing;
  }
  return parts.length === 0;
}

class Restore {
  private readonly errors: JobProblem[] = [];
  private readonly warnings = new ProblemList();
  private readonly counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  private readonly reporter: JobReporter;
  private readonly overwrite: OverwritePolicy;
  private readonly ids: { uid(id: number): number; gid(id: number): number };
  private readonly select: ReturnType<typeof selector>;
  private readonly jobTag: string;
  /** Partial files not yet renamed into place: removed if the restore stops half-way. */
  private readonly partial = new Set<string>();
  /** First name of each file with several names ("dev:ino"), for the names that follow. */
  private readonly inodes = new Map<string, { dest: Buffer | null; done: boolean }>();
  private window: FileJob[] = [];
  private windowChunks = 0;
  private windowBytes = 0;
  private links: LinkJob[] = [];
  private nextId = 0;
  private writer: ChunkWriter | null = null;
  private readonly buffers = new RangeBuffers();

  constructor(private readonly opts: RestoreOptions, private readonly point: PointInfo & { containerId: string }, private readonly job: JobInfo,
    private readonly source: RestoreSource, owners: OwnerNames | undefined, private readonly read: ReadOptions) {
    this.reporter = new JobReporter(opts.client, job.id, () => this.counters);
    this.overwrite = opts.overwrite ?? 'rename';
    // Owners matter only to root, who alone may give files away.
    this.ids = ownerMapper(owners, IS_ROOT && !opts.numericOwner ? opts.ownerDirectory ?? new OwnerDirectory() : null);
    this.select = selector(opts.paths);
    this.jobTag = job.id.slice(0, 8);
  }

  private problem(display: string, code: string, why: string): void {
    this.errors.push({ code, message: `${display} was not restored: ${why}`, path: display });
  }

  private metaProblems(display: string, problems: MetaProblem[]): void {
    for (const p of problems) this.warnings.push({ code: p.code, message: `${display}: ${p.message}`, path: display });
  }

  private tick(): void {
    const t = this.source.totals;
    this.opts.onProgress?.({ ...this.counters, bytesTotal: Math.max(t.bytes, this.counters.bytesScanned), filesTotal: Math.max(t.files, this.counters.filesScanned) });
    this.reporter.progress();
  }

  private metaFor(e: TreeEntry, inherits: boolean): FileMeta {
    // A symbolic link has no ACL of its own to strip.
    const strip = !inherits || e.type === 'symlink' ? undefined : e.type === 'dir' ? [ACCESS_ACL, DEFAULT_ACL] : [ACCESS_ACL];
    return metaOf(e, { uid: this.ids.uid(e.uid), gid: this.ids.gid(e.gid) }, strip);
  }

  async run(): Promise<RestoreResult> {
    try {
      await mkdir(this.opts.target, { recursive: true });
      const root = Buffer.from(await realpath(this.opts.target));
      // Asked of the folder itself, not of mkdir: `new/../existing` creates a folder, yet the
      // target is one that may hold files.
      const top: Folder = {
        display: '', dest: root, isNew: await isEmptyFolder(root), inherits: hasDefaultAcl(root), groupForced: isSetgid(root), entry: null, parent: null,
        selected: this.select.all, pages: null, pending: 1,
      };
      this.writer = new ChunkWriter(this.opts.keys);
      try {
        await this.walk(top);
        await this.flushWindow();
      } finally {
        await this.writer.close();
      }
      this.tick();
      await this.reporter.drain();
      const warned = this.warnings.list();
      const status = this.errors.length ? 'Failed' : warned.length ? 'CompletedWithWarnings' : 'Completed';
      const done = await this.opts.client.finishJob(this.job.id, { status, counters: this.counters, errors: this.errors, warnings: warned });
      return { job: done, point: this.point, errors: this.errors, warnings: warned };
    } catch (e) {
      // No garbage left behind: half-written files go; complete ones already have their names.
      for (const p of this.partial) await rm(Buffer.from(p, 'latin1') as unknown as string, { force: true }).catch(() => undefined);
      await this.reporter.fail(e, this.warnings.list(), this.errors);
      throw e;
    }
  }

  /**
   * Depth first, as the backup wrote the tree (so files of one window lie in few packs). The
   * pages of the next folders are fetched together; a folder's files join the window, which is
   * restored whenever it is full.
   */
  private async walk(top: Folder): Promise<void> {
    const stack: Folder[] = [];
    this.place(top, this.source.roots, stack);
    this.release(top);
    const listed = new Map<string[], Listing>();
    while (stack.length > 0) {
      const f = stack[stack.length - 1]!;
      if (!listed.has(f.pages!)) {
        const batch = stack.slice(-PAGE_BATCH).map((x) => x.pages!).filter((p) => !listed.has(p));
        for (const [k, v] of await this.source.listings(batch)) listed.set(k, v);
      }
      stack.pop();
      const entries = listed.get(f.pages!)!();
      listed.delete(f.pages!);
      if (entries instanceof CoffreError) {
        this.problem(f.display, entries.code, `its listing could not be read from the vault (${entries.message}); nothing in it was restored`);
      } else {
        this.place(f, entries, stack);
      }
      this.release(f);
      if (this.window.length >= WINDOW_FILES || this.windowChunks >= WINDOW_CHUNKS || this.windowBytes >= WINDOW_BYTES) await this.flushWindow();
    }
  }

  /** Creates what a folder's entries need at once (sub-folders, links, special files) and queues its files. */
  private place(parent: Folder, entries: readonly TreeEntry[], stack: Folder[]): void {
    const subfolders: Folder[] = [];
    // Names the point itself restores here, and side names already given in this folder (two
    // long names may shorten to the same one): a copy renamed aside takes none of them.
    let pointNames: Set<string> | null = null;
    const given = new Set<string>();
    const restoredHere = (n: Buffer) => given.has(n.toString('latin1'))
      || (pointNames ??= new Set(entries.map((x) => decodeName(x.name).toString('latin1')))).has(n.toString('latin1'));
    for (const e of entries) {
      const name = decodeName(e.name);
      const display = parent.display ? `${parent.display}/${name.toString('utf8')}` : name.toString('utf8');
      const wanted = parent.selected ? 'all' : this.select.wants(display);
      if (!wanted || (wanted === 'above' && e.type !== 'dir')) continue;
      let p: Buffer = Buffer.concat([parent.dest, Buffer.from('/'), name]);
      if (e.type === 'dir') {
        const f = this.folderAt(parent, e, p, display, wanted === 'all');
        if (f) subfolders.push(f);
        continue;
      }
      // In a folder this restore created (mode 0700, ours) nothing can stand: no lstat per file.
      if (!parent.isNew && exists(p)) {
        if (this.overwrite === 'skip') {
          this.warnings.push({ code: 'Skipped', message: `${display} exists and was kept (--overwrite skip)`, path: display });
          continue;
        }
        if (this.overwrite === 'replace') {
          if (lstatSync(p as unknown as string).isDirectory()) {
            this.errors.push({ code: 'PathConflict', message: `${display} is a folder on disk; not replaced`, path: display });
            continue;
          }
        } else {
          const at = (side: Buffer) => Buffer.concat([parent.dest, Buffer.from('/'), side]);
          const side = renamedAside(name, this.point.id, (candidate) => exists(at(candidate)) || restoredHere(candidate));
          given.add(side.toString('latin1'));
          p = at(side);
        }
      }
      if (e.type === 'file') {
        const first = e.inode ? this.inodes.get(e.inode) : undefined;
        parent.pending++;
        if (first) {
          this.links.push({ display, dest: p, first, folder: parent });
          continue;
        }
        if (e.inode) this.inodes.set(e.inode, { dest: null, done: false });
        this.window.push({ id: this.nextId++, entry: e, display, dest: p, folder: parent, inherits: parent.inherits, ownFolder: !parent.groupForced });
        this.windowChunks += e.chunks.length;
        this.windowBytes += e.size;
        continue;
      }
      this.special(e, p, display, parent.inherits);
    }
    // Pushed in reverse, so the first sub-folder is listed next.
    for (let i = subfolders.length - 1; i >= 0; i--) stack.push(subfolders[i]!);
  }

  /** A sub-folder: created (or an existing real folder reused), waiting for its listing. */
  private folderAt(parent: Folder, e: TreeEntry & { type: 'dir' }, p: Buffer, display: string, selected: boolean): Folder | null {
    let isNew = true;
    try {
      mkdirSync(p as unknown as string, { mode: 0o700 });
    } catch (err) {
      isNew = false;
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        this.problem(display, 'WriteFailed', `the folder could not be created, nor anything in it (${(err as Error).message})`);
        return null;
      }
      // An existing folder is reused only if it is a real folder, never a symlink.
      if (!lstatSync(p as unknown as string).isDirectory()) {
        this.errors.push({ code: 'PathConflict', message: `${display} exists and is not a folder; its contents were not restored`, path: display });
        return null;
      }
    }
    parent.pending++;
    return {
      // mkdir in a set-group-id folder makes another one.
      display, dest: p, isNew, inherits: parent.inherits || (!isNew && hasDefaultAcl(p)), groupForced: isNew ? parent.groupForced : isSetgid(p),
      entry: e, parent, selected, pages: e.tree,
      // Its listing is one thing it waits for.
      pending: 1,
    };
  }

  /** Symbolic links, FIFOs and device nodes: nothing to fetch, created at once. */
  private special(e: TreeEntry, p: Buffer, display: string, inherits: boolean): void {
    try {
      if (e.type !== 'symlink' && e.type !== 'fifo' && !IS_ROOT) {
        this.warnings.push({ code: 'SpecialFileSkipped', message: `${display} is a device node; only root can create one, so it was not restored`, path: display });
        return;
      }
      if (this.overwrite === 'replace' && exists(p)) unlinkSync(p as unknown as string);
      if (e.type === 'symlink') symlinkSync(decodeName(e.target) as unknown as string, p as unknown as string);
      else makeNode(p, e as TreeFifo | TreeDevice);
      this.metaProblems(display, setFileMeta(p, this.metaFor(e, inherits), { link: e.type === 'symlink' }));
    } catch (err) {
      this.problem(display, 'WriteFailed', (err as Error).message);
    }
  }

  /** One thing a folder waited for is done; the last one gives it its metadata and tells its parent. */
  private release(f: Folder): void {
    if (--f.pending > 0) return;
    if (f.entry) {
      try {
        this.metaProblems(f.display, setDirMeta(f.dest, this.metaFor(f.entry, f.parent!.inherits)));
      } catch (err) {
        this.warnings.push({ code: 'MetadataNotRestored', message: `${f.display}: folder metadata not set: ${(err as Error).message}`, path: f.display });
      }
    }
    if (f.parent) this.release(f.parent);
  }

  /** Restores the files of the window: fetched by ranges, opened and written by the workers. */
  private async flushWindow(): Promise<void> {
    const files = this.window;
    this.window = [];
    this.windowChunks = 0;
    this.windowBytes = 0;
    if (files.length > 0) await new WindowRestore(this, files).run();
    // Further names of files written by now.
    const links = this.links;
    this.links = [];
    for (const l of links) {
      if (!l.first.done) { this.links.push(l); continue; }
      if (!l.first.dest) this.problem(l.display, 'LinkTargetMissing', 'it links to a file that was not restored');
      else {
        try {
          if (this.overwrite === 'replace' && exists(l.dest)) unlinkSync(l.dest as unknown as string);
          linkSync(l.first.dest as unknown as string, l.dest as unknown as string);
        } catch (err) {
          this.problem(l.display, 'WriteFailed', (err as Error).message);
        }
      }
      this.release(l.folder);
    }
  }

  // What WindowRestore needs of the restore as a whole.
  get shared() {
    return {
      opts: this.opts, point: this.point, counters: this.counters, partial: this.partial, writer: this.writer!, buffers: this.buffers,
      tmpTag: this.jobTag, read: this.read, jobId: this.job.id,
      metaFor: (e: TreeEntry, inherits: boolean) => this.metaFor(e, inherits),
      problem: (display: string, code: string, why: string) => this.problem(display, code, why),
      metaProblems: (display: string, problems: MetaProblem[]) => this.metaProblems(display, problems),
      done: (f: FileJob, ok: boolean) => {
        const first = f.entry.inode ? this.inodes.get(f.entry.inode) : undefined;
        if (first && !first.done) { first.done = true; first.dest = ok ? f.dest : null; }
        this.release(f.folder);
      },
      tick: () => this.tick(),
    };
  }
}

/**
 * The files of one window: which chunks go where, the ranges that hold them, and each file
 * finished (size, metadata, final name) once its last chunk is written.
 */
class WindowRestore {
  private readonly s: Restore['shared'];
  private readonly byId = new Map<number, FileJob>();
  /** Entries that could not be written, with the reason; each is reported once. */
  private readonly failed = new Map<number, string>();
  private readonly damaged = new Set<number>();
  private readonly partialPath = new Map<number, string>();
  // Descriptors of created files, kept for finishing them (bounded: others are reopened).
  private readonly fds = new Map<number, number>();
  private readonly targets = new Map<string, { file: number; offset: number }[]>();
  private readonly plainSize = new Map<string, number>();
  private readonly waiting = new Map<number, number>();
  private readonly solo = new Set<number>();
  private readonly finished = new Set<number>();

  constructor(restore: Restore, private readonly files: FileJob[]) {
    this.s = restore.shared;
    for (const f of files) this.byId.set(f.id, f);
  }

  /** A short name of fixed length in the file's own folder: a 255-byte name leaves no room for a suffix. */
  private tmpName(f: FileJob): Buffer {
    return Buffer.concat([f.dest.subarray(0, f.dest.lastIndexOf(SLASH) + 1), Buffer.from(`.coffre-${this.s.tmpTag}-${f.id.toString(36)}`)]);
  }

  private fail(id: number, why: string): void {
    if (!this.failed.has(id)) this.failed.set(id, why);
  }

  /** Creates a file's partial copy just before its first chunk is written; null if it cannot be. */
  private ensureCreated(id: number): string | null {
    let p = this.partialPath.get(id);
    if (p !== undefined) return p;
    if (this.failed.has(id)) return null;
    const tmp = this.tmpName(this.byId.get(id)!);
    let fd: number;
    try {
      // O_EXCL|O_NOFOLLOW never follows or reuses what stands there.
      fd = openSync(tmp as unknown as string, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    } catch (err) {
      this.fail(id, (err as Error).message);
      return null;
    }
    if (this.fds.size < MAX_KEPT_FDS) this.fds.set(id, fd);
    else closeSync(fd);
    p = tmp.toString('latin1');
    this.partialPath.set(id, p);
    this.s.partial.add(p);
    return p;
  }

  /** Removes what a file that will not be restored left, and closes its descriptor. */
  private discard(id: number): void {
    const fd = this.fds.get(id);
    this.fds.delete(id);
    if (fd !== undefined) closeSync(fd);
    const partialName = this.partialPath.get(id);
    if (partialName === undefined) return;
    this.s.partial.delete(partialName);
    rmSync(Buffer.from(partialName, 'latin1') as unknown as string, { force: true });
  }

  /** Size (holes stay holes), metadata, then the final name; or, if damaged or failed, away with it. */
  private finish(id: number): void {
    this.finished.add(id);
    const f = this.byId.get(id)!;
    if (this.damaged.has(id)) {
      this.discard(id);
      this.s.problem(f.display, 'ChecksumMismatch', 'a chunk of it is damaged or missing in the vault');
      this.s.done(f, false);
      return;
    }
    const partialName = this.failed.has(id) ? null : this.ensureCreated(id);
    if (partialName === null) {
      this.discard(id);
      this.s.problem(f.display, 'WriteFailed', this.failed.get(id)!);
      this.s.done(f, false);
      return;
    }
    const tmp = Buffer.from(partialName, 'latin1') as unknown as string;
    try {
      let fd = this.fds.get(id);
      this.fds.delete(id);
      fd ??= openSync(tmp, C.O_WRONLY | C.O_NOFOLLOW);
      try {
        ftruncateSync(fd, f.entry.size);
        this.s.metaProblems(f.display, setFileMeta(fd, this.s.metaFor(f.entry, f.inherits)));
      } finally {
        closeSync(fd);
      }
      // rename() replaces an existing file atomically (and never follows a symlink there).
      renameSync(tmp, f.dest as unknown as string);
    } catch (err) {
      this.discard(id);
      this.s.problem(f.display, 'WriteFailed', (err as Error).message);
      this.s.done(f, false);
      return;
    }
    this.s.partial.delete(partialName);
    this.s.counters.filesChanged++;
    this.s.counters.filesScanned++;
    this.s.done(f, true);
  }

  async run(): Promise<void> {
    const { opts, point } = this.s;
    // Which file offsets each chunk fills, and how many chunk writes each file waits for.
    for (const f of this.files) {
      let offset = 0;
      for (const [cid, len] of f.entry.chunks) {
        if (cid) {
          let t = this.targets.get(cid);
          if (!t) { this.targets.set(cid, (t = [])); this.plainSize.set(cid, len); }
          t.push({ file: f.id, offset });
          this.waiting.set(f.id, (this.waiting.get(f.id) ?? 0) + 1);
        }
        offset += len;
      }
    }
    // A file with one stored chunk is created, written and finished by the worker that writes
    // that chunk: most files of a tree are small, and their system calls leave the main thread.
    for (const [id, n] of this.waiting) if (n === 1) this.solo.add(id);
    const locations = await opts.client.locate(point.containerId, [...this.targets.keys()]);
    const found = new Set(locations.map((l) => l.id));
    for (const cid of this.targets.keys()) {
      if (!found.has(cid)) for (const t of this.targets.get(cid)!) this.damaged.add(t.file);
    }
    const ranges = planRanges(locations, (cid) => this.plainSize.get(cid) ?? 0);
    const fds = this.fds;
    try {
      await fetchRanges({
        client: opts.client, containerId: point.containerId, ranges, inFlight: FETCHES_IN_FLIGHT, read: { ...this.s.read, job: this.s.jobId },
        onRange: (r, data) => this.onRange(r, data),
        onDamage: (r) => {
          this.s.buffers.abandon(r);
          for (const b of r.blobs) for (const t of this.targets.get(b.id)!) this.damaged.add(t.file);
        },
        bufferFor: (r) => this.s.buffers.take(r),
      });
      // Files without stored chunks (empty, all zeros) and damaged or failed ones are finished here.
      for (const f of this.files) if (!this.finished.has(f.id)) this.finish(f.id);
    } finally {
      for (const fd of fds.values()) closeSync(fd);
      fds.clear();
    }
  }

  private async onRange(r: PackRange, data: Buffer): Promise<void> {
    const s = this.s;
    s.counters.bytesUploaded += data.length;
    const buffer = s.buffers.holding(r, data);
    // The workers' partial copies of whole files are listed too: if the restore stops while
    // a worker is killed between creating one and renaming it, the cleanup removes it.
    const wholePartials: string[] = [];
    const blobs: WriteBlob[] = r.blobs.map((b) => ({
      id: b.id, offset: b.offset - r.offset, length: b.length, plainLength: this.plainSize.get(b.id) ?? 0,
      // Files already known to be damaged or failed are removed at the end: no need to write into them.
      targets: this.targets.get(b.id)!.flatMap((t): WriteTarget[] => {
        if (this.damaged.has(t.file) || this.failed.has(t.file)) return [];
        if (!this.solo.has(t.file)) {
          const path = this.ensureCreated(t.file);
          return path === null ? [] : [{ path, offset: t.offset, file: t.file }];
        }
        const f = this.byId.get(t.file)!;
        const whole: WholeFile = { dest: f.dest.toString('latin1'), size: f.entry.size, ...s.metaFor(f.entry, f.inherits) };
        // Created with its final mode when nothing can change it on the way (set-id bits, a
        // default ACL, the umask); owned by us with our group in a folder this restore made.
        const mode = f.entry.mode;
        if ((mode & 0o7000) === 0 && (mode & UMASK) === 0 && !f.inherits) {
          whole.born = f.ownFolder ? { mode, uid: EUID, gid: EGID } : { mode };
        }
        const path = this.tmpName(f).toString('latin1');
        wholePartials.push(path);
        s.partial.add(path);
        return [{ path, offset: t.offset, file: t.file, whole }];
      }),
    }));
    const result = await s.writer.write(buffer, data.length, blobs);
    // Renamed into place, or (a damaged chunk, a failed write) removed by the worker.
    for (const p of wholePartials) s.partial.delete(p);
    s.buffers.release(result.buffer);
    for (const k of result.damaged) for (const t of this.targets.get(r.blobs[k]!.id)!) this.damaged.add(t.file);
    for (const f of result.failed) this.fail(f.file, f.message);
    for (const p of result.problems) s.metaProblems(this.byId.get(p.file)!.display, [p]);
    s.counters.bytesScanned += result.written;
    for (const b of r.blobs) {
      for (const t of this.targets.get(b.id)!) {
        const left = this.waiting.get(t.file)! - 1;
        this.waiting.set(t.file, left);
        if (left !== 0 || this.damaged.has(t.file)) continue;
        if (!this.solo.has(t.file) || this.failed.has(t.file)) { this.finish(t.file); continue; }
        // Written and finished whole by the worker.
        this.finished.add(t.file);
        s.counters.filesChanged++;
        s.counters.filesScanned++;
        s.done(this.byId.get(t.file)!, true);
      }
    }
    s.tick();
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

/**
 * The name a restored copy takes beside an existing file (`--overwrite rename`):
 * `NAME.restored-<8 hex of the point id>`, then `.restored-2-…`, `-3-`…, the first that
 * `taken` does not claim (on disk, or restored here by the point itself).
 */
export function renamedAside(name: Buffer, pointId: string, taken: (side: Buffer) => boolean): Buffer {
  for (let n = 1; ; n++) {
    const side = sideName(name, `.restored-${n === 1 ? '' : n + '-'}${pointId.slice(0, 8)}`);
    if (!taken(side)) return side;
  }
}

const FILE_TYPE = { fifo: C.S_IFIFO, chardev: C.S_IFCHR, blockdev: C.S_IFBLK } as const;

/** A FIFO or a device node, created with owner-only access until its metadata is set. */
function makeNode(p: Buffer, e: TreeFifo | TreeDevice): void {
  const [major, minor] = e.type === 'fifo' ? [0, 0] : e.rdev;
  posix.mknod(p, FILE_TYPE[e.type] | 0o600, major, minor);
}

function isSetgid(dir: Buffer): boolean {
  return (lstatSync(dir as unknown as string).mode & S_ISGID) !== 0;
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
