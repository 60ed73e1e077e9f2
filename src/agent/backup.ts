/**
 * The file/folder backup engine: walk, skip unchanged files by the metadata cache, cut changed
 * files into content-defined chunks, send only the chunks the vault lacks (packed, compressed,
 * encrypted), then the manifest, then commit the point.
 */
import { readlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { Consistency, JobCounters, JobProblem, PointInfo, PointKind } from '../core/api.js';
import { ID_BYTES, type KeySet } from '../core/crypto.js';
import { DEFAULT_CHUNKER } from '../core/fastcdc.js';
import { SharedIdSet } from '../core/known-ids.js';
import { encodeName, MANIFEST_VERSION, referencedChunks, type Entry, type FileEntry, type Manifest, sealManifest, type Xattr } from '../core/manifest.js';
import { loadCache, saveCache, type MetadataCache } from './cache.js';
import type { VaultClient } from './client.js';
import { walk, type EntryStat, type WalkEntry } from './walk.js';
import { FileEncoder, type FileResult, type FileTask } from './file-encoder.js';
import { JobReporter, defaultRetainUntil } from './job-report.js';
import { OwnerDirectory, ownerNames } from './owners.js';
import { readXattrs } from './xattrs.js';
import type { PreparedRead } from './snapshot/prepared-read.js';

/** Files below this size are read in batches (one message for many files). */
const SMALL_FILE = 1024 * 1024;
const BATCH_BYTES = 2 * 1024 * 1024;
const BATCH_FILES = 128;
const PROGRESS_MS = 200;

export interface BackupOptions {
  client: VaultClient;
  containerId: string;
  keys: KeySet;
  agentDir: string;
  vaultId: string;
  item: string;
  paths: string[];
  excludes?: string[];
  kind?: PointKind;
  retainUntil?: string | null;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
  /** Snapshots to read `paths` from, and the point's label (src/agent/snapshot/); without it, a live, crash-consistent read. */
  read?: PreparedRead;
}

export interface BackupResult { point: PointInfo; jobId: string; counters: JobCounters; warnings: JobProblem[] }

function baseEntry(w: WalkEntry, xattrs?: Xattr[]) {
  const base = { path: w.path, mode: w.stat.mode, uid: w.stat.uid, gid: w.stat.gid, mtime: w.stat.mtimeNs };
  return xattrs ? { ...base, xattrs } : base;
}

/** A file entry whose chunks a worker is still reading. */
interface Reading { entry: FileEntry; key: string; stat: EntryStat }

export async function backup(opts: BackupOptions): Promise<BackupResult> {
  const { client, keys } = opts;
  const warnings: JobProblem[] = [...(opts.read?.warnings ?? [])];
  const warn = (p: JobProblem) => { warnings.push(p); };
  const entries = await walk(opts.read?.roots ?? opts.paths, opts.excludes ?? [], warn);
  const bytesTotal = entries.reduce((n, e) => n + (e.stat.kind === 'file' ? e.stat.size : 0), 0);
  const filesTotal = entries.filter((e) => e.stat.kind === 'file').length;

  const start = await client.startBackup(opts.item, 'files', { paths: opts.paths.map((p) => resolve(p)), excludes: opts.excludes ?? [], ...opts.read?.options });
  const jobId = start.job.id;
  let cachedBytes = 0;
  let filesChanged = 0;
  let filesScanned = 0;
  let uploaded = 0;
  // Workers start on the first changed file: an unchanged re-backup never pays for them.
  let encoder: FileEncoder | null = null;
  const snapshot = (): JobCounters => {
    const read = encoder?.counts ?? { bytesRead: 0, bytesNew: 0 };
    return { bytesScanned: cachedBytes + read.bytesRead, bytesNew: read.bytesNew, bytesUploaded: uploaded, filesScanned, filesChanged };
  };
  const reporter = new JobReporter(client, jobId, snapshot);
  // Progress goes out on a timer: per entry it cost more than the rest of an unchanged file, and
  // while workers read a large file the main thread has no entries to count.
  const tick = (force = false) => {
    opts.onProgress?.({ ...snapshot(), bytesTotal, filesTotal });
    reporter.progress(force);
  };
  const ticker = setInterval(tick, PROGRESS_MS);

  try {
    const known = new Set<string>();
    const ids = await client.blobIds(opts.containerId);
    for (let o = 0; o < ids.length; o += ID_BYTES) known.add(ids.toString('hex', o, o + ID_BYTES));
    // The workers' id set is built with them, on the first changed file.
    const sharedIds = () => {
      const shared = SharedIdSet.create(known.size + filesTotal + Math.ceil(bytesTotal / DEFAULT_CHUNKER.minSize));
      for (let o = 0; o < ids.length; o += ID_BYTES) shared.claim(ids.subarray(o, o + ID_BYTES));
      return shared;
    };
    const upload = async (data: Uint8Array) => {
      await client.putPack(opts.containerId, randomBytes(16).toString('hex'), data);
      uploaded += data.length;
    };
    const cache = await loadCache(opts.agentDir, opts.vaultId, opts.item);
    const nextCache: MetadataCache = { files: {} };
    const manifestEntries: Entry[] = [];
    const unreadable = new Set<Entry>();
    const hardlinks = new Map<string, number>();
    const work: Promise<void>[] = [];
    let files = 0;
    let bytes = 0;
    let reused = 0;
    let batch: { tasks: FileTask[]; reading: Reading[]; bytes: number } = { tasks: [], reading: [], bytes: 0 };

    const finished = (r: Reading, result: FileResult) => {
      warnings.push(...result.problems);
      if (!result.chunks) {
        unreadable.add(r.entry);
        return;
      }
      r.entry.chunks = result.chunks;
      r.entry.size = result.chunks.reduce((n, c) => n + c[1], 0);
      if (result.xattrs) r.entry.xattrs = result.xattrs;
      nextCache.files[r.key] = result.xattrs ? { stat: r.stat.key, chunks: result.chunks, xattrs: result.xattrs } : { stat: r.stat.key, chunks: result.chunks };
      files++;
      bytes += r.entry.size;
    };
    const dispatch = async () => {
      if (batch.tasks.length === 0) return;
      const { tasks, reading, bytes: size } = batch;
      batch = { tasks: [], reading: [], bytes: 0 };
      encoder ??= new FileEncoder(keys, sharedIds(), upload);
      await encoder.ready();
      const task = encoder.read(tasks, size).then((results) => { results.forEach((r, i) => finished(reading[i]!, r)); });
      task.catch(() => { /* raised by Promise.all below, or by the next ready() */ });
      work.push(task);
    };

    /**
     * Attributes of what has no cache entry (folders, links, FIFOs, devices) are read every
     * time: one system call, which finds none on most entries. Files' attributes are read by the
     * workers with their bytes, or reused from the cache while the file's ctime has not moved.
     */
    const attributesOf = (w: WalkEntry): Xattr[] | undefined => {
      const read = readXattrs(w.abs);
      if (read.problem) warn({ code: 'XattrUnreadable', message: `${w.display}: ${read.problem}`, path: w.display });
      return read.xattrs;
    };

    for (const w of entries) {
      const s = w.stat;
      if (s.kind === 'dir') {
        manifestEntries.push({ type: 'dir', ...baseEntry(w, attributesOf(w)) });
      } else if (s.kind === 'fifo') {
        manifestEntries.push({ type: 'fifo', ...baseEntry(w, attributesOf(w)) });
      } else if (s.kind === 'chardev' || s.kind === 'blockdev') {
        manifestEntries.push({ type: s.kind, ...baseEntry(w, attributesOf(w)), rdev: s.rdev! });
      } else if (s.kind === 'symlink') {
        let target: Buffer;
        try {
          target = await readlink(w.abs as unknown as string, { encoding: 'buffer' });
        } catch (e) {
          warn({ code: 'Unreadable', message: `cannot read link ${w.display}: ${(e as Error).message}`, path: w.display });
          continue;
        }
        manifestEntries.push({ type: 'symlink', ...baseEntry(w, attributesOf(w)), target: encodeName(target) });
      } else {
        filesScanned++;
        const first = s.nlink > 1 ? hardlinks.get(s.inode) : undefined;
        if (first !== undefined) {
          manifestEntries.push({ type: 'hardlink', ...baseEntry(w), link: first });
          continue;
        }
        if (s.nlink > 1) hardlinks.set(s.inode, manifestEntries.length);
        const key = w.path.join('/');
        const cached = cache.files[key];
        if (cached && cached.stat === s.key && cached.chunks.every(([id]) => id === null || known.has(id))) {
          const size = s.size;
          cachedBytes += size;
          nextCache.files[key] = cached;
          reused++;
          manifestEntries.push({ type: 'file', ...baseEntry(w, cached.xattrs), size, chunks: cached.chunks });
          files++;
          bytes += size;
        } else {
          filesChanged++;
          const entry: FileEntry = { type: 'file', ...baseEntry(w), size: 0, chunks: [] };
          manifestEntries.push(entry);
          batch.tasks.push({ path: w.abs.toString('latin1'), display: w.display, size: String(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs });
          batch.reading.push({ entry, key, stat: s });
          batch.bytes += s.size;
          if (s.size >= SMALL_FILE || batch.bytes >= BATCH_BYTES || batch.tasks.length >= BATCH_FILES) await dispatch();
        }
      }
    }
    await dispatch();
    await Promise.all(work);
    if (encoder) await (encoder as FileEncoder).finish();
    if (opts.read) warnings.push(...await opts.read.beforeCommit());

    const kept = withoutUnreadable(manifestEntries, unreadable);
    // Names of the owners beside their numbers, for restores on machines where ids differ.
    const owners = ownerNames(new OwnerDirectory(), new Set(kept.map((e) => e.uid)), new Set(kept.map((e) => e.gid)));
    const manifest: Manifest = { version: MANIFEST_VERSION, item: opts.item, time: new Date().toISOString(), entries: kept, owners };
    const refs = referencedChunks(manifest);
    const refsBuf = Buffer.allocUnsafe(refs.length * ID_BYTES);
    refs.forEach((id, i) => refsBuf.write(id, i * ID_BYTES, 'hex'));
    await client.putPointObject(start.pointId, jobId, 'manifest', sealManifest(keys, start.pointId, manifest));
    await client.putPointObject(start.pointId, jobId, 'refs', refsBuf);
    await reporter.drain();
    const final = snapshot();
    const consistency: Consistency = opts.read?.consistency ?? 'crash';
    const kind = opts.kind ?? 'OnDemand';
    const retainUntil = opts.retainUntil ?? defaultRetainUntil(kind, new Date());
    const point = await client.commit(start.pointId, {
      jobId, files, bytes, kind, consistency, retainUntil, counters: final, warnings, ...(opts.read ? { details: opts.read.details } : {}),
    });
    // The cache is rewritten only when it changed: an unchanged tree reuses every entry of it.
    if (reused !== Object.keys(cache.files).length || reused !== Object.keys(nextCache.files).length) {
      await saveCache(opts.agentDir, opts.vaultId, opts.item, nextCache);
    }
    tick(true);
    return { point, jobId, counters: final, warnings };
  } catch (e) {
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    clearInterval(ticker);
    await (encoder as FileEncoder | null)?.close();
  }
}

/**
 * Drops the files that could not be read (their problem is reported) and renumbers hard links;
 * a hard link to an unreadable file is dropped with it.
 */
function withoutUnreadable(entries: Entry[], unreadable: Set<Entry>): Entry[] {
  if (unreadable.size === 0) return entries;
  const renumbered = new Map<number, number>();
  const out: Entry[] = [];
  entries.forEach((e, i) => {
    if (unreadable.has(e)) return;
    if (e.type === 'hardlink') {
      const link = renumbered.get(e.link);
      if (link === undefined) return;
      out.push({ ...e, link });
      return;
    }
    renumbered.set(i, out.length);
    out.push(e);
  });
  return out;
}
