/**
 * A file backup read from a point-in-time snapshot of its volumes:
 *
 *   sweep what dead runs left → plan → pre-script → record → every snapshot → post-script
 *   → read (src/agent/backup.ts) → check every snapshot → remove them → commit
 *
 * Every snapshot exists before any file is read, so paths on several volumes are one instant
 * each, as close together as the tools allow. The label says what the point is: `app` when a
 * pre-script (and the post-script, if any) succeeded around the snapshots, `filesystem` for
 * snapshots alone, `crash` when any volume had to be read live (`--snapshot auto` on ext4
 * without LVM, or `--snapshot none`); then the pre- and post-scripts frame the whole read
 * instead of a snapshot, and a note in the job says which volumes were read live and why.
 * Snapshots are removed before the commit (a removal that fails is a warning) and again, as
 * needed, when the backup fails; a killed run's are removed by the next run (records.ts).
 */
import { resolve } from 'node:path';
import type { FileSource, JobProblem } from '../../core/api.js';
import { CoffreError } from '../../core/errors.js';
import { backup, type BackupOptions, type BackupResult } from '../backup.js';
import { quiesce, systemQuiescer, type Quiescer } from '../consistency.js';
import { DEFAULT_SCRIPT_TIMEOUT_SECONDS } from '../scripts.js';
import { BtrfsSnapshotter } from './btrfs.js';
import { LvmSnapshotter, validLvmSize } from './lvm.js';
import { planRead, type ReadPlan } from './plan.js';
import type { PreparedRead } from './prepared-read.js';
import { deadRecords, isRunning, newRunName, ownerOf, removeRecord, writeRecord } from './records.js';
import { systemRunner, type CommandRunner } from './runner.js';
import { SNAPSHOT_MODES, type SnapshotMethod, type SnapshotMode, type SnapshotRef, type Snapshotter } from './snapshotter.js';
import { readMounts, realLivePath, type Mount } from './volumes.js';
import { ZfsSnapshotter } from './zfs.js';

/** How an item is snapshotted; stored with it, so that scheduled runs do the same. */
export interface SnapshotOptions {
  snapshot?: SnapshotMode;
  preScript?: string;
  postScript?: string;
  /** Limit for each script (default 300 s), after which it is killed with what it started. */
  scriptTimeoutSeconds?: number;
  /** An LVM classic snapshot's copy-on-write space (default 20%ORIGIN). */
  snapshotSize?: string;
}

export { DEFAULT_SCRIPT_TIMEOUT_SECONDS };
/** Where LVM snapshots are mounted to be read: gone at reboot, never inside a backed-up tree by default. */
export const LVM_MOUNT_BASE = '/run/coffre/snapshots';

export interface SnapshotBackupOptions extends Omit<BackupOptions, 'read'>, SnapshotOptions {
  /** The system's side, which tests replace: tools, mount table, snapshot kinds, scripts. */
  runner?: CommandRunner;
  mounts?: () => Promise<Mount[]>;
  snapshotters?: Partial<Record<SnapshotMethod, Snapshotter>>;
  quiescer?: Quiescer;
  lvmMountBase?: string;
}

/** The options as stored with the item: only what was set, and the mode always. */
export function storedOptions(o: SnapshotOptions): Record<string, unknown> {
  return {
    snapshot: o.snapshot ?? 'auto',
    ...(o.preScript ? { preScript: o.preScript } : {}),
    ...(o.postScript ? { postScript: o.postScript } : {}),
    ...(o.scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds: o.scriptTimeoutSeconds } : {}),
    ...(o.snapshotSize ? { snapshotSize: o.snapshotSize } : {}),
  };
}

/** The options stored with an item, as the vault hands them back for a scheduled run. */
export function optionsFromSource(source: FileSource): SnapshotOptions {
  const mode = source.snapshot ?? 'auto';
  if (!(SNAPSHOT_MODES as readonly string[]).includes(mode)) throw new CoffreError('InvalidArgument', `the item's stored snapshot mode ${mode} is not one of ${SNAPSHOT_MODES.join(', ')}; back it up once with --snapshot`);
  return {
    snapshot: mode as SnapshotMode,
    ...(source.preScript ? { preScript: source.preScript } : {}),
    ...(source.postScript ? { postScript: source.postScript } : {}),
    ...(source.scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds: source.scriptTimeoutSeconds } : {}),
    ...(source.snapshotSize ? { snapshotSize: source.snapshotSize } : {}),
  };
}

