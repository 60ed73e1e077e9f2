/**
 * What differs between the catalog's two engines, kept in this one file: the application's
 * queries are written once with Kysely and never ask which engine they run on, except through
 * the few functions here.
 *
 * SQLite (embedded default) has one writer: Kysely's SQLite driver runs every query of the
 * process on one connection, one transaction at a time, so a transaction that reads then writes
 * can never interleave with another. PostgreSQL runs transactions side by side (READ COMMITTED)
 * on a pool of connections, from several nodes: a read-then-write that must not interleave
 * takes a transaction-scoped advisory lock on a named key first (`lockKey`), released at commit
 * or rollback. Keys name what they protect ("vaults:<subscription>", "container:<id>", "job:<id>"),
 * so unrelated work never waits.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';

export type CatalogEngine = 'sqlite' | 'postgresql';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any schema: the engine does not depend on the tables
type AnyDb = Kysely<any>;

/** The engine a Kysely instance (or transaction) runs on, from its dialect's adapter. */
export function engineOf(db: AnyDb): CatalogEngine {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgresql' : 'sqlite';
}

/**
 * Inside a transaction: waits for and holds an exclusive lock on `key` until the transaction
 * ends. A no-op on SQLite, whose transactions are already exclusive (see above).
 */
export async function lockKey(tx: AnyDb, key: string): Promise<void> {
  if (engineOf(tx) !== 'postgresql') return;
  await sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(tx);
}

/** Column types that have no common name on both engines. */
export function columnTypes(db: AnyDb): { bytes: 'blob' | 'bytea'; serial: 'integer' | 'serial' } {
  return engineOf(db) === 'postgresql' ? { bytes: 'bytea', serial: 'serial' } : { bytes: 'blob', serial: 'integer' };
}

/** Makes a table append-only at the engine: updates and deletes of its rows are refused. */
export async function makeAppendOnly(db: AnyDb, table: string): Promise<void> {
  if (!/^[a-z_]+$/.test(table)) throw new Error(`not a table name: ${table}`);
  const message = `the ${table.replace(/_/g, ' ')} is append-only`;
  if (engineOf(db) === 'postgresql') {
    await sql.raw(`CREATE OR REPLACE FUNCTION ${table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${message}'; END $$`).execute(db);
    await sql.raw(`CREATE OR REPLACE TRIGGER ${table}_no_update BEFORE UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_append_only()`).execute(db);
    await sql.raw(`CREATE OR REPLACE TRIGGER ${table}_no_delete BEFORE DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_append_only()`).execute(db);
    return;
  }
  await sql.raw(`CREATE TRIGGER IF NOT EXISTS ${table}_no_update BEFORE UPDATE ON ${table} BEGIN SELECT RAISE(ABORT, '${message}'); END`).execute(db);
  await sql.raw(`CREATE TRIGGER IF NOT EXISTS ${table}_no_delete BEFORE DELETE ON ${table} BEGIN SELECT RAISE(ABORT, '${message}'); END`).execute(db);
}
