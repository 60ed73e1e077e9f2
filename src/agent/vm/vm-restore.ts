/**
 * The VM restore engine: writes each disk of a point as a raw image (sparse: blocks of zeros
 * stay holes), a fixed VHD or a qcow2 image (image-writer.ts), into a folder — never over a
 * live disk unless `replace`.
 *
 * Blocks come from the instant-restore snapshot while this machine holds it (a clone file, or
 * an internal snapshot of a qcow2 image read through qemu-nbd; no network; each block is
 * hashed and compared with the point's manifest first), and from the vault otherwise or for
 * any block the snapshot no longer matches. The job says which: `source: snapshot`, `vault`,
 * or `snapshot+vault`. Every vault block is authenticated and its hash checked.
 */
import { mkdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobCounters, JobInfo, JobProblem, PointInfo } from '../../core/api.js';
import { BlobDecoder, maxStoredLength } from '../../core/blob.js';
import { chunkId, type KeySet } from '../../core/crypto.js';
import { DEFAULT_RANGE_LIMITS, planRanges, type PackRange } from '../pack-ranges.js';
import { defaultWorkers } from './block-encoder.js';
import { BlockDecoder, type DecodeResult, type Lane } from './block-decoder.js';
import { fetchRanges } from '../range-fetch.js';
import { JobReporter } from '../job-report.js';
import { CoffreError } from '../../core/errors.js';
import { openManifest } from '../../core/manifest.js';
import type { ReadOptions, VaultClient } from '../client.js';
import { isZeroBlock } from './block-reader.js';
import { blockCount, blockIdAt, isZeroId, openVmManifest, type VmDisk, type VmManifest } from './disk-manifest.js';
import { deviceWriter, fileWriter, qcow2Writer, type ImageWriter, type RestoreFormat } from './image-writer.js';
import { snapshotBlocks } from './snapshot-read.js';
import { findSnapshot, type HeldSnapshot } from './snapshot-store.js';

export type { RestoreFormat } from './image-writer.js';
export type BlockSource = 'snapshot' | 'vault' | 'snapshot+vault';

export interface VmRestoreOptions {
  client: VaultClient;
  keys: KeySet;
  agentDir: string;
  pointId: string;
  /** Folder to write the disks into; without it, the disks' original paths (needs `replace`). */
  target?: string;
  /** Default: each disk as it was (a VHD as VHD, a qcow2 as qcow2, an image or device as raw). */
  format?: RestoreFormat;
  /** Disk indexes to restore (default: all). */
  disks?: number[];
  replace?: boolean;
  /** `auto` (default): the snapshot while it exists, else the vault. */
  source?: 'auto' | 'snapshot' | 'vault';
  /** `secondary`: a cross-region restore, reading only the vault's copy in the paired region. */
  from?: 'secondary';
  /** Added to the restore job's details. */
  jobDetails?: Record<string, unknown>;
  /** Work under this running job instead of a new one, and leave it to the caller to finish (file recovery). */
  useJob?: string;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
  /** Worker threads opening vault blocks (default: one per core from 32 MiB of blocks to fetch, else none: the main thread). */
  workers?: number;
}

export interface RestoredDisk {
  index: number;
  name: string;
  file: string;
  format: RestoreFormat;
  size: number;
  source: BlockSource;
  blocksFromSnapshot: number;
  blocksFromVault: number;
}

export interface VmRestoreResult { job: JobInfo | null; point: PointInfo; source: BlockSource; disks: RestoredDisk[]; errors: JobProblem[]; warnings: JobProblem[] }

const FETCHES_IN_FLIGHT = 4;
/**
 * With worker threads opening blocks, two ranges in flight per worker keep them and the vault
 * busy at once (one being opened, one arriving), up to 8. Each range holds a lane of about
 * 16 MiB (fetched and opened bytes): lanes beyond that only cost memory, and fresh memory is
 * not free (measured on a 2-core VM: 8 lanes instead of 4 made a restore 0.4 s slower).
 */
const fetchesWithWorkers = (workers: number) => Math.min(8, Math.max(FETCHES_IN_FLIGHT, 2 * workers));
/** From this many bytes of blocks to fetch, worker threads open them (below, starting them costs more). */
const DECODE_WORKERS_FROM = 32 * 1024 * 1024;
const LOCATE_BATCH = 50_000;

