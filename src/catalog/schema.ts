/**
 * The catalog's tables, written once with Kysely's schema builder so that the same code runs
 * on SQLite (embedded default) and PostgreSQL (scale-out). Times are ISO 8601 UTC strings,
 * which sort correctly as text on both engines.
 */
import { sql, type Generated, type Kysely } from 'kysely';
import { migrateBackupServer, type BackupServerTables } from './schema-backup-server.js';
import { columnTypes, makeAppendOnly } from './engine.js';

export interface VaultRow { id: string; name: string; subscription: string; redundancy: string; created_at: string }
export interface PolicyRow { id: string; vault_id: string; name: string; body: string; updated_at: string }
export interface CredentialRow { id: string; vault_id: string; secret_hash: string; expires_at: string; created_at: string }
export interface ContainerRow { id: string; vault_id: string; name: string; wrapped_keys: string | null; created_at: string }
export interface AgentKeyRow { token_hash: string; container_id: string; created_at: string }
export interface ItemRow { id: string; vault_id: string; container_id: string; name: string; kind: string; policy_id: string; created_at: string }
export interface PointRow {
  id: string; vault_id: string; item_id: string; container_id: string; job_id: string;
  time: string; kind: string; consistency: string; expires_at: string; retain_until: string | null;
  files: number; bytes: number; chunk_count: number;
}
export interface JobRow {
  id: string; vault_id: string; item_id: string | null; container_id: string | null; operation: string; status: string;
  start_time: string; end_time: string | null; heartbeat: string;
  bytes_scanned: number; bytes_new: number; bytes_uploaded: number; files_scanned: number; files_changed: number;
  errors: string; warnings: string; point_id: string | null; details: string;
}
export interface PackRow { id: string; container_id: string; size: number; blob_count: number; created_at: string }
export interface BlobRow { container_id: string; id: string; pack_id: string; offset: number; length: number; checksum: string }

/**
 * A tree page's references (src/core/tree.ts): its stored clear-text prefix, as read from its
 * pack. `verified` is set once every id it names was found stored, by the commit of a point
 * that reaches it: a verified page's whole subtree is stored.
 */
export interface TreeRow { container_id: string; id: string; refs: Buffer; verified: number }

/** Per-item scheduling state: what the agent backs up on schedule, and the last run handed out. */
export interface ScheduleRow { item_id: string; source: string; last_run: string | null }
/** Vault-wide maintenance bookkeeping (daily prune and GC). */
export interface MaintenanceRow { vault_id: string; last_daily: string | null }
/**
 * Copies the redundant stores still have to make (src/store/copies.ts): GRS copies to the
 * paired region, zone copies a ZRS write missed. In the catalog so that several servers
 * sharing it share the queue; `id` only grows, so "nothing queued up to id N" is a watermark.
 */
export interface CopyQueueRow {
  id: number; vault_id: string; target: string; key: string; op: string; bytes: number;
  queued_at: string; attempts: number; next_try_at: string; last_error: string | null;
}
/** What a point's objects must hash to, and the copy queue's watermark at its commit (GRS). */
export interface PointObjectsRow { point_id: string; manifest_sha256: string; refs_sha256: string; replication_seq: number }
/** Storage settings of a vault beyond its redundancy. */
export interface VaultStorageRow { vault_id: string; cross_region_restore: number }

