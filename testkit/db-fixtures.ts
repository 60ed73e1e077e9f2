/**
 * Helpers for database backup tests: a PostgreSQL cluster ready for Coffre (archiving into a
 * spool through the real `coffre db archive-wal`), a workload that writes rows whose commit
 * time PostgreSQL records, and a check that a restored data folder starts, is promoted, and
 * holds exactly the rows committed up to an instant.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import pg from 'pg';
import { archiveCommandLine } from '../src/agent/db/connection.js';
import { clusterAt, pgTempDir, startPostgres, type PgCluster } from './postgres.js';
import { freePort } from './ports.js';

/** Settings of a source cluster: WAL for replay, commit times recorded (the workload's stamps). */
export const SOURCE_SETTINGS = { wal_level: 'replica', track_commit_timestamp: 'on', max_wal_size: '256MB', checkpoint_timeout: '30min' } as const;

export function archiveSettings(spoolDir: string): Record<string, string> {
  const line = archiveCommandLine(spoolDir);
  return { archive_mode: 'on', archive_command: line.slice(line.indexOf("'") + 1, line.lastIndexOf("'")).replace(/''/g, "'") };
}

/** A cluster with archiving into `spoolDir` (a folder it owns beside its data folder). */
export async function archivingCluster(): Promise<{ cluster: PgCluster; spoolDir: string }> {
  const cluster = await startPostgres({ settings: { ...SOURCE_SETTINGS } });
  const spoolDir = join(cluster.root, 'spool');
  cluster.configure(archiveSettings(spoolDir));
  cluster.stop();
  await cluster.start();
  return { cluster, spoolDir };
}

export const WORKLOAD_TABLE = `CREATE TABLE IF NOT EXISTS events (id bigserial PRIMARY KEY, stamped_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text NOT NULL)`;

/** Inserts one row per transaction every `intervalMs` until stopped; each row's commit time is PostgreSQL's. */
export class Workload {
  private running = true;
  private done: Promise<void>;
  inserted = 0;

  constructor(url: string, intervalMs = 40) {
    this.done = (async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(WORKLOAD_TABLE);
        while (this.running) {
          await c.query(`INSERT INTO events (payload) VALUES ($1)`, [`row ${this.inserted} ${'x'.repeat(200)}`]);
          this.inserted++;
          await sleep(intervalMs);
        }
      } finally {
        await c.end();
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/** Ids of the rows committed at or before `at` on the source, by PostgreSQL's commit time stamps. */
export async function committedBy(source: PgCluster, at: string): Promise<number[]> {
  const rows = await source.query<{ id: string }>(`SELECT id FROM events WHERE pg_xact_commit_timestamp(xmin) <= $1::timestamptz ORDER BY id`, [at]);
  return rows.map((r) => Number(r.id));
}

/** The second after `iso`, as a whole second (what users type). */
export function nextWholeSecond(iso: string): string {
  return new Date(Math.floor(Date.parse(iso) / 1000) * 1000 + 1000).toISOString();
}

/**
 * Starts a restored data folder on a free port, waits for recovery to end (promotion), runs
 * `check`, then stops it and removes its folder, also when the check fails.
 */
export async function withRestored<T>(restoreRoot: string, dataDir: string, check: (c: PgCluster) => Promise<T>): Promise<T> {
  const c = clusterAt(restoreRoot, dataDir, await freePort());
  try {
    await c.start();
    for (let i = 0; ; i++) {
      const [r] = await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec');
      if (!r!.rec) break;
      if (i > 600) throw new Error('the restored server stayed in recovery for 60 s');
      await sleep(100);
    }
    return await check(c);
  } finally {
    await c.close();
  }
}

/** A folder owned by the PostgreSQL user, for a restore's target. */
export function restoreRoot(): string {
  return pgTempDir('coffre-pg-restore-');
}
