/**
 * A point-in-time copy of a volume, made before a file backup reads it, so that the point is
 * one instant of the file system rather than a smear of the hours the read took (the shadow-copy
 * step of the service we model). One small interface, one file per kind of volume: btrfs.ts,
 * lvm.ts, zfs.ts. A volume and a snapshot reference are plain JSON, because a run writes them to
 * the agent folder before it makes the snapshot: a later run removes what a killed one left.
 */
import type { JobProblem } from '../../core/api.js';
import type { Mount } from './volumes.js';

export type SnapshotMethod = 'btrfs' | 'lvm' | 'zfs';
/** What the user asks for: `auto` snapshots what it can and reads the rest live; `none` reads live. */
export type SnapshotMode = 'auto' | 'none' | SnapshotMethod;
export const SNAPSHOT_MODES: readonly SnapshotMode[] = ['auto', 'btrfs', 'lvm', 'zfs', 'none'];

/** Every snapshot Coffre makes is named so: `coffre-<pid>-<process start>-<n>` (see records.ts). */
export const SNAPSHOT_PREFIX = 'coffre-';

interface VolumeBase {
  /** Two paths on volumes with equal keys share one snapshot. */
  key: string;
  /** The live folder that the snapshot's root copies; every path read from the snapshot lies in it. */
  live: string;
}
export interface BtrfsVolume extends VolumeBase {
  method: 'btrfs';
  /** Where the snapshots of this subvolume are made: `.coffre-snapshots` at its file system's mount point. */
  snapshotDir: string;
  mountPoint: string;
  /** The subvolume the mount shows, as a path from the file system's top level (from the mount table). */
  mountRoot: string;
}
export interface LvmVolume extends VolumeBase {
  method: 'lvm';
  vg: string;
  lv: string;
  /** The thin pool of a thin volume ('' for a classic one, whose snapshot needs its own space). */
  pool: string;
  fsType: string;
  /** The folder of the file system that the live mount shows (a bind mount shows a sub-folder). */
  fsRoot: string;
  /** Where the snapshot is mounted to be read: `<mountBase>/<name>`. */
  mountBase: string;
  /** For a classic snapshot: lvcreate's `--size` or `--extents` argument. */
  size: string;
}
export interface ZfsVolume extends VolumeBase {
  method: 'zfs';
  dataset: string;
  /** The dataset's mount point; its snapshots show under `<mountPoint>/.zfs/snapshot/<name>`. */
  mountPoint: string;
  fsRoot: string;
}
export type Volume = BtrfsVolume | LvmVolume | ZfsVolume;

/** One snapshot of one volume, by name. */
export interface SnapshotRef { name: string; volume: Volume }

/**
 * The contract every kind of snapshot keeps:
 * - `probe` has no side effects; it says whether this method can snapshot the volume holding a
 *   path, and if not, why, in a sentence a user can act on.
 * - `create` makes each snapshot read-only (or reads it only through a read-only mount) and
 *   resolves only when every copy is readable at `copyOf`; the copies are made as close
 *   together in time as the method allows (ZFS: atomically, in one command). On failure it
 *   throws SnapshotFailed or SnapshotUnavailable; what it made so far `remove` removes.
 * - `copyOf(ref, path)` is where the snapshot's copy of the live path `path` (inside
 *   `ref.volume.live`) lies. Nothing else about the copy differs from the live path: names,
 *   contents, modes, owners, times and inode numbers are those of the instant of the snapshot.
 * - `check` runs after the read and before the point is committed: it throws SnapshotInvalid
 *   when the copy stopped being that instant (an LVM snapshot whose copy-on-write space filled),
 *   and returns warnings for near misses.
 * - `remove` is idempotent: a snapshot that is gone, or was never made, is removed. It may be
 *   given a reference written by a process that was killed since.
 * - `list` finds the snapshots on a volume whose names start with SNAPSHOT_PREFIX.
 */
export interface Snapshotter {
  readonly method: SnapshotMethod;
  probe(path: string, mount: Mount): Promise<Volume | { unavailable: string }>;
  /**
   * Live roots of nested volumes strictly below `path` that the volume's snapshot shows as empty
   * folders (btrfs subvolumes inside a subvolume). Other methods have none: their nested
   * volumes are mounts, which the mount table lists.
   */
  nested?(volume: Volume, path: string): Promise<string[]>;
  create(refs: SnapshotRef[]): Promise<void>;
  copyOf(ref: SnapshotRef, path: string): string;
  check(ref: SnapshotRef): Promise<JobProblem[]>;
  /** Resolves with whether there was a snapshot to remove. */
  remove(ref: SnapshotRef): Promise<boolean>;
  list(volume: Volume): Promise<SnapshotRef[]>;
}