/** A point's VM manifest, with a clear error for a point that is a file backup. */
export async function loadVmPoint(client: VaultClient, keys: KeySet, pointId: string, read: ReadOptions = {}): Promise<{ point: PointInfo & { containerId: string }; manifest: VmManifest }> {
  const point = await client.getPoint(pointId, read);
  const stored = await client.manifest(point.id, read);
  const manifest = openVmManifest(keys, point.id, stored);
  if (manifest) return { point, manifest };
  let isFiles = false;
  try {
    openManifest(keys, point.id, stored);
    isFiles = true;
  } catch {
    // Not a file manifest either: damaged, or sealed with other keys; reported below.
  }
  if (isFiles) throw new CoffreError('InvalidArgument', `point ${point.id} of ${point.item} is a file backup, not a VM; restore it with \`coffre restore ${point.id}\``);
  throw new CoffreError('ChecksumMismatch', `the manifest of point ${point.id} is damaged or was not written with this machine's keys`);
}

export function selectDisks(manifest: VmManifest, wanted?: number[]): VmDisk[] {
  if (!wanted?.length) return manifest.disks;
  return [...new Set(wanted)].sort((a, b) => a - b).map((i) => {
    const d = manifest.disks[i];
    if (!d) throw new CoffreError('InvalidArgument', `point has no disk ${i}: its disks are 0 to ${manifest.disks.length - 1}`);
    return d;
  });
}

interface Output {
  disk: VmDisk;
  format: RestoreFormat;
  dest: string;
  /** Where bytes go while restoring: a temporary name beside `dest`, or the device itself. */
  work: string;
  device: boolean;
  writer: ImageWriter | null;
  snapshotUsed: boolean;
  fromSnapshot: number;
  fromVault: number;
  failed: JobProblem | null;
}

async function pathKind(p: string): Promise<'none' | 'file' | 'device' | 'other'> {
  try {
    const s = await stat(p);
    return s.isFile() ? 'file' : s.isBlockDevice() ? 'device' : 'other';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw e;
  }
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    return (await realpath(a)) === (await realpath(b));
  } catch {
    // One of them does not exist: they are not the same file.
    return false;
  }
}

/**
 * The kept snapshot of a point, with only the disks whose copy is still there: a clone file
 * as it was when the point was committed (same size and time; one changed since is not used
 * at all), or an internal snapshot the image still holds.
 */
export async function usableSnapshot(agentDir: string, manifest: VmManifest, pointId: string): Promise<HeldSnapshot | null> {
  const snap = await findSnapshot(agentDir, manifest.item, pointId);
  if (!snap) return null;
  const disks = [];
  for (const d of snap.disks) {
    if (d.internal) {
      const { hasInternalSnapshot } = await import('./internal-snapshots.js');
      if (await hasInternalSnapshot(d.internal)) disks.push(d);
      continue;
    }
    try {
      const s = await stat(join(snap.dir, d.file));
      // Within a millisecond: times pass through floating-point seconds on their way to and from the file system.
      if (s.size === d.fileSize && Math.abs(s.mtimeMs - d.mtimeMs) < 1) disks.push(d);
    } catch {
      // This disk's file is gone from the snapshot: that disk comes from the vault.
    }
  }
  return disks.length ? { ...snap, disks } : null;
}

