/**
 * The file/folder backup engine: walk folder by folder, skip unchanged files and folders by the
 * local cache, cut changed files into content-defined chunks, send only the chunks and tree
 * pages the vault lacks (packed, compressed, encrypted), then the point's root record, then
 * commit the point. The tree is built and stored as the walk goes (tree-backup.ts), so the
 * agent's memory does not grow with the number of files.
 */
import { statfsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { Consistency, JobCounters, JobProblem, PointInfo, PointKind } from '../core/api.js';
import { ID_BYTES, type KeySet } from '../core/crypto.js';
import { DEFAULT_CHUNKER } from '../core/fastcdc.js';
import { SharedIdSet } from '../core/known-ids.js';
import { sealManifest, type RootManifest } from '../core/manifest.js';
import { pageRefs } from '../core/tree.js';
import type { VaultClient } from './client.js';
import { FileEncoder } from './file-encoder.js';
import { JobReporter, defaultRetainUntil } from './job-report.js';
import { OwnerDirectory, ownerNames } from './owners.js';
import { TreeBackup } from './tree-backup.js';
import { TreeCache } from './tree-cache.js';
import type { PreparedRead } from './snapshot/prepared-read.js';

const PROGRESS_MS = 200;
/** The shared id table is sized for at most this many ids (16 bytes each, half full). */
const MAX_EXPECTED_IDS = 1 << 24;

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

/**
 * How many ids the backup may meet: the vault's, plus what the tree can add. The last backup
 * of the item says how large the tree was; a first backup is bounded by what the file
 * systems of its paths hold. Too small a table costs deduplication within one backup only.
 */
function expectedIds(vaultIds: number, cache: TreeCache, paths: string[]): number {
  const files = Number(cache.meta('files') ?? NaN);
  const bytes = Number(cache.meta('bytes') ?? NaN);
  let more: number;
  if (Number.isFinite(files) && Number.isFinite(bytes)) more = files + bytes / DEFAULT_CHUNKER.minSize;
  else {
    more = 0;
    for (const p of paths) {
      try {
        const s = statfsSync(p, { bigint: false });
        more += (s.files - s.ffree) + ((s.blocks - s.bfree) * s.bsize) / DEFAULT_CHUNKER.minSize;
      } catch {
        // A path that cannot be asked is reported by the walk; its share stays unknown.
      }
    }
  }
  return Math.min(MAX_EXPECTED_IDS, vaultIds + Math.ceil(more) + 1024);
}

export async function backup(opts: BackupOptions): Promise<BackupResult> {
  const { client, keys } = opts;
  const warnings: JobProblem[] = [...(opts.read?.warnings ?? [])];
  const warn = (p: JobProblem) => { warnings.push(p); };
  const excludes = opts.excludes ?? [];
  const start = await client.startBackup(opts.item, 'files', { paths: opts.paths.map((p) => resolve(p)), excludes, ...opts.read?.options });
  const jobId = start.job.id;
  const cache = TreeCache.open(opts.agentDir, opts.vaultId, opts.item);
  // The last backup's size is the estimate a progress bar needs before the walk has ended.
  const estimate = { files: Number(cache.meta('files') ?? 0), bytes: Number(cache.meta('bytes') ?? 0) };
  let uploaded = 0;
  let encoder: FileEncoder | null = null;
  let tree: TreeBackup | null = null;
  const snapshot = (): JobCounters => {
    const read = encoder?.counts ?? { bytesRead: 0, bytesNew: 0 };
    const c = tree?.counters ?? { cachedBytes: 0, filesScanned: 0, filesChanged: 0 };
    return { bytesScanned: c.cachedBytes + read.bytesRead, bytesNew: read.bytesNew, bytesUploaded: uploaded, filesScanned: c.filesScanned, filesChanged: c.filesChanged };
  };
  const reporter = new JobReporter(client, jobId, snapshot);
  // Progress goes out on a timer: per entry it cost more than the rest of an unchanged file, and
  // while workers read a large file the main thread has no entries to count.
  const tick = (force = false) => {
    const c = snapshot();
    opts.onProgress?.({ ...c, bytesTotal: Math.max(estimate.bytes, c.bytesScanned), filesTotal: Math.max(estimate.files, c.filesScanned) });
    reporter.progress(force);
  };
  const ticker = setInterval(tick, PROGRESS_MS);

  try {
    const ids = await client.blobIds(opts.containerId);
    const vaultIds = ids.length / ID_BYTES;
    const known = SharedIdSet.create(expectedIds(vaultIds, cache, opts.paths));
    for (let o = 0; o < ids.length; o += ID_BYTES) known.claim(ids.subarray(o, o + ID_BYTES));
    const upload = async (data: Uint8Array) => {
      await client.putPack(opts.containerId, randomBytes(16).toString('hex'), data);
      uploaded += data.length;
    };
    tree = new TreeBackup({
      keys, known, cache, excludes, warn, upload,
      // Workers start on the first changed file: an unchanged re-backup never pays for them.
      encoder: async () => (encoder ??= new FileEncoder(keys, known, upload)),
    });
    const { roots, uids, gids } = await tree.run(opts.read?.roots ?? opts.paths);
    if (encoder) await (encoder as FileEncoder).finish();
    if (opts.read) warnings.push(...await opts.read.beforeCommit());

    const { files, bytes } = tree.counters;
    // Names of the owners beside their numbers, for restores on machines where ids differ.
    const owners = ownerNames(new OwnerDirectory(), uids, gids);
    const manifest: RootManifest = { version: 3, item: opts.item, time: new Date().toISOString(), roots, owners, files, bytes };
    const refs = pageRefs(roots);
    const all = [...refs.trees, ...refs.chunks];
    const refsBuf = Buffer.allocUnsafe(all.length * ID_BYTES);
    all.forEach((id, i) => refsBuf.write(id, i * ID_BYTES, 'hex'));
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
    // Only a committed point's tree may serve as the next backup's cache.
    cache.setMeta('files', String(files));
    cache.setMeta('bytes', String(bytes));
    cache.commit();
    tick(true);
    return { point, jobId, counters: final, warnings };
  } catch (e) {
    cache.abandon();
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    clearInterval(ticker);
    await (encoder as FileEncoder | null)?.close();
  }
}
