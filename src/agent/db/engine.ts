/**
 * The database engine as one module, so the CLI and the daemon load it (and the `pg` driver)
 * only for database work.
 */
import type { DbBackupType } from '../../core/api.js';
import { backupBase, type DbBackupOptions, type DbBackupResult } from './base-backup.js';
import { backupLog } from './log-backup.js';

export { backupBase, type DbBackupOptions, type DbBackupResult } from './base-backup.js';
export { backupLog } from './log-backup.js';
export { restoreDb, choosePlan, RESTORE_WAL_DIR, type DbRestoreResult } from './db-restore.js';
export { archiveWal } from './spool.js';
export { connect, serverFacts, readinessProblems, dataDirProblems, notReady, archiveCommandLine, archiveCommandFor, redact } from './connection.js';
export { saveDbConfig, loadDbConfig, requireDbConfig, listDbConfigs, checkDbName, type DbConfig } from './config.js';

export function backupDb(opts: DbBackupOptions, type: DbBackupType): Promise<DbBackupResult> {
  return type === 'Log' ? backupLog(opts) : backupBase(opts, type);
}
