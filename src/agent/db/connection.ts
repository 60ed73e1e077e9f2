/**
 * The agent's connection to a PostgreSQL server (the `pg` driver; the agent connects to its
 * own machine's server and outwards to the vault, nothing connects in), and the checks made
 * before a database is protected: version, `wal_level`, archiving through Coffre, the role's
 * rights, the data folder. Each problem comes with the exact line or statement that fixes it.
 */
import { access, constants as FS } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { CoffreError } from '../../core/errors.js';

export interface ServerFacts {
  versionNum: number;
  version: string;
  inRecovery: boolean;
  walLevel: string;
  archiveMode: string;
  archiveCommand: string;
  archiveLibrary: string;
  fullPageWrites: string;
  walSegmentSize: number;
  superuser: boolean;
  role: string;
  canBackup: boolean;
  canReadSettings: boolean;
  /** Null when the role may not read it. */
  dataDirectory: string | null;
  archiver: { failedCount: number; lastFailedWal: string | null; lastFailedTime: string | null; lastArchivedTime: string | null };
}

export interface Problem { what: string; fix: string }

/**
 * The command PostgreSQL runs for each WAL file: `coffre db archive-wal` through its own small
 * entry point (bin/coffre-archive-wal.js: it starts in half the time of the whole CLI), with
 * absolute paths, as the server's environment may lack ours.
 */
export function archiveCommandFor(spoolDir: string): string {
  const bin = fileURLToPath(new URL('../../../../bin/coffre-archive-wal.js', import.meta.url));
  return `"${process.execPath}" "${bin}" --spool "${spoolDir}" "%p" "%f"`;
}

/** The postgresql.conf line that sets it (the value in single quotes, inner quotes doubled). */
export function archiveCommandLine(spoolDir: string): string {
  return `archive_command = '${archiveCommandFor(spoolDir).replace(/'/g, "''")}'`;
}

export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'coffre' });
  // A dropped connection must not crash the agent: the query in flight fails and says why.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw new CoffreError('DatabaseUnreachable', `cannot connect to PostgreSQL at ${redact(url)}: ${(e as Error).message}; check --connection (host, port, user) and that the server runs`);
  }
  return client;
}

/** The connection URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

export async function serverFacts(client: pg.Client): Promise<ServerFacts> {
  const r = (await client.query(`
    SELECT current_setting('server_version_num')::int AS version_num, current_setting('server_version') AS version,
      pg_is_in_recovery() AS in_recovery, current_setting('wal_level') AS wal_level, current_setting('archive_mode') AS archive_mode,
      current_setting('archive_command') AS archive_command, coalesce(current_setting('archive_library', true), '') AS archive_library,
      current_setting('full_page_writes') AS full_page_writes,
      (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
      (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser, current_user AS role,
      has_function_privilege('pg_backup_start(text, boolean)', 'execute') AND has_function_privilege('pg_backup_stop(boolean)', 'execute')
        AND has_function_privilege('pg_switch_wal()', 'execute') AS can_backup,
      pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') AS can_read_settings,
      a.failed_count, a.last_failed_wal, a.last_failed_time::text AS last_failed_time, a.last_archived_time::text AS last_archived_time
    FROM pg_stat_archiver a`)).rows[0] as Record<string, unknown>;
  const canReadSettings = Boolean(r.superuser) || Boolean(r.can_read_settings);
  const dataDirectory = canReadSettings ? String((await client.query(`SELECT current_setting('data_directory') AS d`)).rows[0].d) : null;
  return {
    versionNum: Number(r.version_num), version: String(r.version), inRecovery: Boolean(r.in_recovery), walLevel: String(r.wal_level),
    archiveMode: String(r.archive_mode), archiveCommand: String(r.archive_command), archiveLibrary: String(r.archive_library),
    fullPageWrites: String(r.full_page_writes), walSegmentSize: Number(r.wal_segment_size), superuser: Boolean(r.superuser), role: String(r.role),
    canBackup: Boolean(r.superuser) || Boolean(r.can_backup), canReadSettings, dataDirectory,
    archiver: {
      failedCount: Number(r.failed_count), lastFailedWal: r.last_failed_wal as string | null,
      lastFailedTime: r.last_failed_time as string | null, lastArchivedTime: r.last_archived_time as string | null,
    },
  };
}

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

/**
 * What stands between this server and point-in-time backups by Coffre, each with its fix.
 * Empty when the database can be protected. Pure: takes the facts and the intended spool.
 */
