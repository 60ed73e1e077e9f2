/**
 * The VM backup engine (SPEC "VM backup flow"):
 *
 *   start job → pre-script / guest freeze → point-in-time view of every disk (disk-session.ts:
 *   clones or internal snapshots of image files, or QEMU's own view of a running VM's disks)
 *   → post-script / thaw → every disk read in parallel, only the blocks that can have changed
 *   (QEMU's dirty bitmap, else every block compared by hash), encoded by worker threads that
 *   send only blocks the vault lacks → sealed VM manifest + reference list → commit (per-disk
 *   counters, change tracking, consistency) → change tracking moves on, and the snapshot is
 *   kept as the instant-restore copy.
 *
 * A failure before the commit leaves no point and no snapshot, and change tracking as it was:
 * the next backup reads every change since the last committed point. Blocks already sent are
 * reused by the next backup.
 */
import { randomBytes } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import type { Consistency, JobCounters, JobProblem, PointInfo, PointKind } from '../../core/api.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { ID_BYTES, type KeySet } from '../../core/crypto.js';
import { CoffreError } from '../../core/errors.js';
import { SharedIdSet } from '../../core/known-ids.js';
import type { VaultClient } from '../client.js';
import { JobReporter, defaultRetainUntil } from '../job-report.js';
import { loadPreviousBlocks, savePreviousBlocks } from './block-cache.js';
import { BlockEncoder, defaultWorkers } from './block-encoder.js';
import { planBlocks, READ } from './block-plan.js';
import { DEFAULT_INSTANT_RESTORE_DAYS, type VmConfig } from './config.js';
import { snapshotConsistently, systemQuiescer, type Quiescer, type StepRecord } from '../consistency.js';
import { sealVmManifest, vmReferences, type VmDisk, type VmManifest } from './disk-manifest.js';
import { emptyDiskCounters, scanDisk, type DiskCounters } from './disk-scan.js';
import type { ChangeTracking, DiskSession, SessionDisk } from './disk-session.js';
import { diskNames, probeDisk } from './disk-source.js';
import { fileDiskSession } from './file-disks.js';
import { defaultSnapshotRoot, keepSnapshot, prepareStaging, type SnapshotMethod } from './snapshot-store.js';
import { loadVmPoint } from './vm-restore.js';

