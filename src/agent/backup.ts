/**
 * The file/folder backup engine: walk, skip unchanged files by the metadata cache, cut changed
 * files into content-defined chunks, send only the chunks the vault lacks (packed, compressed,
 * encrypted), then the manifest, then commit the point.
 */
import { open, readlink } from 'node:fs/promises';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { resolve } from 'node:path';
import type { Consistency, JobCounters, JobProblem, PointInfo, PointKind } from '../core/api.js';
import { chunkId, ID_BYTES, type KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { Chunker } from '../core/fastcdc.js';
import { encodeName, referencedChunks, type ChunkRef, type Entry, type Manifest, sealManifest } from '../core/manifest.js';
import { loadCache, saveCache, statKey, type MetadataCache } from './cache.js';
import type { VaultClient } from './client.js';
import { walk, type WalkEntry } from './walk.js';
import { EncodePool } from './encode-pool.js';
import { PackUploader } from './pack-uploader.js';
import { JobReporter, defaultRetainUntil } from './job-report.js';

/** Files below this size are read in one synchronous call. */
const SMALL_FILE = 1024n * 1024n;
const SEAL_BATCH_BYTES = 1024 * 1024;
const SEAL_BATCH_COUNT = 256;
const SEALS_IN_FLIGHT = 4;

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
}

export interface BackupResult { point: PointInfo; jobId: string; counters: JobCounters; warnings: JobProblem[] }

/** Batches new chunks for the encoding workers and hands sealed blobs to the uploader. */
class ChunkSealer {
  private ids: Buffer[] = [];
  private data: Uint8Array[] = [];
  private bytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown = null;

  constructor(private readonly pool: () => EncodePool, private readonly uploader: PackUploader) {}

  async add(id: Buffer, chunk: Uint8Array): Promise<void> {
    // The read buffer is reused: keep a copy until the batch is posted (which copies again).
    this.ids.push(id);
    this.data.push(Uint8Array.prototype.slice.call(chunk));
    this.bytes += chunk.length;
    if (this.bytes >= SEAL_BATCH_BYTES || this.ids.length >= SEAL_BATCH_COUNT) await this.post();
  }

  private async post(): Promise<void> {
    if (this.ids.length === 0) return;
    const ids = this.ids;
    const data = this.data;
    this.ids = [];
    this.data = [];
    this.bytes = 0;
    while (this.inflight.size >= SEALS_IN_FLIGHT) await Promise.race(this.inflight);
    await this.uploader.room();
    if (this.failure) throw this.failure;
    const task = this.pool().encode(ids, data)
      .then((sealed) => { sealed.forEach((s, i) => this.uploader.add(ids[i]!, s.stored, s.checksum)); }, (e: unknown) => { this.failure ??= e; })
      .finally(() => { this.inflight.delete(task); });
    this.inflight.add(task);
  }

  async finish(): Promise<void> {
    await this.post();
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }
}

const mtimeNs = (s: BigIntStats) => s.mtimeNs.toString();

function baseEntry(w: WalkEntry) {
  return { path: w.path, mode: Number(w.stat.mode & 0o7777n), uid: Number(w.stat.uid), gid: Number(w.stat.gid), mtime: mtimeNs(w.stat) };
}

