/**
 * What the snapshot step hands the backup engine (src/agent/backup.ts): where to read each
 * path from, how consistent that read is, and a last check before the point is committed. The
 * engine knows nothing else of snapshots; without a PreparedRead it reads live.
 */
import type { Consistency, JobProblem } from '../../core/api.js';
import type { WalkRoot } from '../walk.js';

export interface PreparedRead {
  /** One per path to back up, in order: read from the snapshot's copy, recorded as the path. */
  roots: WalkRoot[];
  /** The point's label: `app`, `filesystem` (every volume read from a snapshot) or `crash`. */
  consistency: Consistency;
  /** Problems found before the read (a failed script), reported with the job's. */
  warnings: JobProblem[];
  /** Recorded on the job (`details`): the snapshots made, what was read live and why, notes. */
  details: Record<string, unknown>;
  /** Stored with the item, so that scheduled runs back it up the same way. */
  options: Record<string, unknown>;
  /**
   * Called once after the last file was read and before anything is committed. Returns more
   * warnings, or throws to fail the backup (a snapshot that stopped being one instant).
   */
  beforeCommit(): Promise<JobProblem[]>;
}
