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
}

export interface RegisterResult { containerId: string; machine: string; vaultId: string; vault: string; token: string; wrappedKeys: unknown | null }

export interface BackupStart { job: JobInfo; pointId: string; item: ItemInfo }

export interface BlobLocation { id: string; pack: string; offset: number; length: number }

/** A policy as the vault describes it; `policy` is the validated body (see src/policy/policy.ts). */
export interface PolicyInfo { name: string; vault: string; items: string[]; policy: unknown; updatedAt: string }

/** What a retention change does: points it deletes, and expiries it moves. */
export interface RetentionChange {
  deleted: { id: string; item: string; time: string; expiresAt: string }[];
  changed: { id: string; item: string; time: string; from: string; to: string }[];
}
