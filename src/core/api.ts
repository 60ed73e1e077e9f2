/** The JSON shapes of the vault's HTTP API, shared by the vault, the agent and the CLI. */

export type Redundancy = 'LRS' | 'ZRS' | 'GRS';
export type JobStatus = 'Queued' | 'InProgress' | 'Completed' | 'CompletedWithWarnings' | 'Failed' | 'Cancelled';
export type Operation = 'Backup' | 'Restore' | 'Verify' | 'Prune' | 'GarbageCollect';
export type Consistency = 'app' | 'filesystem' | 'crash';
export type PointKind = 'Scheduled' | 'OnDemand';

export interface VaultInfo { id: string; name: string; subscription: string; redundancy: Redundancy; crossRegionRestore: boolean; createdAt: string }

/** `coffre vault show`: a vault with the state of its copies. */
export interface VaultDetails extends VaultInfo {
  /** Redundancy can change until the first item is protected; then it is locked. */
  redundancyLocked: boolean;
  /** GRS: what is still to copy to the secondary region (zeros for LRS and ZRS). */
  replication: { pendingObjects: number; pendingBytes: number; oldestPendingSeconds: number };
  /** ZRS: copies a zone missed and still has to receive. */
  zoneRepair: { pendingObjects: number; pendingBytes: number };
  /** The stores holding the vault's copies. */
  stores: { name: string; role: 'primary' | 'secondary' }[];
}

export interface ItemInfo { id: string; name: string; vault: string; machine: string; kind: string; policy: string; createdAt: string }

export interface PointInfo {
  id: string;
  item: string;
  vault: string;
  machine: string;
  /** What the item protects: "files" (file agent) or "vm" (disk/VM agent). */
  itemKind: string;
  time: string;
  kind: PointKind;
  consistency: Consistency;
  expiresAt: string;
  retainUntil: string | null;
  files: number;
  bytes: number;
  /** Database points only: Full, Differential or Log. */
  backupType?: DbBackupType;
  /** Log points: the first instant they make restorable, and the end of their range (exclusive). */
  from?: string | null;
  to?: string | null;
  /** The Full a Differential is based on; the Full (or Differential) a Log point continues. */
  basedOn?: string | null;
  /** Database points: WAL and chain details. */
  database?: DbPointMeta;
  /** GRS: whether every object of the point is in the secondary region (false for LRS and ZRS vaults). */
  replicated: boolean;
}

export interface JobProblem { code: string; message: string; path?: string }

export interface JobCounters {
  bytesScanned: number;
  bytesNew: number;
  bytesUploaded: number;
  filesScanned: number;
  filesChanged: number;
}

export interface JobInfo extends JobCounters {
  id: string;
  operation: Operation;
  status: JobStatus;
  item: string | null;
  vault: string;
  startTime: string;
  endTime: string | null;
  durationSeconds: number | null;
  pointId: string | null;
  errors: JobProblem[];
  warnings: JobProblem[];
  details: Record<string, unknown>;
}

export interface CredentialsFile {
  kind: 'coffre-vault-credentials';
  version: 1;
  server: string;
  vault: string;
  vaultId: string;
  secret: string;
  expiresAt: string;
  /** SHA-256 fingerprint of the vault's TLS certificate, pinned by the agent (absent over plain HTTP). */
  fingerprint?: string | null;
}

export interface RegisterResult { containerId: string; machine: string; vaultId: string; vault: string; token: string; wrappedKeys: unknown | null }

/**
 * What a file item backs up and how, stored with it by its last backup so that scheduled runs
 * do the same: folders, excludes, snapshot mode (auto|btrfs|lvm|zfs|none) and scripts.
 */
export interface FileSource {
  paths: string[];
  excludes?: string[];
  snapshot?: string;
  preScript?: string;
  postScript?: string;
  scriptTimeoutSeconds?: number;
  snapshotSize?: string;
}

export interface BackupStart { job: JobInfo; pointId: string; item: ItemInfo }

export interface BlobLocation { id: string; pack: string; offset: number; length: number }

/** A policy as the vault describes it; `policy` is the validated body (see src/policy/policy.ts). */
export interface PolicyInfo { name: string; vault: string; items: string[]; policy: unknown; updatedAt: string }

/** What a retention change does: points it deletes, and expiries it moves. */
export interface RetentionChange {
  deleted: { id: string; item: string; time: string; expiresAt: string }[];
  changed: { id: string; item: string; time: string; from: string; to: string; keptFor?: string[] }[];
}

// ---- access and protection ----

export type ProtectionState = 'Protected' | 'ProtectionStopped' | 'SoftDeleted';

export interface ItemStatus extends ItemInfo {
  state: ProtectionState;
  /** When the state last changed (null: protected since created). */
  stateSince: string | null;
  /** SoftDeleted only: when the item is purged for good. */
  purgeAt: string | null;
  points: number;
  lastBackup: string | null;
}

export interface SecurityInfo {
  vault: string;
  softDelete: { state: 'Enabled' | 'Disabled' | 'AlwaysOn'; days: number };
  immutability: 'Disabled' | 'Unlocked' | 'Locked';
  guard: string | null;
  guardWindowMinutes: number;
  softDeletedItems: number;
}

export interface MachineInfo { id: string; name: string; vault: string; items: number; registeredAt: string; hasKeys: boolean }

export interface PrincipalInfo { id: string; name: string; builtin: boolean; createdAt: string; roles: { role: string; scope: string }[] }

export interface AssignmentInfo { principal: string; role: string; scope: string; createdAt: string }

export interface GuardRequestInfo {
  id: string; vault: string; requester: string; operation: string; target: string; status: 'Pending' | 'Approved' | 'Used' | 'Expired';
  createdAt: string; expiresAt: string; approvedBy: string | null; approvedAt: string | null; usedAt: string | null;
}

export interface AuditEntry {
  seq: number;
  time: string;
  principal: string;
  operation: string;
  scope: string;
  target: string;
  result: 'Succeeded' | 'Refused' | 'Failed';
  code: string | null;
  details: Record<string, unknown>;
}

/** A built-in role and the semantic operations it permits. */
export interface RoleDefinition { role: string; operations: string[] }
export type DbBackupType = 'Full' | 'Differential' | 'Log';

/**
 * What the vault knows of a database point (PostgreSQL): the WAL it holds and where it sits in
 * its chain. Times are the database server's clock (ISO 8601, UTC).
 */
export interface DbPointMeta {
  type: DbBackupType;
  timeline: number;
  walSegmentSize: number;
  /** WAL segment numbers the point holds, first and last (a base: its start to stop segment). */
  firstSegment: number;
  lastSegment: number;
  /** Base backups: the backup's start and stop WAL positions ("X/Y"). */
  startLsn: string | null;
  stopLsn: string | null;
  /** Base backups: when pg_backup_stop returned; the earliest instant the base restores to. */
  consistentAt: string | null;
  /** Differential: its Full. Log: the base its chain starts from. */
  basedOn: string | null;
  /** Log points: their restorable range [from, to). */
  from: string | null;
  to: string | null;
}

/** A continuous span of time a database can be restored to, to the second; `to` is exclusive. */
export interface RestorableRange { from: string; to: string; timeline: number }
