/**
 * The file backup's walk, folder by folder, building the point's tree (src/core/tree.ts) as it
 * goes. Memory stays flat in the size of the tree: a folder is listed, its changed files go to
 * the workers, and once its last file and sub-folder are done its pages are stored and the
 * folder is forgotten. Only the folders on the current path and those still waiting for the
 * workers are held.
 *
 * The local cache (tree-cache.ts) makes an unchanged folder cheap: when the names and stat
 * keys of its entries hash to the signature cached for it, and its cached pages are still in
 * the vault, nothing in it is read, decoded or encoded; its pages are reused as they are,
 * unless a sub-folder changed. In a folder that did change, each entry whose stat key is
 * unchanged reuses its cached entry (chunks, attributes, link target) if the vault holds its
 * chunks; the other files are read by the workers.
 *
 * A stat key covers size, mtime, ctime, inode, mode and owner: a change of attributes alone
 * moves the ctime, so it is seen.
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JobProblem } from '../core/api.js';
import { encodeBlob } from '../core/blob.js';
import { chunkId, type KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import type { SharedIdSet } from '../core/known-ids.js';
import { encodeName } from '../core/manifest.js';
import { PackWriter } from '../core/pack.js';
import { encodeRefsPrefix, pageRefs, paginate, type TreeDir, type TreeEntry, type TreeFile } from '../core/tree.js';
import type { FileEncoder, FileResult, FileTask } from './file-encoder.js';
import type { CachedEntry, CachedFolder, TreeCache } from './tree-cache.js';
import { entryStat, excluder, rootName, type EntryStat, type WalkRoot } from './walk.js';
import { Listing, type ListedEntry } from './listing.js';
import { readXattrs } from './xattrs.js';

/** Files below this size are read in batches (one message for many files). */
const SMALL_FILE = 1024 * 1024;
const BATCH_BYTES = 2 * 1024 * 1024;
const BATCH_FILES = 128;
/** Tree pages go to the vault in packs of about this size. */
const TREE_PACK_BYTES = 4 * 1024 * 1024;
const TREE_UPLOADS_IN_FLIGHT = 2;

export interface TreeBackupOptions {
  keys: KeySet;
  /** Ids the vault holds, and those this backup stores: shared with the workers. */
  known: SharedIdSet;
  cache: TreeCache;
  excludes: string[];
  warn(p: JobProblem): void;
  /** The workers, started on the first file that must be read. */
  encoder(): Promise<FileEncoder>;
  upload(pack: Uint8Array): Promise<void>;
}

export interface TreeCounters { filesScanned: number; filesChanged: number; cachedBytes: number; files: number; bytes: number }

export interface TreeResult { roots: TreeEntry[]; uids: Set<number>; gids: Set<number> }

/** The key an unchanged entry keeps from one backup to the next. */
function statKey(s: EntryStat): string {
  return `${s.kind}:${s.key}:${s.mode}:${s.uid}:${s.gid}${s.rdev ? `:${s.rdev[0]},${s.rdev[1]}` : ''}`;
}

/** What the cache keeps of an entry: a folder's pages are its own row's. */
function cachedForm(e: TreeEntry): TreeEntry {
  if (e.type !== 'dir') return e;
  const { tree: _pages, ...rest } = e;
  return rest as TreeEntry;
}

interface Folder {
  path: string[];
  cacheKey: string;
  display: string;
  abs: Buffer;
  parent: Folder | null;
  /** Its index among its parent's entries. */
  slot: number;
  listing: Listing;
  cached: CachedFolder | null;
  /** Listing unchanged and its cached pages still stored: entries are not built unless a sub-folder changed. */
  quick: boolean;
  /** Entries by slot; null: dropped (unreadable), or not built (quick). */
  entries: (TreeEntry | null)[];
  /** Stat keys by slot, made for the entries of a folder that changed. */
  keys: string[];
  /** Pages of sub-folders by slot, for a quick folder rebuilt from its cached entries. */
  childPages: Map<number, string[]>;
  childChanged: boolean;
  pending: number;
  files: number;
  bytes: number;
}

interface Batch { tasks: FileTask[]; done: ((r: FileResult) => void)[]; bytes: number }

