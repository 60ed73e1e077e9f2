/**
 * What of a PostgreSQL data folder a backup copies, as pure rules on paths (relative to the
 * data folder), after PostgreSQL's own list for base backups: not the WAL (it comes from the
 * archive), not the server's runtime state (pid file, shared memory, statistics scratch,
 * notifications, temporary files and relations, relation caches), not the main forks of
 * unlogged tables (recovery rebuilds them from their init fork). Folders whose contents are
 * skipped are kept, empty, since the server expects them.
 */

/** Top-level folders copied without their contents. */
const EMPTY_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
/** Top-level files never copied (a backup label is written from what pg_backup_stop returns). */
const SKIP_TOP = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'backup_label.old', 'tablespace_map', 'tablespace_map.old', 'recovery.signal', 'standby.signal']);
/** Folders created by a restore although nothing of them is copied. */
export const RESTORE_DIRS = ['pg_wal/archive_status'];

const RELATION = /^(\d+)(_(fsm|vm|init))?(\.\d+)?$/;
const MAIN_FORK = /^\d+(\.\d+)?$/;
const TEMP_RELATION = /^t\d+_\d+/;

export type PathRule = 'copy' | 'skip';

/**
 * Whether `rel` (components under the data folder) is copied. `siblings` are the names in the
 * same folder, to recognise unlogged relations (those with an `_init` fork).
 */
export function dataPathRule(rel: readonly string[], siblings: ReadonlySet<string>): PathRule {
  const name = rel[rel.length - 1]!;
  if (rel.length === 1 && SKIP_TOP.has(name)) return 'skip';
  if (rel.length >= 2 && EMPTY_DIRS.has(rel[0]!)) return 'skip';
  if (name.startsWith('pgsql_tmp') || name === 'pg_internal.init') return 'skip';
  if (isRelationFolder(rel.slice(0, -1))) {
    if (TEMP_RELATION.test(name)) return 'skip';
    const m = RELATION.exec(name);
    if (m && m[3] !== 'init' && siblings.has(`${m[1]}_init`)) return 'skip';
  }
  return 'copy';
}

/** base/<database oid> and global hold relation files. */
function isRelationFolder(dir: readonly string[]): boolean {
  return (dir.length === 2 && dir[0] === 'base' && /^\d+$/.test(dir[1]!)) || (dir.length === 1 && dir[0] === 'global');
}

/** A relation's main fork (or one of its 1 GiB segments): read by page in a differential. */
export function isPagedRelation(rel: readonly string[]): boolean {
  return isRelationFolder(rel.slice(0, -1)) && MAIN_FORK.test(rel[rel.length - 1]!);
}