const describe = (e: unknown): JobProblem => {
  const err = e instanceof CoffreError ? e : new CoffreError('Internal', (e as Error).message);
  return { code: err.code, message: err.message };
};

/** Removes each snapshot: says which were there, and for each that stays, why. */
async function removeAll(refs: SnapshotRef[], kinds: Record<SnapshotMethod, Snapshotter>, why: string): Promise<{ removed: string[]; problems: JobProblem[] }> {
  const removed: string[] = [];
  const problems: JobProblem[] = [];
  for (const ref of refs) {
    try {
      if (await kinds[ref.volume.method].remove(ref)) removed.push(ref.name);
    } catch (e) {
      problems.push({ code: 'SnapshotNotRemoved', message: `${why} ${ref.name} (${ref.volume.method}, ${ref.volume.live}) could not be removed, the next backup tries again: ${(e as Error).message}` });
    }
  }
  return { removed, problems };
}

/** Removes the snapshots of runs whose process is gone: first those they recorded, then those found by name on these volumes. */
async function sweep(agentDir: string, kinds: Record<SnapshotMethod, Snapshotter>, planned: SnapshotRef[]): Promise<{ removed: string[]; problems: JobProblem[] }> {
  const removed: string[] = [];
  const problems: JobProblem[] = [];
  for (const record of await deadRecords(agentDir)) {
    const done = await removeAll(record.snapshots, kinds, 'a snapshot left by a killed run');
    problems.push(...done.problems);
    removed.push(...done.removed);
    if (done.problems.length === 0) await removeRecord(agentDir, record.run);
  }
  const seen = new Set<string>();
  for (const ref of planned) {
    let found: SnapshotRef[];
    try {
      found = await kinds[ref.volume.method].list(ref.volume);
    } catch (e) {
      problems.push({ code: 'SnapshotNotRemoved', message: `cannot look for snapshots left by killed runs on ${ref.volume.live}: ${(e as Error).message}` });
      continue;
    }
    for (const stale of found) {
      const owner = ownerOf(stale.name);
      const id = `${stale.volume.method}:${stale.volume.live}:${stale.name}`;
      if (!owner || seen.has(id) || await isRunning(owner)) continue;
      seen.add(id);
      const done = await removeAll([stale], kinds, 'a snapshot left by a killed run');
      problems.push(...done.problems);
      removed.push(...done.removed);
    }
  }
  return { removed, problems };
}

/** A backup that failed before it started reading still gets a Failed job, so scheduled runs leave a trace in the vault. */
async function recordFailure(opts: SnapshotBackupOptions, error: unknown, warnings: JobProblem[]): Promise<void> {
  try {
    const start = await opts.client.startBackup(opts.item, 'files', { paths: opts.paths.map((p) => resolve(p)), excludes: opts.excludes ?? [], ...storedOptions(opts) });
    await opts.client.finishJob(start.job.id, { status: 'Failed', errors: [describe(error)], warnings });
  } catch {
    // Best effort: the error itself still reaches the caller, which is what matters most.
  }
}