export async function backup(opts: BackupOptions): Promise<BackupResult> {
  const { client, keys } = opts;
  const warnings: JobProblem[] = [];
  const warn = (p: JobProblem) => { warnings.push(p); };
  const entries = await walk(opts.paths, opts.excludes ?? [], warn);
  const bytesTotal = entries.reduce((n, e) => n + (e.stat.isFile() ? Number(e.stat.size) : 0), 0);
  const filesTotal = entries.filter((e) => e.stat.isFile()).length;

  const start = await client.startBackup(opts.item, 'files', { paths: opts.paths.map((p) => resolve(p)), excludes: opts.excludes ?? [] });
  const jobId = start.job.id;
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const uploader = new PackUploader(client, opts.containerId);
  // Workers start on the first new chunk: an unchanged re-backup never pays for them.
  let pool: EncodePool | null = null;
  const sealer = new ChunkSealer(() => (pool ??= new EncodePool(keys)), uploader);
  const snapshot = () => ({ ...counters, bytesUploaded: uploader.uploaded });
  const reporter = new JobReporter(client, jobId, snapshot);
  const tick = (force = false) => {
    opts.onProgress?.({ ...snapshot(), bytesTotal, filesTotal });
    reporter.progress(force);
  };

  try {
    const known = new Set<string>();
    const ids = await client.blobIds(opts.containerId);
    for (let o = 0; o < ids.length; o += ID_BYTES) known.add(ids.toString('hex', o, o + ID_BYTES));
    const cache = await loadCache(opts.agentDir, opts.vaultId, opts.item);
    const nextCache: MetadataCache = { files: {} };
    const chunker = new Chunker(keys.chunkerSeed);
    const buffer = Buffer.allocUnsafe(chunker.params.maxSize * 2);
    const zero = Buffer.alloc(chunker.params.maxSize);
    const manifestEntries: Entry[] = [];
    const hardlinks = new Map<string, number>();
    let files = 0;
    let bytes = 0;

    const storeChunk = async (data: Buffer): Promise<ChunkRef> => {
      if (data.equals(zero.subarray(0, data.length))) return [null, data.length];
      const id = chunkId(keys.idKey, data);
      const hex = id.toString('hex');
      if (!known.has(hex)) {
        known.add(hex);
        counters.bytesNew += data.length;
        await sealer.add(id, data);
      }
      return [hex, data.length];
    };

    const changedWhileRead = (w: WalkEntry, after: BigIntStats) => {
      if (after.mtimeNs !== w.stat.mtimeNs || after.size !== w.stat.size || after.ctimeNs !== w.stat.ctimeNs) {
        warn({ code: 'FileChanged', message: `${w.display} changed while it was read; the point holds the bytes read, back it up again for a consistent copy`, path: w.display });
      }
    };

    /** Small files are read with synchronous calls: four thread-pool round trips cost more than the read. */
    const readSmallFile = async (w: WalkEntry): Promise<ChunkRef[] | null> => {
      let fd: number;
      let length = 0;
      try {
        fd = openSync(w.abs as unknown as string, 'r');
      } catch (e) {
        warn({ code: 'Unreadable', message: `cannot read ${w.display}: ${(e as Error).message}`, path: w.display });
        return null;
      }
      try {
        for (;;) {
          const n = readSync(fd, buffer, length, buffer.length - length, null);
          if (n === 0 || length + n >= buffer.length) { length += n; break; }
          length += n;
        }
        changedWhileRead(w, fstatSync(fd, { bigint: true }));
      } catch (e) {
        warn({ code: 'Unreadable', message: `error reading ${w.display}: ${(e as Error).message}`, path: w.display });
        return null;
      } finally {
        closeSync(fd);
      }
      if (length >= buffer.length) return readFile(w); // it grew past the small-file size meanwhile
      counters.bytesScanned += length;
      const chunks: ChunkRef[] = [];
      for (let start = 0; start < length;) {
        const len = chunker.cut(buffer, start, length, true);
        chunks.push(await storeChunk(buffer.subarray(start, start + len)));
        start += len;
      }
      tick();
      return chunks;
    };

    const readFile = async (w: WalkEntry): Promise<ChunkRef[] | null> => {
      let fh;
      try {
        fh = await open(w.abs as unknown as string, 'r');
      } catch (e) {
        warn({ code: 'Unreadable', message: `cannot read ${w.display}: ${(e as Error).message}`, path: w.display });
        return null;
      }
      const chunks: ChunkRef[] = [];
      try {
        let filled = 0;
        let eof = false;
        while (!eof || filled > 0) {
          if (!eof) {
            const { bytesRead } = await fh.read(buffer, filled, buffer.length - filled, null);
            if (bytesRead === 0) eof = true;
            filled += bytesRead;
            counters.bytesScanned += bytesRead;
          }
          let start = 0;
          for (;;) {
            const len = chunker.cut(buffer, start, filled, eof);
            if (len <= 0) break;
            chunks.push(await storeChunk(buffer.subarray(start, start + len)));
            start += len;
          }
          buffer.copy(buffer, 0, start, filled);
          filled -= start;
          tick();
        }
        changedWhileRead(w, await fh.stat({ bigint: true }));
      } catch (e) {
        warn({ code: 'Unreadable', message: `error reading ${w.display}: ${(e as Error).message}`, path: w.display });
        return null;
      } finally {
        await fh.close();
      }
      return chunks;
    };

    for (const w of entries) {
      const s = w.stat;
      if (s.isDirectory()) {
        manifestEntries.push({ type: 'dir', ...baseEntry(w) });
      } else if (s.isSymbolicLink()) {
        let target: Buffer;
        try {
          target = await readlink(w.abs as unknown as string, { encoding: 'buffer' });
        } catch (e) {
          warn({ code: 'Unreadable', message: `cannot read link ${w.display}: ${(e as Error).message}`, path: w.display });
          continue;
        }
        manifestEntries.push({ type: 'symlink', ...baseEntry(w), target: encodeName(target) });
      } else {
        counters.filesScanned++;
        const inode = `${s.dev}:${s.ino}`;
        const first = s.nlink > 1n ? hardlinks.get(inode) : undefined;
        if (first !== undefined) {
          manifestEntries.push({ type: 'hardlink', ...baseEntry(w), link: first });
          continue;
        }
        const key = w.path.join('/');
        const cached = cache.files[key];
        let chunks: ChunkRef[] | null;
        if (cached && cached.stat === statKey(s) && cached.chunks.every(([id]) => id === null || known.has(id))) {
          chunks = cached.chunks;
          counters.bytesScanned += Number(s.size);
        } else {
          counters.filesChanged++;
          chunks = await (s.size < SMALL_FILE ? readSmallFile(w) : readFile(w));
          if (!chunks) continue;
        }
        const size = chunks.reduce((n, c) => n + c[1], 0);
        if (s.nlink > 1n) hardlinks.set(inode, manifestEntries.length);
        nextCache.files[key] = { stat: statKey(s), chunks };
        manifestEntries.push({ type: 'file', ...baseEntry(w), size, chunks });
        files++;
        bytes += size;
      }
      tick();
    }
    await sealer.finish();
    await uploader.finish();

    const manifest: Manifest = { version: 1, item: opts.item, time: new Date().toISOString(), entries: manifestEntries };
    const refs = referencedChunks(manifest);
    const refsBuf = Buffer.allocUnsafe(refs.length * ID_BYTES);
    refs.forEach((id, i) => refsBuf.write(id, i * ID_BYTES, 'hex'));
    await client.putPointObject(start.pointId, jobId, 'manifest', sealManifest(keys, start.pointId, manifest));
    await client.putPointObject(start.pointId, jobId, 'refs', refsBuf);
    await reporter.drain();
    const final = snapshot();
    const consistency: Consistency = 'crash';
    const kind = opts.kind ?? 'OnDemand';
    const retainUntil = opts.retainUntil ?? defaultRetainUntil(kind, new Date());
    const point = await client.commit(start.pointId, {
      jobId, files, bytes, kind, consistency, retainUntil, counters: final, warnings,
    });
    await saveCache(opts.agentDir, opts.vaultId, opts.item, nextCache);
    tick(true);
    return { point, jobId, counters: final, warnings };
  } catch (e) {
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    await (pool as EncodePool | null)?.close();
  }
}