export class TreeBackup {
  readonly counters: TreeCounters = { filesScanned: 0, filesChanged: 0, cachedBytes: 0, files: 0, bytes: 0 };
  private readonly isExcluded: (display: string, name: string) => boolean;
  private batch: Batch = { tasks: [], done: [], bytes: 0 };
  private readonly work = new Set<Promise<void>>();
  private readonly uploads = new Set<Promise<void>>();
  private treePack = new PackWriter('tree');
  private failure: unknown = null;
  private readonly uids = new Set<number>();
  private readonly gids = new Set<number>();
  /** First entry of each file with several names in this backup ("dev:ino"), and who waits for it. */
  private readonly inodes = new Map<string, { entry: TreeFile | null; waiting: ((e: TreeFile | null) => void)[] | null }>();
  private rootsDone!: (roots: TreeEntry[]) => void;
  /** Folders read from elsewhere (a nested volume's snapshot) or left out (null), by their path in the point. */
  private grafts = new Map<string, string | null>();

  constructor(private readonly o: TreeBackupOptions) {
    this.isExcluded = excluder(o.excludes);
  }

  /**
   * Walks the given paths (each read where it is, or from a snapshot's copy: WalkRoot);
   * resolves once every page is stored or on its way.
   */
  async run(paths: (string | WalkRoot)[]): Promise<TreeResult> {
    const names = new Set<string>();
    const roots: ListedEntry[] = [];
    for (const given of paths) {
      const { read, record: root, grafts } = typeof given === 'string' ? { read: given, record: given, grafts: undefined } : given;
      const abs = resolve(read);
      const name = rootName(root);
      if (names.has(name)) throw new CoffreError('InvalidArgument', `two folders to back up share the name ${name}; back them up as separate items`);
      names.add(name);
      let stat: EntryStat | null;
      try {
        stat = entryStat(lstatSync(abs, { bigint: true }));
      } catch (e) {
        throw new CoffreError('InvalidArgument', `cannot back up ${root}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`);
      }
      if (!stat || (stat.kind !== 'dir' && stat.kind !== 'file' && stat.kind !== 'symlink')) {
        throw new CoffreError('InvalidArgument', `cannot back up ${root}: it is a device, socket or FIFO; back up the folder that holds it`);
      }
      roots.push({ name: Buffer.from(name), abs: Buffer.from(abs), stat });
      for (const [path, to] of grafts ?? []) this.grafts.set(path, to);
    }
    roots.sort((a, b) => Buffer.compare(a.name, b.name));
    const done = new Promise<TreeEntry[]>((resolve) => { this.rootsDone = resolve; });
    // The roots are the entries of a folder of their own, whose entries become the manifest's roots.
    const top = this.folder({ path: [], display: '', abs: Buffer.alloc(0), parent: null, slot: 0 }, Listing.of(roots));
    await this.fill(top);
    await this.dispatch();
    while (this.work.size > 0) await Promise.all(this.work);
    this.check();
    const result = await done;
    await this.flushTrees();
    return { roots: result, uids: this.uids, gids: this.gids };
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private folder(at: { path: string[]; display: string; abs: Buffer; parent: Folder | null; slot: number }, listing: Listing): Folder {
    const cacheKey = JSON.stringify(at.path);
    const cached = this.o.cache.folder(cacheKey);
    // Unchanged, and still complete in the vault (a stored page's whole subtree is): nothing to read.
    const quick = cached !== null && cached.sig === listing.sig && at.parent !== null && cached.pages.every((id) => this.o.known.hasHex(id));
    return {
      ...at, cacheKey, listing, cached, quick, keys: [], entries: new Array<TreeEntry | null>(listing.count).fill(null),
      childPages: new Map(), childChanged: false, pending: 1, files: 0, bytes: 0,
    };
  }

  /** Builds (or, in a quick folder, skips) each entry of a listed folder and descends into sub-folders. */
  private async fill(f: Folder): Promise<void> {
    await this.settle();
    const list = f.listing;
    if (f.quick) {
      // Only its sub-folders are visited; its files cost nothing but what the listing holds.
      f.files = f.cached!.files;
      f.bytes = f.cached!.bytes;
      this.counters.filesScanned += f.files;
      this.counters.cachedBytes += f.bytes;
      for (let slot = 0; slot < list.count; slot++) {
        this.uids.add(list.uid(slot));
        this.gids.add(list.gid(slot));
        if (list.kind(slot) === 'dir') await this.descend(f, slot, encodeName(list.name(slot)));
      }
      this.release(f);
      return;
    }
    const previous = f.cached ? new Map(f.cached.entries().map((c) => [c[0], c])) : null;
    for (let slot = 0; slot < list.count; slot++) {
      this.check();
      const s = list.stat(slot);
      const key = statKey(s);
      f.keys[slot] = key;
      this.uids.add(s.uid);
      this.gids.add(s.gid);
      const nameBuf = list.name(slot);
      const name = encodeName(nameBuf);
      const display = f.display ? `${f.display}/${nameBuf.toString('utf8')}` : nameBuf.toString('utf8');
      const old = previous?.get(name);
      const same = old && old[1] === key && old[2].type === s.kind ? old[2] : null;
      if (s.kind === 'dir') {
        f.entries[slot] = { ...(same ?? this.base(name, s, list.abs(slot), display)), type: 'dir', tree: [] } as TreeDir;
        await this.descend(f, slot, name);
      } else if (s.kind === 'file') {
        this.counters.filesScanned++;
        this.file(f, slot, name, list.abs(slot), display, s, same as TreeFile | null);
        if (this.batch.bytes >= BATCH_BYTES || this.batch.tasks.length >= BATCH_FILES || s.size >= SMALL_FILE) await this.dispatch();
      } else if (same) {
        f.entries[slot] = same;
      } else if (s.kind === 'symlink') {
        let target: Buffer;
        try {
          target = readlinkSync(list.abs(slot) as unknown as string, { encoding: 'buffer' });
        } catch (e) {
          this.o.warn({ code: 'Unreadable', message: `cannot read link ${display}: ${(e as Error).message}`, path: display });
          continue;
        }
        f.entries[slot] = { ...this.base(name, s, list.abs(slot), display), type: 'symlink', target: encodeName(target) };
      } else if (s.kind === 'fifo') {
        f.entries[slot] = { ...this.base(name, s, list.abs(slot), display), type: 'fifo' };
      } else {
        f.entries[slot] = { ...this.base(name, s, list.abs(slot), display), type: s.kind, rdev: s.rdev! };
      }
    }
    this.release(f);
  }

  /** Lists a sub-folder and walks it; its parent waits for it. */
  private async descend(f: Folder, slot: number, name: string): Promise<void> {
    f.pending++;
    const nameBuf = f.listing.name(slot);
    const display = f.display ? `${f.display}/${nameBuf.toString('utf8')}` : nameBuf.toString('utf8');
    const abs = f.listing.abs(slot);
    const path = [...f.path, name];
    const listing = Listing.scan(abs, display, path, { isExcluded: this.isExcluded, grafts: this.grafts, warn: this.o.warn });
    await this.fill(this.folder({ path, display, abs, parent: f, slot }, listing));
  }

  /** Metadata of an entry, with its attributes read now (entries without a cached form). */
  private base(name: string, s: EntryStat, abs: Buffer, display: string) {
    const read = readXattrs(abs);
    if (read.problem) this.o.warn({ code: 'XattrUnreadable', message: `${display}: ${read.problem}`, path: display });
    const e = { name, mode: s.mode, uid: s.uid, gid: s.gid, mtime: s.mtimeNs };
    return read.xattrs ? { ...e, xattrs: read.xattrs } : e;
  }

  /** A file: its cached entry when unchanged and stored, the first name's entry for a further name, else read by a worker. */
  private file(f: Folder, slot: number, name: string, abs: Buffer, display: string, s: EntryStat, same: TreeFile | null): void {
    const inode = s.nlink > 1 ? s.inode : undefined;
    const seen = inode ? this.inodes.get(inode) : undefined;
    const settle = (e: TreeFile | null) => {
      f.entries[slot] = e && { ...e, name };
      if (e) { f.files++; f.bytes += e.size; }
      this.release(f);
    };
    f.pending++;
    if (seen) {
      // A further name of a file this backup has met: the same bytes, read once.
      if (seen.waiting) seen.waiting.push(settle);
      else settle(seen.entry);
      return;
    }
    const first: { entry: TreeFile | null; waiting: ((e: TreeFile | null) => void)[] | null } | null = inode ? { entry: null, waiting: [] } : null;
    if (inode) this.inodes.set(inode, first!);
    const finish = (e: TreeFile | null) => {
      settle(e);
      if (first) {
        first.entry = e;
        for (const w of first.waiting!.splice(0)) w(e);
        first.waiting = null;
      }
    };
    if (same && same.chunks.every(([id]) => id === null || this.o.known.hasHex(id))) {
      this.counters.cachedBytes += same.size;
      finish(inode ? { ...same, inode } : same);
      return;
    }
    this.counters.filesChanged++;
    const base = { name, mode: s.mode, uid: s.uid, gid: s.gid, mtime: s.mtimeNs };
    this.batch.tasks.push({ path: abs.toString('latin1'), display, size: String(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs });
    this.batch.bytes += s.size;
    this.batch.done.push((r) => {
      for (const p of r.problems) this.o.warn(p);
      if (!r.chunks) { finish(null); return; }
      const size = r.chunks.reduce((n, c) => n + c[1], 0);
      const e: TreeFile = { ...base, type: 'file', size, chunks: r.chunks };
      if (r.xattrs) e.xattrs = r.xattrs;
      if (inode) e.inode = inode;
      finish(e);
    });
  }

  /** Sends the batch of files gathered so far to the workers. */
  private async dispatch(): Promise<void> {
    if (this.batch.tasks.length === 0) return;
    const { tasks, done, bytes } = this.batch;
    this.batch = { tasks: [], done: [], bytes: 0 };
    const encoder = await this.o.encoder();
    await encoder.ready();
    const task = encoder.read(tasks, bytes).then((results) => {
      results.forEach((r, i) => done[i]!(r));
    }).catch((e: unknown) => { this.failure ??= e; }).finally(() => { this.work.delete(task); });
    this.work.add(task);
  }

  /** One thing a folder waited for is done; the last one finishes it. */
  private release(f: Folder): void {
    if (--f.pending > 0) return;
    try {
      this.finish(f);
    } catch (e) {
      this.failure ??= e;
    }
  }

  /** Stores the folder's pages (unless unchanged), updates the cache, and tells its parent. */
  private finish(f: Folder): void {
    if (f.parent === null) {
      // The roots: kept in the manifest itself, and cached like any folder for their own reuse.
      const roots: TreeEntry[] = [];
      const cachedRoots: CachedEntry[] = [];
      f.entries.forEach((e, slot) => {
        if (!e) return;
        roots.push(e);
        cachedRoots.push([e.name, f.keys[slot]!, cachedForm(e)]);
      });
      this.o.cache.put(f.cacheKey, f.listing.sig, [], { files: f.files, bytes: f.bytes }, cachedRoots);
      this.counters.files += f.files;
      this.counters.bytes += f.bytes;
      this.rootsDone(roots);
      return;
    }
    let pages: string[];
    if (f.quick && !f.childChanged) {
      pages = f.cached!.pages;
      this.o.cache.keep(f.cacheKey);
    } else {
      let entries: TreeEntry[];
      let cachedEntries: CachedEntry[];
      if (f.quick) {
        // Unchanged listing, changed sub-folder: the cached entries, with the sub-folders' new pages.
        cachedEntries = f.cached!.entries();
        entries = cachedEntries.map(([, , e], slot) => (e.type === 'dir' ? { ...e, tree: f.childPages.get(slot)! } : e));
      } else {
        entries = [];
        cachedEntries = [];
        f.entries.forEach((e, slot) => {
          if (!e) return;
          entries.push(e);
          cachedEntries.push([e.name, f.keys[slot]!, cachedForm(e)]);
        });
      }
      pages = this.storePages(entries);
      // A folder that lost an entry (unreadable) is never taken as unchanged: its cached entries
      // would not line up with its listing.
      const complete = f.quick || f.entries.every((e) => e !== null);
      this.o.cache.put(f.cacheKey, complete ? f.listing.sig : '', pages, { files: f.files, bytes: f.bytes }, cachedEntries);
    }
    this.counters.files += f.files;
    this.counters.bytes += f.bytes;
    const parent = f.parent;
    const changed = !f.cached || f.cached.pages.length !== pages.length || f.cached.pages.some((id, i) => id !== pages[i]);
    if (changed) parent.childChanged = true;
    if (parent.quick) parent.childPages.set(f.slot, pages);
    else (parent.entries[f.slot] as TreeDir).tree = pages;
    this.release(parent);
  }

  /** Encodes the pages the vault lacks into the tree pack, each behind the list of what it references. */
  private storePages(entries: TreeEntry[]): string[] {
    const ids: string[] = [];
    for (const page of paginate(entries)) {
      const plain = page.plain;
      const id = chunkId(this.o.keys.idKey, plain);
      ids.push(id.toString('hex'));
      if (this.o.known.claim(id) === 'known') continue;
      const prefix = encodeRefsPrefix(pageRefs(page.entries));
      this.treePack.add(id, Buffer.concat([prefix, encodeBlob(this.o.keys, id, plain)]));
      if (this.treePack.byteLength >= TREE_PACK_BYTES) this.sendTreePack();
    }
    return ids;
  }

  private sendTreePack(): void {
    if (this.treePack.count === 0) return;
    const { data } = this.treePack.finish();
    this.treePack = new PackWriter('tree');
    const task = this.o.upload(data).catch((e: unknown) => { this.failure ??= e; }).finally(() => { this.uploads.delete(task); });
    this.uploads.add(task);
  }

  private async flushTrees(): Promise<void> {
    this.sendTreePack();
    while (this.uploads.size > 0) await Promise.all(this.uploads);
    this.check();
  }

  /** Waits while too many tree packs are in flight (called between folders). */
  async settle(): Promise<void> {
    while (this.uploads.size > TREE_UPLOADS_IN_FLIGHT) await Promise.race(this.uploads);
    this.check();
  }
}