export async function backupFiles(opts: SnapshotBackupOptions): Promise<BackupResult> {
  const mode = opts.snapshot ?? 'auto';
  if (opts.snapshotSize) validLvmSize(opts.snapshotSize);
  const runner = opts.runner ?? systemRunner;
  const kinds: Record<SnapshotMethod, Snapshotter> = {
    btrfs: new BtrfsSnapshotter(runner),
    lvm: new LvmSnapshotter(runner, { mountBase: opts.lvmMountBase ?? LVM_MOUNT_BASE, ...(opts.snapshotSize ? { size: opts.snapshotSize } : {}) }),
    zfs: new ZfsSnapshotter(runner),
    ...opts.snapshotters,
  };
  const timeoutMs = (opts.scriptTimeoutSeconds ?? DEFAULT_SCRIPT_TIMEOUT_SECONDS) * 1000;
  const run = await newRunName();

  let plan: ReadPlan;
  let swept: { removed: string[]; problems: JobProblem[] };
  try {
    plan = mode === 'none'
      ? { roots: opts.paths.map((p) => ({ read: p, record: p })), snapshots: [], live: opts.paths.map((p) => ({ path: realLivePath(p), reason: '--snapshot none' })) }
      : await planRead({
        paths: opts.paths, mode, excludes: opts.excludes ?? [], mounts: await (opts.mounts ?? readMounts)(), snapshotters: kinds,
        nameFor: (n) => `${run}-${n}`, ownMounts: [opts.lvmMountBase ?? LVM_MOUNT_BASE],
      });
    swept = await sweep(opts.agentDir, kinds, plan.snapshots);
  } catch (e) {
    await recordFailure(opts, e, []);
    throw e;
  }

  const quiesced = await quiesce({
    ...(opts.preScript ? { preScript: opts.preScript } : {}), ...(opts.postScript ? { postScript: opts.postScript } : {}), timeoutMs,
    env: { COFFRE_ITEM: opts.item, COFFRE_PATHS: opts.paths.map(realLivePath).join('\n') },
  }, opts.quiescer ?? systemQuiescer);
  const allSnapshotted = plan.live.length === 0;
  let snapshotsMade = false;
  let removed = false;
  try {
    if (plan.snapshots.length) {
      const started = Date.now();
      try {
        // Recorded before any exists: a kill from here on leaves nothing the next run cannot find.
        await writeRecord(opts.agentDir, run, plan.snapshots);
        for (const method of ['zfs', 'btrfs', 'lvm'] as const) {
          const refs = plan.snapshots.filter((s) => s.volume.method === method);
          if (refs.length) await kinds[method].create(refs);
        }
      } catch (e) {
        quiesced.steps.push({ step: 'snapshot', ok: false, durationMs: Date.now() - started, detail: (e as Error).message });
        throw e instanceof CoffreError ? e : new CoffreError('SnapshotFailed', `cannot make the snapshots: ${(e as Error).message}`);
      }
      quiesced.steps.push({ step: 'snapshot', ok: true, durationMs: Date.now() - started });
    }
    snapshotsMade = true;
    // With every volume in a snapshot the application may resume now; a live read keeps it quiesced until the read ends.
    const postOk = allSnapshotted ? (await quiesced.resume(true)).postOk : false;
    const consistency = !allSnapshotted ? 'crash' : opts.preScript && quiesced.preOk && postOk ? 'app' : 'filesystem';

    const notes: string[] = [];
    if (swept.removed.length) notes.push(`removed ${swept.removed.length} snapshot(s) left by an earlier run that was killed: ${swept.removed.join(', ')}`);
    if (mode !== 'none' && plan.live.length) {
      notes.push(`read live, without a snapshot, so the point is crash-consistent: ${plan.live.map((l) => `${l.path} (${l.reason})`).join('; ')}`);
    }
    const warningsBefore = [...swept.problems, ...quiesced.warnings];
    const read: PreparedRead = {
      roots: plan.roots,
      consistency,
      warnings: warningsBefore,
      options: storedOptions(opts),
      details: {
        consistency,
        snapshot: {
          mode,
          snapshots: plan.snapshots.map((s) => ({ method: s.volume.method, volume: s.volume.live, name: s.name })),
          live: plan.live,
        },
        steps: quiesced.steps,
        ...(notes.length ? { notes } : {}),
      },
      beforeCommit: async () => {
        const more: JobProblem[] = [];
        for (const ref of plan.snapshots) more.push(...await kinds[ref.volume.method].check(ref));
        if (!allSnapshotted) {
          const seen = quiesced.warnings.length;
          await quiesced.resume(true);
          more.push(...quiesced.warnings.slice(seen));
        }
        removed = true;
        const { problems } = await removeAll(plan.snapshots, kinds, 'the snapshot');
        if (problems.length === 0) await removeRecord(opts.agentDir, run);
        return [...more, ...problems];
      },
    };
    return await backup({ ...opts, read });
  } catch (e) {
    if (!snapshotsMade) {
      // The post-script first, so that its own problems are in the failed job too.
      await quiesced.resume(false);
      await recordFailure(opts, e, quiesced.warnings);
    }
    throw e;
  } finally {
    await quiesced.resume(snapshotsMade);
    if (!removed && plan.snapshots.length) {
      const { problems } = await removeAll(plan.snapshots, kinds, 'the snapshot');
      if (problems.length === 0) await removeRecord(opts.agentDir, run);
    }
  }
}
