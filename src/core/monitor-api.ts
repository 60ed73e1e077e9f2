/**
 * The JSON shapes of the Backup center: item health, alerts, reports, storage history and the
 * requests the agents carry out. Shared by the vault, the agent, the CLI and the dashboard's
 * browser code (it is compiled for the browser too), so it holds types and constants only.
 */
import type { JobStatus, Operation } from './api.js';

export type Health = 'healthy' | 'warning' | 'critical';

/**
 * Recovery point objective: whether the item's last successful backup is as recent as its
 * schedule allows. `dueBy` is the latest scheduled run whose start window has closed; a backup
 * at or after it meets the objective.
 */
export interface RpoStatus {
  state: 'compliant' | 'breached' | 'not-due' | 'unscheduled';
  dueBy: string | null;
  lastSuccess: string | null;
  /** How far behind the objective the item is, in seconds (0 when compliant). */
  lagSeconds: number;
}

export interface ItemHealthStatus {
  id: string;
  name: string;
  vault: string;
  machine: string;
  kind: string;
  policy: string;
  createdAt: string;
  /** Protected, or stopped (ProtectionStopped with its data kept) or SoftDeleted: then no objective applies. */
  protection: string;
  health: Health;
  /** Why the item is not healthy, one line each (empty when healthy). */
  reasons: string[];
  lastBackup: { jobId: string; status: JobStatus; startTime: string; endTime: string | null } | null;
  lastSuccess: string | null;
  nextRun: string | null;
  rpo: RpoStatus;
  points: number;
  /** Bytes of the latest point: the data this item protects. */
  protectedBytes: number;
  backupRequestedAt: string | null;
}

export type AlertRule = 'JobFailed' | 'MissedSchedule' | 'RpoBreach' | 'VerifyFailed' | 'StorageAboveThreshold' | 'ReplicationLag';
export const ALERT_RULES: readonly AlertRule[] = ['JobFailed', 'MissedSchedule', 'RpoBreach', 'VerifyFailed', 'StorageAboveThreshold', 'ReplicationLag'];
export type AlertSeverity = 'critical' | 'warning';

export interface AlertInfo {
  id: string;
  rule: AlertRule;
  severity: AlertSeverity;
  state: 'Active' | 'Resolved';
  vault: string | null;
  item: string | null;
  summary: string;
  details: Record<string, unknown>;
  raisedAt: string;
  updatedAt: string;
  resolvedAt: string | null;
  /** How many times the condition was seen again while active (a failed job each night counts once each). */
  occurrences: number;
}

export interface WebhookConfig { url: string; secret?: string }

export interface AlertSettings {
  webhooks: WebhookConfig[];
  /** Stored bytes above which a vault raises StorageAboveThreshold: a default, and per vault (by vault name). */
  storageThresholdBytes: number | null;
  vaultStorageThresholdBytes: Record<string, number>;
  /**
   * Seconds the oldest copy still owed to a GRS vault's paired region may wait before the vault
   * raises ReplicationLag (null: never). Settings saved before the rule existed read as the default.
   */
  replicationLagSeconds: number | null;
  disabledRules: AlertRule[];
}

/** What a webhook receives, as a JSON POST, once per state change (retried; `id` is the same on every try). */
export interface AlertNotification {
  id: string;
  event: 'fired' | 'resolved';
  alert: AlertInfo;
  sentAt: string;
}

export interface NotificationInfo {
  id: string; alertId: string; event: 'fired' | 'resolved'; url: string; attempts: number;
  nextAttemptAt: string; deliveredAt: string | null; gaveUpAt: string | null; lastError: string | null; createdAt: string;
}

export interface StorageSample { time: string; storedBytes: number; points: number; protectedBytes: number }

/** A store that holds a vault's objects: "REGION/ZONE", in the primary region or the paired (secondary) one. */
export interface VaultCopy { name: string; role: 'primary' | 'secondary' }

/** What a GRS vault's paired region still lacks. */
export interface ReplicationState { pendingObjects: number; pendingBytes: number; oldestPendingSeconds: number }

export interface VaultUsage {
  vault: string;
  /** Bytes of the vault's packs, one copy (each store in `copies` holds them once its copy is made). */
  storedBytes: number;
  points: number;
  items: number;
  protectedBytes: number;
  redundancy: string;
  copies: VaultCopy[];
  /** GRS vaults only; null otherwise. */
  replication: ReplicationState | null;
  history: StorageSample[];
}

export interface Overview {
  now: string;
  items: Record<Health, number>;
  jobsLast24h: Partial<Record<JobStatus, number>>;
  running: number;
  activeAlerts: AlertInfo[];
  vaults: VaultUsage[];
}

export interface BackupCounts { total: number; succeeded: number; withWarnings: number; failed: number }

/** One row of a report, for a vault or one of its items, over the report's period. */
export interface ReportRow {
  scope: 'vault' | 'item';
  vault: string;
  item: string | null;
  machine: string | null;
  kind: string | null;
  policy: string | null;
  backups: BackupCounts;
  /** Succeeded (with or without warnings) over ended backups; null when none ended. */
  successRate: number | null;
  /** Size of the data protected: the latest point's bytes at the end of the period (summed for a vault). */
  protectedBytes: number;
  bytesScanned: number;
  bytesNew: number;
  bytesUploaded: number;
  /** bytesScanned / bytesNew of the period's backups: how much deduplication spared. */
  dedupRatio: number | null;
  /** bytesNew / bytesUploaded: how much compression spared of what was new. */
  compressionRatio: number | null;
  points: number;
  /** Vault rows: stored bytes at the start and end of the period, and the growth between. */
  storedBytesStart: number | null;
  storedBytesEnd: number | null;
  storedGrowthBytes: number | null;
  lastBackup: string | null;
}

export interface Report { from: string; to: string; generatedAt: string; rows: ReportRow[] }

export type RestoreRequestState = 'Pending' | 'InProgress' | 'Completed' | 'CompletedWithWarnings' | 'Failed';

export interface RestoreRequestInfo {
  id: string;
  vault: string;
  item: string;
  machine: string;
  pointId: string;
  target: string;
  paths: string[];
  overwrite: 'skip' | 'replace' | 'rename';
  requestedBy: string;
  requestedAt: string;
  state: RestoreRequestState;
  jobId: string | null;
  claimedAt: string | null;
  endedAt: string | null;
  error: string | null;
}

export interface JobFilter { status?: JobStatus; operation?: Operation; item?: string; vault?: string; limit?: number }
