/**
 * A real PostgreSQL server for tests: `initdb` in a temporary folder owned by the unprivileged
 * `postgres` system user (PostgreSQL refuses to run as root), listening on a free loopback
 * port with its socket in that folder. Every cluster started here is stopped when the test
 * process exits, also when a test fails or throws before its own cleanup ran.
 *
 * Other tests reuse it (a catalog engine on PostgreSQL, say): `startPostgres()` gives a running
 * server and a connection URL; `close()` stops it and removes its folder.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, readFileSync, appendFileSync } from 'node:fs';
import { freePort } from './ports.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PG_BIN = process.env.COFFRE_PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const pgBin = (name: string) => join(PG_BIN, name);

export interface PgUser { uid: number; gid: number; name: string }

/** The system user PostgreSQL runs as (Debian's package creates `postgres`). */
export function postgresUser(): PgUser {
  const name = process.env.COFFRE_PG_USER ?? 'postgres';
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { uid, gid, name };
}

/** A folder under the system's temporary folder, owned by the PostgreSQL user. */
export function pgTempDir(prefix = 'coffre-pg-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const u = postgresUser();
  chownSync(dir, u.uid, u.gid);
  return dir;
}

/** Runs a PostgreSQL program as the PostgreSQL user; throws with its output when it fails. */
export function runAsPostgres(program: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): string {
  const u = postgresUser();
  const r = spawnSync(program, args, {
    uid: u.uid, gid: u.gid, cwd: opts.cwd ?? '/', encoding: 'utf8',
    env: { PATH: `${PG_BIN}:/usr/bin:/bin`, LANG: 'C.UTF-8', HOME: '/tmp', ...opts.env },
  });
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const running = new Map<string, number>();
// On exit only synchronous work runs: an immediate shutdown (SIGQUIT) of every postmaster still up.
process.on('exit', () => {
  for (const pid of running.values()) {
    try { process.kill(pid, 'SIGQUIT'); } catch { /* already gone */ }
  }
});

export interface PgCluster {
  dataDir: string;
  /** The folder holding the data folder, the socket and the log; owned by the PostgreSQL user. */
  root: string;
  port: number;
  /** Superuser connection over TCP on loopback (trust authentication). */
  url: string;
  log: string;
  start(): Promise<void>;
  /** `fast` (default) or `immediate` (a crash, for tests of recovery). */
  stop(mode?: 'fast' | 'immediate'): void;
  /** Appends settings to postgresql.conf (a restart applies those that need one). */
  configure(settings: Record<string, string | number>): void;
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Stops the server and removes its folder. */
  close(): Promise<void>;
}

function postmasterPid(dataDir: string): number | null {
  const file = join(dataDir, 'postmaster.pid');
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function quoteConf(v: string | number): string {
  return typeof v === 'number' ? String(v) : `'${v.replace(/'/g, "''")}'`;
}

/** A cluster around an existing data folder (e.g. one a restore wrote), started on its own port. */
export function clusterAt(root: string, dataDir: string, port: number): PgCluster {
  const log = join(root, `postgres-${port}.log`);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const cluster: PgCluster = {
    dataDir, root, port, url, log,
    async start() {
      try {
        // fsync off here too for a data folder a restore wrote (its settings are its source's).
        runAsPostgres(pgBin('pg_ctl'), ['-D', dataDir, '-l', log, '-w', '-t', '120', '-o', `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
      } catch (e) {
        const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-30).join('\n') : '(no log)';
        throw new Error(`${(e as Error).message}\nserver log (${log}):\n${tail}`);
      }
      const pid = postmasterPid(dataDir);
      if (pid) running.set(dataDir, pid);
    },
    stop(mode = 'fast') {
      if (!postmasterPid(dataDir)) return;
      try {
        runAsPostgres(pgBin('pg_ctl'), ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
      } finally {
        running.delete(dataDir);
      }
    },
    configure(settings) {
      appendFileSync(join(dataDir, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${quoteConf(v)}\n`).join(''));
    },
    async query(sql, params) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return (await client.query(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
    async close() {
      try {
        cluster.stop('immediate');
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
  return cluster;
}

/**
 * Creates and starts a cluster: `initdb` (with data checksums) in a fresh temporary folder,
 * `settings` appended to postgresql.conf, on a free port.
 */
export async function startPostgres(opts: { settings?: Record<string, string | number>; initdbArgs?: string[] } = {}): Promise<PgCluster> {
  const root = pgTempDir();
  const dataDir = join(root, 'data');
  runAsPostgres(pgBin('initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--data-checksums', '-E', 'UTF8', '--locale=C', ...(opts.initdbArgs ?? [])]);
  const cluster = clusterAt(root, dataDir, await freePort());
  // A test server never outlives a power loss: without its own fsyncs its checkpoints (every
  // backup starts with one) take milliseconds instead of seconds on a shared disk. Coffre's
  // fsyncs (the WAL spool, the vault) are untouched.
  cluster.configure({ fsync: 'off', ...opts.settings });
  await cluster.start();
  return cluster;
}

/** Starts a child process as the PostgreSQL user and resolves with its exit (for long programs such as pgbench). */
export function spawnAsPostgres(program: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const u = postgresUser();
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { uid: u.uid, gid: u.gid, cwd: '/', env: { PATH: `${PG_BIN}:/usr/bin:/bin`, LANG: 'C.UTF-8', HOME: '/tmp' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