export function readinessProblems(f: ServerFacts, spoolDir: string, dataDir?: string): Problem[] {
  const out: Problem[] = [];
  if (f.versionNum < 150000) {
    out.push({ what: `PostgreSQL ${f.version} is too old: Coffre uses pg_backup_start/pg_backup_stop (PostgreSQL 15 and later)`, fix: 'upgrade the server to PostgreSQL 15 or later' });
    return out;
  }
  if (f.inRecovery) out.push({ what: 'the server is a standby (in recovery): Coffre backs up the primary', fix: 'protect the primary server' });
  if (f.walLevel === 'minimal') out.push({ what: 'wal_level is minimal: the WAL cannot rebuild a backup', fix: "wal_level = 'replica'   (postgresql.conf; restart the server)" });
  if (f.archiveMode === 'off') out.push({ what: 'archive_mode is off: WAL is not archived, so no log backup and no point-in-time restore', fix: "archive_mode = 'on'   (postgresql.conf; restart the server)" });
  if (f.archiveLibrary !== '') out.push({ what: `archive_library is set (${f.archiveLibrary}): archive_command is then ignored`, fix: "archive_library = ''   (postgresql.conf; reload)" });
  if (!(/coffre-archive-wal|db archive-wal/.test(f.archiveCommand) && f.archiveCommand.includes(`"${spoolDir}"`))) {
    out.push({
      what: f.archiveCommand === '' || f.archiveCommand === '(disabled)' ? 'archive_command is not set: WAL is not archived through Coffre' : `archive_command does not archive through Coffre into ${spoolDir} (it is: ${f.archiveCommand})`,
      fix: `${archiveCommandLine(spoolDir)}   (postgresql.conf; then SELECT pg_reload_conf())`,
    });
  }
  if (f.fullPageWrites !== 'on') out.push({ what: 'full_page_writes is off: pages torn while copied could not be repaired', fix: "full_page_writes = 'on'   (postgresql.conf; reload)" });
  if (!f.canBackup) {
    out.push({ what: `role ${f.role} may not run pg_backup_start, pg_backup_stop and pg_switch_wal`, fix: `GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean), pg_switch_wal() TO ${quoteIdent(f.role)};` });
  }
  if (!f.canReadSettings) out.push({ what: `role ${f.role} may not read the server's settings (data_directory)`, fix: `GRANT pg_read_all_settings TO ${quoteIdent(f.role)};` });
  if (dataDir && f.dataDirectory && f.dataDirectory !== dataDir) {
    out.push({ what: `--data-dir ${dataDir} is not this server's data folder (${f.dataDirectory})`, fix: `give --data-dir ${f.dataDirectory}, or the connection of the server that uses ${dataDir}` });
  }
  return out;
}

/** The agent reads the data folder itself (it runs on the database's machine). */
export async function dataDirProblems(dataDir: string): Promise<Problem[]> {
  try {
    await access(dataDir, FS.R_OK | FS.X_OK);
    await access(`${dataDir}/global/pg_control`, FS.R_OK);
    return [];
  } catch (e) {
    return [{ what: `the agent cannot read the data folder ${dataDir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, fix: 'run the agent as root or as the database\'s system user (e.g. postgres)' }];
  }
}

export function notReady(name: string, problems: Problem[]): CoffreError {
  const lines = problems.map((p) => `  - ${p.what}\n    fix: ${p.fix}`).join('\n');
  return new CoffreError('DatabaseNotReady', `database ${name} cannot be protected yet:\n${lines}\nthen run the command again`, { problems });
}
