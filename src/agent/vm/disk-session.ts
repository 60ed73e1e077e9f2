/**
 * What a VM backup asks of the place its disks come from (image files on this machine, or a
 * running QEMU over QMP): take a point-in-time view of every disk, open a reader on each,
 * say which blocks changed since the last committed point, and once the point is committed,
 * keep the instant-restore snapshot and move change tracking on. vm-backup.ts drives a
 * session; file-disks.ts and live-disks.ts implement it.
 */
import type { DiskFormat } from './disk-manifest.js';
import type { DiskReader } from './disk-reader.js';
import type { Extent } from './nbd-protocol.js';
import type { SnapshotDisk, SnapshotMethod } from './snapshot-store.js';

/** How the blocks to read were chosen for a disk, as the job reports it. */
export interface ChangeTracking {
  /** `incremental`: only blocks QEMU's dirty bitmap marks; `full`: every allocated block; `compare`: every block read and compared by hash. */
  mode: 'incremental' | 'full' | 'compare';
  /** Why a full read was needed (first backup, bitmap lost, disk replaced, ...). */
  reason?: string;
  /** The bitmap that tracks changes from this point on. */
  bitmap?: string;
}

export interface SessionDisk {
  index: number;
  /** Where the disk lives (an image file or device, or the image behind a QEMU node). */
  path: string;
  format: DiskFormat;
  size: number;
  vhdFooter?: Buffer;
  reader: DiskReader;
  /** Dirty extents since point `since` (flags STATE_DIRTY); null: every block must be considered. */
  dirty: Extent[] | null;
  /** The committed point `dirty` is relative to: its block table is the base of this one. */
  since: string | null;
  /** Allocation extents (STATE_ZERO = reads as zeros); null: unknown, every block is read. */
  allocation: Extent[] | null;
  tracking: ChangeTracking;
  /** How this disk's instant-restore copy is kept ('none': it is not, see the session's notes). */
  snapshot: SnapshotMethod | 'none';
}

export interface DiskSession {
  /** Takes the point-in-time view of every disk; called inside the quiesce window (scripts, freeze). */
  take(): Promise<void>;
  /** Opens a reader on each disk's view (after take). */
  open(): Promise<SessionDisk[]>;
  /** Snapshot records for `keepSnapshot`, for the disks whose copy is kept. */
  snapshotDisks(): SnapshotDisk[];
  /** After the point is committed: change tracking moves on to the new point. */
  committed(pointId: string): Promise<void>;
  /**
   * Releases readers, QEMU objects and temporary files. Unless `keepSnapshots` (the point is
   * committed and its snapshot recorded), snapshots taken for it are deleted. After a failure,
   * change tracking is left as it was: the next backup still sees every change since the last point.
   */
  close(keepSnapshots: boolean): Promise<void>;
  /** Things the job should say (e.g. a full copy was needed for the snapshot). */
  notes: string[];
}