export async function restoreVm(opts: VmRestoreOptions): Promise<VmRestoreResult> {
  const { client, keys } = opts;
  if (opts.from === 'secondary' && opts.source === 'snapshot') throw new CoffreError('InvalidArgument', '--from secondary reads the vault\'s copy in the paired region, not the local snapshot: leave out --source snapshot');
  const read = opts.from ? { from: opts.from } : {};
  const { point, manifest } = await loadVmPoint(client, keys, opts.pointId, read);
  const disks = selectDisks(manifest, opts.disks);
  // A cross-region restore reads the paired region only: the local snapshot is not used.
  const requested = opts.from === 'secondary' ? 'vault' : opts.source ?? 'auto';
  const snapshot = requested === 'vault' ? null : await usableSnapshot(opts.agentDir, manifest, point.id);
  const missing = disks.filter((d) => !snapshot?.disks.some((x) => x.index === d.index));
  if (requested === 'snapshot' && missing.length) {
    throw new CoffreError('NotFound', `this machine holds no usable instant-restore snapshot of ${snapshot ? `disk ${missing.map((d) => d.index).join(', ')} of ` : ''}point ${point.id} (expired, changed, or taken on another machine); restore from the vault with --source vault`);
  }

  // Where each disk goes, refused before anything is written.
  const outputs: Output[] = [];
  const target = opts.target ? await mkdir(opts.target, { recursive: true }).then(() => realpath(opts.target!)) : null;
  for (const d of disks) {
    const format: RestoreFormat = opts.format ?? (d.format === 'vhd' ? 'vhd' : d.format === 'qcow2' ? 'qcow2' : 'raw');
    const dest = target ? join(target, `${d.name}.${format === 'raw' ? 'img' : format}`) : d.path;
    const kind = await pathKind(dest);
    const live = manifest.disks.some((x) => x.path === dest) || (await Promise.all(manifest.disks.map((x) => sameFile(x.path, dest)))).some(Boolean);
    if (!opts.replace) {
      if (live) throw new CoffreError('InvalidArgument', `${dest} is a live disk of ${manifest.item}; restore elsewhere with --target DIR, or overwrite it with --replace (stop the VM first)`);
      if (kind !== 'none') throw new CoffreError('InvalidArgument', `${dest} already exists; choose another --target or pass --replace`);
    }
    if (kind === 'other') throw new CoffreError('InvalidArgument', `${dest} exists and is neither a file nor a block device`);
    const device = kind === 'device';
    if (device && format !== 'raw') throw new CoffreError('InvalidArgument', `${dest} is a block device: restore it as raw (--format raw)`);
    outputs.push({ disk: d, format, dest, work: device ? dest : '', device, writer: null, snapshotUsed: false, fromSnapshot: 0, fromVault: 0, failed: null });
  }

  const job = opts.useJob ? { id: opts.useJob } : await client.startRestore(point.id, {
    kind: 'vm', target: target ?? 'original disks', format: opts.format ?? 'as backed up', disks: disks.map((d) => d.index), source: requested, ...read, ...opts.jobDetails,
  });
  for (const o of outputs) if (!o.device) o.work = `${o.dest}.coffre-part-${job.id}`;
  const errors: JobProblem[] = [];
  const warnings: JobProblem[] = [];
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  const bytesTotal = disks.reduce((n, d) => n + d.size, 0);
  const reporter = new JobReporter(client, job.id, () => counters);
  const tick = () => {
    opts.onProgress?.({ ...counters, bytesTotal, filesTotal: disks.length });
    reporter.progress();
  };

  try {
    for (const o of outputs) {
      // A new file is created exclusively and never through a symlink; a device is written in place.
      if (o.device) o.writer = await deviceWriter(o.work);
      else if (o.format === 'qcow2') o.writer = await qcow2Writer(o.work, o.disk.size);
      else o.writer = await fileWriter(o.work, o.disk.size, o.format === 'vhd' ? { footer: o.disk.vhdFooter ? Buffer.from(o.disk.vhdFooter, 'base64') : null } : null);
    }
    /** Blocks still to fetch from the vault: id → where it goes. */
    const needed = new Map<string, { out: Output; offset: number }[]>();
    const need = (o: Output, i: number) => {
      const hex = blockIdAt(o.disk, i).toString('hex');
      let t = needed.get(hex);
      if (!t) needed.set(hex, (t = []));
      t.push({ out: o, offset: i * o.disk.blockSize });
    };

    await Promise.all(outputs.map(async (o) => {
      const d = o.disk;
      const snapDisk = snapshot?.disks.find((x) => x.index === d.index && x.dataSize === d.size);
      const n = blockCount(d.size, d.blockSize);
      const fromSnapshot = new Uint8Array(n);
      if (snapDisk) {
        o.snapshotUsed = true;
        for await (const b of snapshotBlocks(snapshot!, snapDisk, d)) {
          const expected = blockIdAt(d, b.index);
          const ok = isZeroId(expected) ? b.zero || isZeroBlock(b.data) : !b.zero && chunkId(keys.idKey, b.data).equals(expected);
          if (!ok) continue;
          fromSnapshot[b.index] = 1;
          if (isZeroId(expected)) await o.writer!.zero(b.offset, b.length);
          else await o.writer!.write(b.data, b.offset);
          o.fromSnapshot++;
          counters.bytesScanned += b.length;
          tick();
        }
      }
      for (let i = 0; i < n; i++) {
        if (fromSnapshot[i]) continue;
        if (isZeroId(blockIdAt(d, i))) {
          // A new image reads zeros where nothing is written; a device must get the zeros.
          const len = Math.min(d.blockSize, d.size - i * d.blockSize);
          await o.writer!.zero(i * d.blockSize, len);
          counters.bytesScanned += len;
          continue;
        }
        need(o, i);
      }
    }));
    if (snapshot && needed.size) {
      const n = [...needed.values()].reduce((k, t) => k + t.length, 0);
      warnings.push({ code: 'SnapshotChanged', message: `${n} block(s) of the instant-restore snapshot no longer match point ${point.id}; they were read from the vault` });
    }

    // Vault blocks: located, then read in ranges of packs, a few at a time.
    const ids = [...needed.keys()];
    const locations = [];
    for (let i = 0; i < ids.length; i += LOCATE_BATCH) locations.push(...await client.locate(point.containerId, ids.slice(i, i + LOCATE_BATCH)));
    const found = new Set(locations.map((l) => l.id));
    const fail = (o: Output, message: string) => { o.failed ??= { code: 'ChecksumMismatch', message, path: o.dest }; };
    for (const id of ids) if (!found.has(id)) for (const t of needed.get(id)!) fail(t.out, `disk ${t.out.disk.index} (${t.out.disk.name}) was not restored: block ${id.slice(0, 16)} is missing from the vault`);
    const ranges = planRanges(locations, (id) => needed.get(id)![0]!.out.disk.blockSize);
    const maxBlock = Math.max(...disks.map((d) => d.blockSize));
    const neededBytes = [...needed.values()].reduce((n, t) => n + t.length, 0) * maxBlock;
    // Blocks are opened by worker threads when there are enough of them to pay for starting
    // the workers, else on the main thread. Either way each range in flight has its own buffers.
    const fetchBytes = Math.max(DEFAULT_RANGE_LIMITS.maxStored, maxStoredLength(maxBlock) + DEFAULT_RANGE_LIMITS.gap);
    const plainBytes = Math.max(1, Math.floor(DEFAULT_RANGE_LIMITS.maxPlain / maxBlock)) * maxBlock;
    const workers = opts.workers ?? (neededBytes >= DECODE_WORKERS_FROM ? defaultWorkers() : 0);
    const pool = workers > 0 && ids.length ? new BlockDecoder(keys, fetchesWithWorkers(workers), fetchBytes, plainBytes, workers) : null;
    const inFlight = pool ? fetchesWithWorkers(workers) : FETCHES_IN_FLIGHT;
    const lanes: Lane[] = pool ? [...pool.all] : Array.from({ length: inFlight }, (_, index) => ({ index, fetch: Buffer.allocUnsafe(fetchBytes), plain: Buffer.allocUnsafe(plainBytes) }));
    const decoder = new BlobDecoder(keys);
    const laneOf = new Map<object, Lane>();
    const release = (r: object) => {
      const lane = laneOf.get(r);
      laneOf.delete(r);
      if (lane) lanes.push(lane);
    };
    const openHere = (lane: Lane, r: PackRange): DecodeResult[] => r.blobs.map((b, i) => {
      const plainAt = i * maxBlock;
      try {
        const out = decoder.decode(Buffer.from(b.id, 'hex'), lane.fetch.subarray(b.offset - r.offset, b.offset - r.offset + b.length), lane.plain.subarray(plainAt, plainAt + maxBlock));
        if (out.byteOffset !== lane.plain.byteOffset + plainAt) lane.plain.set(out, plainAt);
        return { plainAt, length: out.length };
      } catch (err) {
        if (!(err instanceof CoffreError)) throw err;
        return { error: err.message };
      }
    });
    try {
      await fetchRanges({
        client, containerId: point.containerId, ranges, inFlight, read: { ...read, job: job.id },
        // A range is fetched straight into a free lane (one per range in flight).
        bufferFor: (r) => {
          const lane = lanes.pop()!;
          laneOf.set(r, lane);
          return r.length <= lane.fetch.length ? lane.fetch : Buffer.allocUnsafe(r.length);
        },
        // A pack missing or short is damage, like a bad block: the disks needing it fail, the others go on.
        onDamage: (r, err) => {
          release(r);
          for (const b of r.blobs) for (const t of needed.get(b.id)!) fail(t.out, `disk ${t.out.disk.index} (${t.out.disk.name}) was not restored: ${err.message}`);
        },
        onRange: async (r, data) => {
          const lane = laneOf.get(r)!;
          try {
            counters.bytesUploaded += data.length;
            if (data.buffer !== lane.fetch.buffer || data.byteOffset !== lane.fetch.byteOffset) {
              if (data.length > lane.fetch.length) throw new CoffreError('Internal', `a range of ${data.length} bytes is larger than its buffer (${lane.fetch.length})`);
              data.copy(lane.fetch);
            }
            const results = pool ? await pool.decode(lane, r.blobs.map((b) => ({ id: b.id, at: b.offset - r.offset, length: b.length })), maxBlock) : openHere(lane, r);
            const writes: Promise<void>[] = [];
            r.blobs.forEach((b, i) => {
              const res = results[i]!;
              if ('error' in res) {
                for (const t of needed.get(b.id)!) fail(t.out, `disk ${t.out.disk.index} (${t.out.disk.name}) was not restored: ${res.error}`);
                return;
              }
              const plain = lane.plain.subarray(res.plainAt, res.plainAt + res.length);
              for (const t of needed.get(b.id)!) {
                if (t.out.failed) continue;
                // The writes of a range go out together; the lane is free again once all are done.
                writes.push(t.out.writer!.write(plain, t.offset).then(() => {
                  t.out.fromVault++;
                  counters.bytesScanned += plain.length;
                }));
              }
            });
            const outcomes = await Promise.allSettled(writes);
            const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
            if (failed) throw failed.reason;
          } finally {
            release(r);
          }
          tick();
        },
      });
    } finally {
      await pool?.close();
    }

    // Finish each disk: its size (holes stay holes), a VHD footer, durable, then its final name.
    const restored: RestoredDisk[] = [];
    for (const o of outputs) {
      const writer = o.writer!;
      o.writer = null;
      if (o.failed) {
        await writer.abort();
        if (!o.device) await rm(o.work, { force: true });
        errors.push(o.failed);
        continue;
      }
      // The image is on disk before it takes the final name (or the device is reported restored).
      await writer.finish();
      if (!o.device) await rename(o.work, o.dest);
      counters.filesScanned++;
      counters.filesChanged++;
      restored.push({
        index: o.disk.index, name: o.disk.name, file: o.dest, format: o.format, size: o.disk.size,
        source: !o.snapshotUsed || o.fromSnapshot === 0 ? 'vault' : o.fromVault === 0 ? 'snapshot' : 'snapshot+vault', blocksFromSnapshot: o.fromSnapshot, blocksFromVault: o.fromVault,
      });
    }
    const source: BlockSource = restored.length && restored.every((r) => r.source === 'snapshot') ? 'snapshot'
      : restored.every((r) => r.source === 'vault') ? 'vault' : 'snapshot+vault';
    tick();
    await reporter.drain();
    const status = errors.length ? 'Failed' : warnings.length ? 'CompletedWithWarnings' : 'Completed';
    const done = opts.useJob ? null : await client.finishJob(job.id, {
      status, counters, errors, warnings,
      details: { source, disks: restored.map((r) => ({ index: r.index, file: r.file, format: r.format, size: r.size, source: r.source, blocksFromSnapshot: r.blocksFromSnapshot, blocksFromVault: r.blocksFromVault })) },
    });
    return { job: done, point, source, disks: restored, errors, warnings };
  } catch (e) {
    for (const o of outputs) {
      await o.writer?.abort().catch(() => undefined); // closing after a failed write: the file is removed next
      if (!o.device && o.work) await rm(o.work, { force: true });
    }
    if (!opts.useJob) await reporter.fail(e, warnings, errors);
    throw e;
  }
}