/** A person or program that signs in with an API key (stored hashed); `builtin` marks the admin token's principal. */
export interface PrincipalRow { id: string; name: string; key_hash: string; builtin: number; created_at: string }
/** A built-in role given to a principal at a scope: "/", "/subscriptions/S" or "/subscriptions/S/vaults/V". */
export interface RoleAssignmentRow { id: string; principal_id: string; role: string; scope: string; created_at: string }
/** A vault's security settings; a vault without a row has the defaults (soft delete Enabled 14 days, mutable, no guard). */
export interface VaultSecurityRow {
  vault_id: string; soft_delete_state: string; soft_delete_days: number; immutability: string;
  guard_principal_id: string | null; guard_window_minutes: number; updated_at: string;
}
/** An item's protection state; an item without a row is Protected. `purge_at` is set while SoftDeleted. */
export interface ItemProtectionRow { item_id: string; state: string; changed_at: string; purge_at: string | null }
/** A request to run a guarded operation, approved (or not) by the vault's guard, used at most once. */
export interface GuardRequestRow {
  id: string; vault_id: string; requester_id: string; operation: string; target: string; digest: string; status: string;
  created_at: string; expires_at: string; approved_by: string | null; approved_at: string | null; used_at: string | null;
}
/** An on-demand backup a principal asked for; the item's agent runs it on its next poll. */
export interface BackupRequestRow { item_id: string; requested_at: string; retain_until: string | null; requested_by: string }
/** The audit log: one row per mutating call, never updated or deleted. */
export interface AuditRow {
  seq: Generated<number>; time: string; principal: string; principal_id: string | null; operation: string;
  scope: string; vault_id: string | null; target: string; result: string; code: string | null; details: string;
}
/** A database point's WAL and chain facts (see DbPointMeta in core/api.ts); one row per PostgreSQL point. */
export interface DbPointRow {
  point_id: string; item_id: string; type: string; timeline: number; wal_segment_size: number;
  first_segment: number; last_segment: number; start_lsn: string | null; stop_lsn: string | null;
  consistent_at: string | null; based_on: string | null; from_time: string | null; to_time: string | null;
}
/** Per database item and backup type (Full, Differential, Log): the last scheduled run handed out. */
export interface DbScheduleRow { item_id: string; type: string; last_run: string }
/** A restore asked for from the dashboard or the CLI, carried out by the item's agent (it connects outward only). */
export interface RestoreRequestRow {
  id: string; vault_id: string; item_id: string; container_id: string; point_id: string; target: string; paths: string; overwrite: string;
  requested_by: string; requested_at: string; state: string; job_id: string | null; claimed_at: string | null; ended_at: string | null; error: string | null;
}
/** One alert: at most one Active row per (rule, key) — the de-duplication — then Resolved for good. */
export interface AlertRow {
  id: string; rule: string; key: string; severity: string; state: string; vault_id: string | null; item_id: string | null;
  summary: string; details: string; raised_at: string; updated_at: string; resolved_at: string | null; occurrences: number;
}
/** The webhook outbox: one row per state change and webhook, retried until delivered or given up. */
export interface AlertNotificationRow {
  id: string; alert_id: string; event: string; url: string; payload: string; attempts: number; next_attempt_at: string;
  delivered_at: string | null; gave_up_at: string | null; last_error: string | null; created_at: string;
}
/** Server-wide alert settings (one row, id "default"): webhooks, thresholds, disabled rules. */
export interface AlertSettingsRow { id: string; body: string; updated_at: string }
/** Stored bytes of a vault over time, sampled by the maintenance tick for charts and reports. */
export interface StorageSampleRow { vault_id: string; time: string; stored_bytes: number; points: number; protected_bytes: number }

/** A once-across-nodes task's lease (src/vault/leases.ts): the node holding it until `expires_at`. */
export interface LeaseRow { name: string; holder: string; expires_at: string; acquired_at: string }
/** A server node sharing the catalog, and when it last said it was alive. */
export interface NodeRow { id: string; url: string; started_at: string; heartbeat: string }

export interface Database extends BackupServerTables {
  leases: LeaseRow;
  nodes: NodeRow;
  db_points: DbPointRow;
  db_schedules: DbScheduleRow;
  schedules: ScheduleRow;
  maintenance: MaintenanceRow;
  vaults: VaultRow;
  policies: PolicyRow;
  credentials: CredentialRow;
  containers: ContainerRow;
  agent_keys: AgentKeyRow;
  items: ItemRow;
  points: PointRow;
  jobs: JobRow;
  packs: PackRow;
  blobs: BlobRow;
  trees: TreeRow;
  principals: PrincipalRow;
  role_assignments: RoleAssignmentRow;
  vault_security: VaultSecurityRow;
  item_protection: ItemProtectionRow;
  guard_requests: GuardRequestRow;
  backup_requests: BackupRequestRow;
  audit_log: AuditRow;
  restore_requests: RestoreRequestRow;
  alerts: AlertRow;
  alert_notifications: AlertNotificationRow;
  alert_settings: AlertSettingsRow;
  storage_samples: StorageSampleRow;
  copy_queue: Omit<CopyQueueRow, 'id'> & { id: Generated<number> };
  point_objects: PointObjectsRow;
  vault_storage: VaultStorageRow;
}

/**
 * The baseline schema (version 1 in migrations.ts): idempotent, re-applied at every start, so
 * tables appended here appear in existing catalogs. Changes that are not `IF NOT EXISTS`
 * (altering a column, moving data) are versioned migrations in migrations.ts instead.
 */
