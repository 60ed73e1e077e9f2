/**
 * The VM backup engine (SPEC "VM backup flow"):
 *
 *   start job → pre-script → snapshot every disk (reflink or sparse copy) → post-script →
 *   read every disk's snapshot in parallel, in fixed blocks, sending only blocks the vault
 *   lacks → sealed VM manifest + reference list → commit (with per-disk counters and the
 *   consistency reached) → keep the snapshot as the instant-restore copy.
 *
 * A failure before the commit leaves no point and no snapshot; blocks already sent are
 * reused by the next backup.
 */
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Consistency, JobCounters, JobProblem, PointInfo, PointKind } from '../../core/api.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { ID_BYTES, type KeySet } from '../../core/crypto.js';
import { CoffreError } from '../../core/errors.js';
import type { VaultClient } from '../client.js';
import { loadPreviousBlocks, savePreviousBlocks } from './block-cache.js';
import { DEFAULT_INSTANT_RESTORE_DAYS, type VmConfig } from './config.js';
import { snapshotConsistently, systemQuiescer, type Quiescer, type StepRecord } from '../consistency.js';
import { sealVmManifest, vmReferences, type VmDisk, type VmManifest } from './disk-manifest.js';
import { emptyDiskCounters, scanDisk, type DiskCounters } from './disk-scan.js';
import { diskNames, probeDisk, probeSnapshot, type DiskProbe } from './disk-source.js';
import { PackUploader } from '../pack-uploader.js';
import { JobReporter, defaultRetainUntil } from '../job-report.js';
import { cloneDisk, defaultSnapshotRoot, keepSnapshot, prepareStaging, type CloneMethod } from './snapshot-store.js';


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
  /** Runs scripts and fsfreeze; tests substitute their own. */
  quiescer?: Quiescer;
  onProgress?: (c: JobCounters & { bytesTotal: number; filesTotal: number }) => void;
}

/** What a backup reports of each disk: its geometry as in the manifest, its counters, how it was snapshotted. */
export interface DiskReport extends DiskCounters, Pick<VmDisk, 'index' | 'name' | 'path' | 'format' | 'size' | 'blockSize'> {
  snapshot: CloneMethod;
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
  snapshot: { dir: string; expiresAt: string; method: CloneMethod } | null;
}