export interface VmBackupOptions {
  client: VaultClient;
  containerId: string;
  keys: KeySet;
  agentDir: string;
  vaultId: string;
  config: VmConfig;
  kind?: PointKind;
  retainUntil?: string | null;
  /** Overrides the protected VM's script timeout for this run. */
  scriptTimeoutSeconds?: number;
  clock?: Clock;
  /** Runs scripts, fsfreeze and the guest agent's freeze; tests substitute their own. */
  quiescer?: Quiescer;
  /** Worker threads encoding blocks (default: none for a few MiB to read, else one per core, at most 16; 0: the main thread). */
  workers?: number;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

/** What a backup reports of each disk: its geometry as in the manifest, its counters, how it was read and snapshotted. */
export interface DiskReport extends DiskCounters, Pick<VmDisk, 'index' | 'name' | 'path' | 'format' | 'size' | 'blockSize'> {
  snapshot: SnapshotMethod | 'none';
  changeTracking: ChangeTracking;
}

export interface VmBackupResult {
  point: PointInfo;
  jobId: string;
  consistency: Consistency;
  counters: JobCounters;
  disks: DiskReport[];
  warnings: JobProblem[];
  steps: StepRecord[];
  /** The instant-restore copy kept, or null if it could not be kept (see warnings). */
  snapshot: { dir: string; expiresAt: string; method: SnapshotMethod } | null;
  /** What the job says besides counters (e.g. a full copy was needed for the snapshot). */
  notes: string[];
}

/**
 * Up to this much to read, blocks are encoded on the main thread: starting a worker per core
 * (each loads the crypto and zstd modules) costs more than encoding a few MiB.
 */
const INLINE_BYTES = 32 * 1024 * 1024;

async function instantRestoreDays(client: VaultClient, policyName: string, warn: (p: JobProblem) => void): Promise<number> {
  try {
    const info = await client.showPolicy(policyName);
    const days = (info.policy as { instantRestoreDays?: unknown } | null)?.instantRestoreDays;
    return typeof days === 'number' && days > 0 ? days : DEFAULT_INSTANT_RESTORE_DAYS;
  } catch (e) {
    warn({ code: 'PolicyUnreadable', message: `cannot read policy ${policyName} (${(e as Error).message}); the snapshot is kept ${DEFAULT_INSTANT_RESTORE_DAYS} days` });
    return DEFAULT_INSTANT_RESTORE_DAYS;
  }
}

/** Freezing the file system the snapshot is written to would block the snapshot forever. */
async function freezeIsSafe(freezePath: string, staging: string): Promise<boolean> {
  try {
    return (await stat(freezePath)).dev !== (await stat(staging)).dev;
  } catch {
    // The freeze path does not exist: fsfreeze will fail and say so in the warnings.
    return true;
  }
}

/** One word for the snapshot of the whole point: the weakest of its disks'. */
function overallMethod(methods: (SnapshotMethod | 'none')[]): SnapshotMethod | 'none' {
  for (const m of ['none', 'copy', 'reflink'] as const) if (methods.includes(m)) return m;
  return 'internal';
}

/**
 * The block table a disk's dirty map is relative to: the local cache when it is of that point,
 * else the point's manifest in the vault. Null when neither has it (the disk is read in full).
 */
async function baseTable(o: VmBackupOptions, d: SessionDisk, cached: { pointId: string | null; tables: (Buffer | null)[] }, manifests: Map<string, Promise<VmManifest | null>>): Promise<Buffer | null> {
  if (!d.since) return null;
  if (cached.pointId === d.since && cached.tables[d.index]) return cached.tables[d.index]!;
  let m = manifests.get(d.since);
  if (!m) {
    m = loadVmPoint(o.client, o.keys, d.since).then((r) => r.manifest, (e: unknown) => {
      // The point is gone (pruned) or unreadable: a full read of this disk is the safe answer.
      if (e instanceof CoffreError) return null;
      throw e;
    });
    manifests.set(d.since, m);
  }
  const disk = (await m)?.disks[d.index];
  return disk && disk.size === d.size && disk.blockSize === o.config.blockSize ? disk.blocks : null;
}

export async function backupVm(opts: VmBackupOptions): Promise<VmBackupResult> {
  const { client, keys, config } = opts;
  const clock = opts.clock ?? systemClock;
  const quiescer = opts.quiescer ?? systemQuiescer;
  const warnings: JobProblem[] = [];
  const warn = (p: JobProblem) => { warnings.push(p); };
  const root = config.snapshotDir ?? defaultSnapshotRoot(opts.agentDir);
  const timeoutSeconds = opts.scriptTimeoutSeconds ?? config.scriptTimeoutSeconds;

  const start = await client.startBackup(config.name, 'vm', {
    disks: config.disks.map((d) => d.path),
    ...(config.qmp ? { qmp: config.qmp } : {}),
    ...(config.preScript ? { preScript: config.preScript } : {}),
    ...(config.postScript ? { postScript: config.postScript } : {}),
    ...(config.freezePath ? { freezePath: config.freezePath } : {}),
    ...(config.guestAgent ? { guestAgent: config.guestAgent } : {}),
  });
  const jobId = start.job.id;
  const pointId = start.pointId;
  const perDisk = config.disks.map(() => emptyDiskCounters());
  const totals = (): JobCounters => ({
    bytesScanned: perDisk.reduce((n, d) => n + d.bytesScanned, 0),
    bytesNew: perDisk.reduce((n, d) => n + d.bytesNew, 0),
    bytesUploaded: perDisk.reduce((n, d) => n + d.bytesUploaded, 0),
    filesScanned: config.disks.length,
    filesChanged: perDisk.filter((d) => d.changedBlocks > 0).length,
  });
  let bytesTotal = 0;
  const reporter = new JobReporter(client, jobId, totals);
  const tick = (force = false) => {
    opts.onProgress?.({ ...totals(), bytesTotal, filesTotal: config.disks.length });
    reporter.progress(force);
  };
  let staging: string | null = null;
  let session: DiskSession | null = null;
  let encoder: BlockEncoder | null = null;
  let keepSnapshots = false;

  try {
    if (start.item.kind !== 'vm') {
      throw new CoffreError('InvalidArgument', `item ${config.name} holds ${start.item.kind} backups, not a VM; protect the VM under another name`);
    }
    const policyName = config.policy && !config.policyAssigned ? config.policy : start.item.policy;
    const days = await instantRestoreDays(client, policyName, warn);
    staging = await prepareStaging(root, config.name, pointId);
    let freezePath = config.freezePath;
    if (freezePath && !(await freezeIsSafe(freezePath, staging))) {
      warn({ code: 'FreezeSkipped', message: `${freezePath} is on the file system the snapshots are written to; freezing it would block the snapshot, so it was not frozen (use --snapshot-dir elsewhere)` });
      freezePath = undefined;
    }
    const live: DiskSession = config.qmp
      ? await (await import('./live-disks.js')).liveDiskSession({ config, agentDir: opts.agentDir, vaultId: opts.vaultId, staging, snapshotRoot: root, pointId })
      : fileDiskSession(await Promise.all(config.disks.map((d) => probeDisk(d.path))), staging, pointId);
    session = live;

    const quiesced = await snapshotConsistently({
      ...(config.preScript ? { preScript: config.preScript } : {}),
      ...(config.postScript ? { postScript: config.postScript } : {}),
      ...(freezePath ? { freezePath } : {}),
      ...(config.guestAgent ? { guestAgent: config.guestAgent } : {}),
      timeoutMs: timeoutSeconds * 1000,
      env: { COFFRE_VM: config.name, COFFRE_POINT: pointId, COFFRE_DISKS: config.disks.map((d) => d.path).join('\n') },
    }, quiescer, () => live.take());
    warnings.push(...quiesced.warnings);
    if (!quiesced.ok) throw quiesced.error;
    const consistency = quiesced.consistency;

    const disks = await live.open();
    const names = diskNames(disks.map((d) => d.path));
    bytesTotal = disks.reduce((n, d) => n + d.size, 0);
    const ids = await client.blobIds(opts.containerId);
    const known = new Set<string>();
    for (let o = 0; o < ids.length; o += ID_BYTES) known.add(ids.toString('hex', o, o + ID_BYTES));
    const cached = await loadPreviousBlocks(opts.agentDir, opts.vaultId, config.name, disks.map((d) => ({ path: d.path, dataSize: d.size, blockSize: config.blockSize })));
    const manifests = new Map<string, Promise<VmManifest | null>>();
    const plans = await Promise.all(disks.map(async (d) => {
      let previous = cached.tables[d.index] ?? null;
      let dirty = d.dirty;
      if (dirty) {
        previous = await baseTable(opts, d, cached, manifests);
        if (!previous) {
          dirty = null;
          d.tracking = { ...d.tracking, mode: 'full', reason: `the block table of point ${d.since} is neither on this machine nor in the vault` };
        }
      }
      const plan = dirty || d.allocation ? planBlocks({ size: d.size, blockSize: config.blockSize, dirty, allocation: d.allocation, previous, held: (id) => known.has(id.toString('hex')) }) : null;
      return { previous, plan };
    }));

    const blockCount = disks.reduce((n, d) => n + Math.ceil(d.size / config.blockSize), 0);
    const toRead = plans.reduce((n, p, i) => n + (p.plan ? p.plan.filter((x) => x === READ).length : Math.ceil(disks[i]!.size / config.blockSize)), 0);
    const shared = SharedIdSet.create(known.size + blockCount);
    for (let o = 0; o < ids.length; o += ID_BYTES) shared.claim(ids.subarray(o, o + ID_BYTES));
    const workers = opts.workers ?? (toRead * config.blockSize <= INLINE_BYTES ? 0 : defaultWorkers());
    encoder = new BlockEncoder(keys, shared, (data) => client.putPack(opts.containerId, randomBytes(16).toString('hex'), data), config.blockSize, workers);
    const enc = encoder;

    // Every disk at once: reads overlap, and the workers encode blocks of all disks. The first
    // disk that fails stops the others before the failure is reported.
    const stop = new AbortController();
    let firstError: unknown = null;
    const ticker = setInterval(() => tick(), 1000);
    let outcomes: PromiseSettledResult<Buffer>[];
    try {
      outcomes = await Promise.allSettled(disks.map(async (d, i) => {
        try {
          return await scanDisk({
            disk: i, reader: d.reader, size: d.size, blockSize: config.blockSize, plan: plans[i]!.plan, previous: plans[i]!.previous,
            encoder: enc, counters: perDisk[i]!, signal: stop.signal,
          });
        } catch (e) {
          if (!stop.signal.aborted) {
            firstError = e;
            stop.abort();
          }
          throw e;
        }
      }));
      if (stop.signal.aborted) throw firstError;
      await enc.finish();
    } finally {
      clearInterval(ticker);
    }
    disks.forEach((_, i) => { perDisk[i]!.bytesUploaded = enc.uploaded(i); });
    const tables = outcomes.map((o) => (o as PromiseFulfilledResult<Buffer>).value);

    const vmDisks: VmDisk[] = disks.map((d, i) => ({
      index: i, name: names[i]!, path: d.path, format: d.format, size: d.size, blockSize: config.blockSize,
      ...(d.vhdFooter ? { vhdFooter: d.vhdFooter.toString('base64') } : {}), blocks: tables[i]!,
    }));
    const manifest: VmManifest = { version: 1, kind: 'vm', item: config.name, time: clock.now().toISOString(), consistency, disks: vmDisks };
    await client.putPointObject(pointId, jobId, 'manifest', sealVmManifest(keys, pointId, manifest));
    await client.putPointObject(pointId, jobId, 'refs', vmReferences(manifest));
    await reporter.drain();

    const reports: DiskReport[] = vmDisks.map((d, i) => ({
      index: i, name: d.name, path: d.path, format: d.format, size: d.size, blockSize: d.blockSize,
      snapshot: disks[i]!.snapshot, changeTracking: disks[i]!.tracking, ...perDisk[i]!,
    }));
    const final = totals();
    const kind = opts.kind ?? 'OnDemand';
    const now = clock.now();
    const retainUntil = opts.retainUntil ?? defaultRetainUntil(kind, now);
    const expiresAt = new Date(now.getTime() + days * 86_400_000).toISOString();
    const method = overallMethod(disks.map((d) => d.snapshot));
    const notes = live.notes;
    const point = await client.commit(pointId, {
      jobId, files: vmDisks.length, bytes: bytesTotal, kind, consistency, retainUntil, counters: final, warnings,
      details: { kind: 'vm', consistency, steps: quiesced.steps, disks: reports, instantRestore: { days, until: expiresAt, method }, notes },
    });

    // The block tables first, then change tracking moves on: a kill in between costs a re-read, never a change.
    await savePreviousBlocks(opts.agentDir, opts.vaultId, config.name, point.id, vmDisks.map((d) => ({ path: d.path, dataSize: d.size, blockSize: d.blockSize, blocks: d.blocks })));
    try {
      await live.committed(point.id);
    } catch (e) {
      // The point is committed; tracking left as it was means the next backup reads a little more, nothing is lost.
      warnings.push({ code: 'ChangeTrackingNotAdvanced', message: `change tracking could not move on to point ${point.id} (${(e as Error).message}); the next backup reads the changes since the previous point again` });
    }

    let kept: VmBackupResult['snapshot'] = null;
    const snapDisks = live.snapshotDisks();
    if (snapDisks.length) {
      try {
        // The kept snapshot's method is that of the disks it holds (a disk with no copy is not in it).
        const keptMethod = overallMethod(disks.filter((d) => d.snapshot !== 'none').map((d) => d.snapshot)) as SnapshotMethod;
        const dir = await keepSnapshot(root, {
          version: 1, item: config.name, pointId: point.id, vaultId: opts.vaultId, createdAt: now.toISOString(), expiresAt,
          method: keptMethod, disks: snapDisks,
        });
        staging = null;
        keepSnapshots = true;
        kept = { dir, expiresAt, method: keptMethod };
      } catch (e) {
        // The point is committed and complete in the vault; only the fast local copy is lost.
        warnings.push({ code: 'SnapshotNotKept', message: `the instant-restore snapshot could not be kept (${(e as Error).message}); restores of ${point.id} read the vault` });
      }
    }
    tick(true);
    return { point, jobId, consistency, counters: final, disks: reports, warnings, steps: quiesced.steps, snapshot: kept, notes };
  } catch (e) {
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    await encoder?.close();
    await session?.close(keepSnapshots);
    // Staging of a failed backup (or a snapshot that could not be kept) is not a restore source.
    if (staging) await rm(staging, { recursive: true, force: true });
  }
}