export async function migrate(db: Kysely<Database>): Promise<void> {
  const s = db.schema;
  // The few column types named differently by SQLite and PostgreSQL (bytes, auto-numbered keys).
  const t = columnTypes(db);
  await s.createTable('vaults').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('subscription', 'text', (c) => c.notNull())
    .addColumn('redundancy', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('vaults_sub_name', ['subscription', 'name'])
    .execute();
  await s.createTable('policies').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('policies_vault_name', ['vault_id', 'name'])
    .execute();
  await s.createTable('credentials').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
    .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('containers').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('wrapped_keys', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('containers_vault_name', ['vault_id', 'name'])
    .execute();
  await s.createTable('agent_keys').ifNotExists()
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('container_id', 'text', (c) => c.notNull().references('containers.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('items').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
    .addColumn('container_id', 'text', (c) => c.notNull().references('containers.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('items_vault_name', ['vault_id', 'name'])
    .execute();
  await s.createTable('points').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
    .addColumn('item_id', 'text', (c) => c.notNull().references('items.id'))
    .addColumn('container_id', 'text', (c) => c.notNull())
    .addColumn('job_id', 'text', (c) => c.notNull())
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('consistency', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('retain_until', 'text')
    .addColumn('files', 'integer', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('chunk_count', 'integer', (c) => c.notNull())
    .execute();
  await s.createIndex('points_item_time').ifNotExists().on('points').columns(['item_id', 'time']).execute();
  await s.createTable('jobs').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull())
    .addColumn('item_id', 'text')
    .addColumn('container_id', 'text')
    .addColumn('operation', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('start_time', 'text', (c) => c.notNull())
    .addColumn('end_time', 'text')
    .addColumn('heartbeat', 'text', (c) => c.notNull())
    .addColumn('bytes_scanned', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_new', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_uploaded', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('files_scanned', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('files_changed', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('errors', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('warnings', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('point_id', 'text')
    .addColumn('details', 'text', (c) => c.notNull().defaultTo('{}'))
    .execute();
  await s.createIndex('jobs_vault_start').ifNotExists().on('jobs').columns(['vault_id', 'start_time']).execute();
  await s.createTable('packs').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('container_id', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('blob_count', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('blobs').ifNotExists()
    .addColumn('container_id', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('pack_id', 'text', (c) => c.notNull())
    .addColumn('offset', 'bigint', (c) => c.notNull())
    .addColumn('length', 'integer', (c) => c.notNull())
    .addColumn('checksum', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('blobs_pk', ['container_id', 'id'])
    .execute();
  await s.createIndex('blobs_pack').ifNotExists().on('blobs').column('pack_id').execute();
  await s.createTable('schedules').ifNotExists()
    .addColumn('item_id', 'text', (c) => c.primaryKey())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('last_run', 'text')
    .execute();
  await s.createTable('maintenance').ifNotExists()
    .addColumn('vault_id', 'text', (c) => c.primaryKey())
    .addColumn('last_daily', 'text')
    .execute();
  await s.createTable('trees').ifNotExists()
    .addColumn('container_id', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('refs', t.bytes, (c) => c.notNull())
    .addColumn('verified', 'integer', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('trees_pk', ['container_id', 'id'])
    .execute();
  await s.createTable('principals').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('builtin', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('role_assignments').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('principal_id', 'text', (c) => c.notNull().references('principals.id'))
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('role_assignments_unique', ['principal_id', 'role', 'scope'])
    .execute();
  await s.createTable('vault_security').ifNotExists()
    .addColumn('vault_id', 'text', (c) => c.primaryKey())
    .addColumn('soft_delete_state', 'text', (c) => c.notNull())
    .addColumn('soft_delete_days', 'integer', (c) => c.notNull())
    .addColumn('immutability', 'text', (c) => c.notNull())
    .addColumn('guard_principal_id', 'text')
    .addColumn('guard_window_minutes', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('item_protection').ifNotExists()
    .addColumn('item_id', 'text', (c) => c.primaryKey())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('changed_at', 'text', (c) => c.notNull())
    .addColumn('purge_at', 'text')
    .execute();
  await s.createTable('guard_requests').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull())
    .addColumn('requester_id', 'text', (c) => c.notNull())
    .addColumn('operation', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('approved_by', 'text')
    .addColumn('approved_at', 'text')
    .addColumn('used_at', 'text')
    .execute();
  await s.createTable('backup_requests').ifNotExists()
    .addColumn('item_id', 'text', (c) => c.primaryKey())
    .addColumn('requested_at', 'text', (c) => c.notNull())
    .addColumn('retain_until', 'text')
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .execute();
  // seq is an INTEGER PRIMARY KEY (SQLite numbers rows itself, in insertion order) or a serial (PostgreSQL).
  await s.createTable('audit_log').ifNotExists()
    .addColumn('seq', t.serial, (c) => c.primaryKey())
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('principal', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text')
    .addColumn('operation', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('vault_id', 'text')
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('result', 'text', (c) => c.notNull())
    .addColumn('code', 'text')
    .addColumn('details', 'text', (c) => c.notNull())
    .execute();
  await s.createIndex('audit_log_time').ifNotExists().on('audit_log').column('time').execute();
  await s.createTable('db_points').ifNotExists()
    .addColumn('point_id', 'text', (c) => c.primaryKey())
    .addColumn('item_id', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('timeline', 'integer', (c) => c.notNull())
    .addColumn('wal_segment_size', 'bigint', (c) => c.notNull())
    .addColumn('first_segment', 'bigint', (c) => c.notNull())
    .addColumn('last_segment', 'bigint', (c) => c.notNull())
    .addColumn('start_lsn', 'text')
    .addColumn('stop_lsn', 'text')
    .addColumn('consistent_at', 'text')
    .addColumn('based_on', 'text')
    .addColumn('from_time', 'text')
    .addColumn('to_time', 'text')
    .execute();
  await s.createIndex('db_points_item').ifNotExists().on('db_points').columns(['item_id', 'first_segment']).execute();
  await s.createTable('db_schedules').ifNotExists()
    .addColumn('item_id', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('last_run', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('db_schedules_pk', ['item_id', 'type'])
    .execute();
  await s.createTable('copy_queue').ifNotExists()
    .addColumn('id', t.serial, (c) => (t.serial === 'serial' ? c.primaryKey() : c.primaryKey().autoIncrement()))
    .addColumn('vault_id', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('op', 'text', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('queued_at', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_try_at', 'text', (c) => c.notNull())
    .addColumn('last_error', 'text')
    .execute();
  await s.createIndex('copy_queue_due').ifNotExists().on('copy_queue').columns(['next_try_at', 'id']).execute();
  await s.createIndex('copy_queue_vault').ifNotExists().on('copy_queue').columns(['vault_id', 'target', 'id']).execute();
  await s.createTable('point_objects').ifNotExists()
    .addColumn('point_id', 'text', (c) => c.primaryKey())
    .addColumn('manifest_sha256', 'text', (c) => c.notNull())
    .addColumn('refs_sha256', 'text', (c) => c.notNull())
    .addColumn('replication_seq', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await s.createTable('vault_storage').ifNotExists()
    .addColumn('vault_id', 'text', (c) => c.primaryKey())
    .addColumn('cross_region_restore', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await migrateMonitoring(db);
  await migrateBackupServer(db);
  // The audit log is append-only at the engine too, not only by the vault's code.
  await makeAppendOnly(db, 'audit_log');
  await sql`select 1`.execute(db);
}

/** Tables of the Backup center: restores the agents carry out, alerts, storage history. */
async function migrateMonitoring(db: Kysely<Database>): Promise<void> {
  const s = db.schema;
  await s.createTable('restore_requests').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull())
    .addColumn('item_id', 'text', (c) => c.notNull())
    .addColumn('container_id', 'text', (c) => c.notNull())
    .addColumn('point_id', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('paths', 'text', (c) => c.notNull())
    .addColumn('overwrite', 'text', (c) => c.notNull())
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('job_id', 'text')
    .addColumn('claimed_at', 'text')
    .addColumn('ended_at', 'text')
    .addColumn('error', 'text')
    .execute();
  await s.createIndex('restore_requests_container_state').ifNotExists().on('restore_requests').columns(['container_id', 'state']).execute();
  await s.createTable('alerts').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('rule', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('vault_id', 'text')
    .addColumn('item_id', 'text')
    .addColumn('summary', 'text', (c) => c.notNull())
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('raised_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('resolved_at', 'text')
    .addColumn('occurrences', 'integer', (c) => c.notNull().defaultTo(1))
    .execute();
  // The de-duplication holds across server nodes: one Active alert per rule and key, enforced by the engine.
  await s.createIndex('alerts_one_active').ifNotExists().unique().on('alerts').columns(['rule', 'key']).where(sql.ref('state'), '=', 'Active').execute();
  await s.createIndex('alerts_raised').ifNotExists().on('alerts').column('raised_at').execute();
  await s.createTable('alert_notifications').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('alert_id', 'text', (c) => c.notNull())
    .addColumn('event', 'text', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'text', (c) => c.notNull())
    .addColumn('delivered_at', 'text')
    .addColumn('gave_up_at', 'text')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createIndex('alert_notifications_due').ifNotExists().on('alert_notifications').columns(['delivered_at', 'gave_up_at', 'next_attempt_at']).execute();
  await s.createTable('alert_settings').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('storage_samples').ifNotExists()
    .addColumn('vault_id', 'text', (c) => c.notNull())
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('stored_bytes', 'bigint', (c) => c.notNull())
    .addColumn('points', 'integer', (c) => c.notNull())
    .addColumn('protected_bytes', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('storage_samples_pk', ['vault_id', 'time'])
    .execute();
  // Health and alert rules ask for an item's latest jobs of one operation.
  await s.createIndex('jobs_item_operation_end').ifNotExists().on('jobs').columns(['item_id', 'operation', 'end_time']).execute();
}