/** Files in the staging folder: disk-N.img, or .vhd for a VHD so the copy says what it is. */
const snapshotFile = (index: number, probe: DiskProbe) => `disk-${index}.${probe.format === 'vhd' ? 'vhd' : 'img'}`;

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
    ...(config.preScript ? { preScript: config.preScript } : {}),
    ...(config.postScript ? { postScript: config.postScript } : {}),
    ...(config.freezePath ? { freezePath: config.freezePath } : {}),
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
  const uploaders: PackUploader[] = [];

  try {
    if (start.item.kind !== 'vm') {
      throw new CoffreError('InvalidArgument', `item ${config.name} holds ${start.item.kind} backups, not a VM; protect the VM under another name`);
    }
    const policyName = config.policy && !config.policyAssigned ? config.policy : start.item.policy;
    const days = await instantRestoreDays(client, policyName, warn);
    const probes = await Promise.all(config.disks.map((d) => probeDisk(d.path)));
    const names = diskNames(probes.map((p) => p.path));
    staging = await prepareStaging(root, config.name, pointId);
    let freezePath = config.freezePath;
    if (freezePath && !(await freezeIsSafe(freezePath, staging))) {
      warn({ code: 'FreezeSkipped', message: `${freezePath} is on the file system the snapshots are written to; freezing it would block the snapshot, so it was not frozen (use --snapshot-dir elsewhere)` });
      freezePath = undefined;
    }

    const stagingPath = staging;
    const quiesced = await snapshotConsistently({
      ...(config.preScript ? { preScript: config.preScript } : {}),
      ...(config.postScript ? { postScript: config.postScript } : {}),
      ...(freezePath ? { freezePath } : {}),
      timeoutMs: timeoutSeconds * 1000,
      env: { COFFRE_VM: config.name, COFFRE_POINT: pointId, COFFRE_DISKS: probes.map((p) => p.path).join('\n') },
    }, quiescer, () => Promise.all(probes.map((p, i) => cloneDisk(p.path, join(stagingPath, snapshotFile(i, p)), p.kind === 'device'))));
    warnings.push(...quiesced.warnings);
    if (!quiesced.ok) throw quiesced.error;
    const methods = quiesced.result;
    const consistency = quiesced.consistency;

    const snaps = await Promise.all(probes.map(async (p, i) => ({ ...(await probeSnapshot(join(stagingPath, snapshotFile(i, p)), p.kind, p.path)), file: snapshotFile(i, p) })));
    bytesTotal = snaps.reduce((n, s) => n + s.dataSize, 0);
    const known = new Set<string>();
    const ids = await client.blobIds(opts.containerId);
    for (let o = 0; o < ids.length; o += ID_BYTES) known.add(ids.toString('hex', o, o + ID_BYTES));
    const geometry = probes.map((p, i) => ({ path: p.path, dataSize: snaps[i]!.dataSize, blockSize: config.blockSize }));
    const previous = await loadPreviousBlocks(opts.agentDir, opts.vaultId, config.name, geometry);

    // Every disk at once: reads overlap, and each disk fills and sends its own packs. The
    // first disk that fails stops the others before the failure is reported.
    const stop = new AbortController();
    let firstError: unknown = null;
    const scans = snaps.map(async (s, i) => {
      try {
        const uploader = new PackUploader(client, opts.containerId);
        uploaders.push(uploader);
        const table = await scanDisk({
          file: join(stagingPath, s.file), dataSize: s.dataSize, blockSize: config.blockSize, keys, known,
          previous: previous[i] ?? null, uploader, counters: perDisk[i]!, onBlock: () => tick(), signal: stop.signal,
        });
        await uploader.finish();
        perDisk[i]!.bytesUploaded = uploader.uploaded;
        return table;
      } catch (e) {
        if (!stop.signal.aborted) {
          firstError = e;
          stop.abort();
        }
        throw e;
      }
    });
    const outcomes = await Promise.allSettled(scans);
    if (stop.signal.aborted) throw firstError;
    const tables = outcomes.map((o) => (o as PromiseFulfilledResult<Buffer>).value);

    const disks: VmDisk[] = snaps.map((s, i) => ({
      index: i, name: names[i]!, path: probes[i]!.path, format: s.format, size: s.dataSize, blockSize: config.blockSize,
      ...(s.vhdFooter ? { vhdFooter: s.vhdFooter.toString('base64') } : {}), blocks: tables[i]!,
    }));
    const manifest: VmManifest = { version: 1, kind: 'vm', item: config.name, time: clock.now().toISOString(), consistency, disks };
    await client.putPointObject(pointId, jobId, 'manifest', sealVmManifest(keys, pointId, manifest));
    await client.putPointObject(pointId, jobId, 'refs', vmReferences(manifest));
    await reporter.drain();

    const reports: DiskReport[] = disks.map((d, i) => ({
      index: i, name: d.name, path: d.path, format: d.format, size: d.size, blockSize: d.blockSize, snapshot: methods[i]!, ...perDisk[i]!,
    }));
    const final = totals();
    const kind = opts.kind ?? 'OnDemand';
    const now = clock.now();
    const retainUntil = opts.retainUntil ?? defaultRetainUntil(kind, now);
    const expiresAt = new Date(now.getTime() + days * 86_400_000).toISOString();
    const point = await client.commit(pointId, {
      jobId, files: disks.length, bytes: bytesTotal, kind, consistency, retainUntil, counters: final, warnings,
      details: { kind: 'vm', consistency, steps: quiesced.steps, disks: reports, instantRestore: { days, until: expiresAt, method: methods.every((m) => m === 'reflink') ? 'reflink' : 'copy' } },
    });

    let kept: VmBackupResult['snapshot'] = null;
    try {
      const dir = await keepSnapshot(root, {
        version: 1, item: config.name, pointId: point.id, vaultId: opts.vaultId, createdAt: now.toISOString(), expiresAt,
        method: methods.every((m) => m === 'reflink') ? 'reflink' : 'copy',
        disks: snaps.map((s, i) => ({ index: i, file: s.file, format: s.format, dataSize: s.dataSize, fileSize: 0, mtimeMs: 0 })),
      });
      staging = null;
      kept = { dir, expiresAt, method: methods.every((m) => m === 'reflink') ? 'reflink' : 'copy' };
    } catch (e) {
      // The point is committed and complete in the vault; only the fast local copy is lost.
      warnings.push({ code: 'SnapshotNotKept', message: `the instant-restore snapshot could not be kept (${(e as Error).message}); restores of ${point.id} read the vault` });
    }
    await savePreviousBlocks(opts.agentDir, opts.vaultId, config.name, point.id, disks.map((d, i) => ({ ...geometry[i]!, blocks: d.blocks })));
    tick(true);
    return { point, jobId, consistency, counters: final, disks: reports, warnings, steps: quiesced.steps, snapshot: kept };
  } catch (e) {
    await Promise.all(uploaders.map((u) => u.settle()));
    await reporter.fail(e, warnings);
    throw e;
  } finally {
    // Staging of a failed backup (or a snapshot that could not be kept) is not a restore source.
    if (staging) await rm(staging, { recursive: true, force: true });
  }
}
