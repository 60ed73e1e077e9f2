/**
 * The catalog tables of the two-tier architecture (the backup server, issue 19), kept apart
 * from schema.ts so that they read as one subject; `migrate` creates them after its own.
 *
 * In a vault: the backup servers registered with it, their keys, and the machines (containers)
 * each one copies online. In a backup server (itself a vault service): its protection groups,
 * their members, and its settings (the bandwidth schedule). Every catalog has all the tables;
 * each side uses its own. The online copies themselves are jobs (operation `OnlineCopy` on the
 * backup server, `Backup` of the copied point in the vault).
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** A backup server registered with this vault; `report` is the JSON of its last state report. */
export interface ServerRow { id: string; vault_id: string; name: string; created_at: string; report: string | null; reported_at: string | null }
/** A backup server's key (stored hashed): a principal of kind "server". */
export interface ServerKeyRow { token_hash: string; server_id: string; created_at: string }
/** A machine whose points a backup server copies into this vault; the server may write to it. */
export interface ServerContainerRow { container_id: string; server_id: string; attached_at: string }
/** A protection group of a backup server: its short-term policy (local) and online policy (a policy of the upstream vault, by name). */
export interface ProtectionGroupRow { id: string; vault_id: string; name: string; short_term_policy_id: string; online_policy: string; created_at: string }
/** An item in a protection group (at most one group per item); `last_online_run` is the last online run handled. */
export interface GroupMemberRow { item_id: string; group_id: string; added_at: string; last_online_run: string | null }
/** A backup server's settings by name (e.g. "throttle": its bandwidth schedule as JSON). */
export interface BackupServerSettingRow { name: string; value: string }

export interface BackupServerTables {
  servers: ServerRow;
  server_keys: ServerKeyRow;
  server_containers: ServerContainerRow;
  protection_groups: ProtectionGroupRow;
  group_members: GroupMemberRow;
  backup_server_settings: BackupServerSettingRow;
}

export async function migrateBackupServer(db: Kysely<Database>): Promise<void> {
  const s = db.schema;
  await s.createTable('servers').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('report', 'text')
    .addColumn('reported_at', 'text')
    .addUniqueConstraint('servers_vault_name', ['vault_id', 'name'])
    .execute();
  await s.createTable('server_keys').ifNotExists()
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('server_id', 'text', (c) => c.notNull().references('servers.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('server_containers').ifNotExists()
    .addColumn('container_id', 'text', (c) => c.primaryKey())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('attached_at', 'text', (c) => c.notNull())
    .execute();
  await s.createTable('protection_groups').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('vault_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    // No foreign key: a policy or vault that goes is reported by the group, not refused by SQL.
    .addColumn('short_term_policy_id', 'text', (c) => c.notNull())
    .addColumn('online_policy', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('protection_groups_vault_name', ['vault_id', 'name'])
    .execute();
  await s.createTable('group_members').ifNotExists()
    .addColumn('item_id', 'text', (c) => c.primaryKey())
    .addColumn('group_id', 'text', (c) => c.notNull().references('protection_groups.id'))
    .addColumn('added_at', 'text', (c) => c.notNull())
    .addColumn('last_online_run', 'text')
    .execute();
  await s.createTable('backup_server_settings').ifNotExists()
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();
}
