/**
 * The snapshot and script options of `coffre backup`, registered by one call so that the backup
 * command stays a few lines; they are stored with the item, and `coffre agent run` uses them.
 */
import { Option, type Command } from 'commander';
import type { JobInfo } from '../core/api.js';
import { DEFAULT_LVM_SNAPSHOT_SIZE, validLvmSize } from '../agent/snapshot/lvm.js';
// The script default comes from the script runner: importing the snapshot backup engine here
// would load the whole file backup (SQLite, the tree walk) into every command's start.
import { DEFAULT_SCRIPT_TIMEOUT_SECONDS } from '../agent/scripts.js';
import type { SnapshotOptions } from '../agent/snapshot/snapshot-backup.js';
import { SNAPSHOT_MODES, type SnapshotMode } from '../agent/snapshot/snapshotter.js';
import { executable, seconds } from './arguments.js';

export interface SnapshotFlags { snapshot: SnapshotMode; preScript?: string; postScript?: string; scriptTimeout?: number; snapshotSize?: string }

export function addSnapshotOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--snapshot <kind>', 'read from a point-in-time snapshot of each volume: auto (btrfs, LVM or ZFS where possible, else live), a kind required, or none (live)')
      .choices([...SNAPSHOT_MODES]).default('auto'))
    .option('--pre-script <file>', 'run before the snapshots to quiesce the application (exit 0 = quiesced; then the point is app-consistent)')
    .option('--post-script <file>', 'run after the snapshots (after the read when reading live) to resume the application; always runs once the pre-script ran')
    .option('--script-timeout <seconds>', `limit for each script, then it is killed (default ${DEFAULT_SCRIPT_TIMEOUT_SECONDS})`, seconds)
    .option('--snapshot-size <size>', `copy-on-write space of an LVM classic snapshot: 20%ORIGIN, 10%FREE, 2G... (default ${DEFAULT_LVM_SNAPSHOT_SIZE})`, validLvmSize);
}

/** The flags as backup options; scripts by absolute path, since scheduled runs start elsewhere. */
export async function snapshotOptionsFrom(o: SnapshotFlags): Promise<SnapshotOptions> {
  return {
    snapshot: o.snapshot,
    ...(o.preScript ? { preScript: await executable(o.preScript, '--pre-script') } : {}),
    ...(o.postScript ? { postScript: await executable(o.postScript, '--post-script') } : {}),
    ...(o.scriptTimeout !== undefined ? { scriptTimeoutSeconds: o.scriptTimeout } : {}),
    ...(o.snapshotSize ? { snapshotSize: o.snapshotSize } : {}),
  };
}

/** The job's notes (e.g. "read live, without a snapshot"), one line each, for a terminal. */
export function jobNotes(job: JobInfo): string {
  const notes = (job.details.notes as string[] | undefined) ?? [];
  return notes.map((n) => `  note: ${n}\n`).join('');
}
