/**
 * The scale-out catalog: a PostgreSQL database (15 or later) reached with the `pg` driver,
 * through the same Kysely queries as the SQLite file. Several `coffre server` nodes share it.
 *
 * Two conversions make PostgreSQL's answers look like SQLite's to the code above: 64-bit
 * integers (`bigint` columns, `count(*)`) and `numeric` (`sum(...)`) come back as JS numbers
 * rather than strings. Every such value in the catalog (byte counts, segment numbers) stays far
 * below 2^53, where a double is exact.
 */
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { CoffreError } from '../core/errors.js';
import { migrated } from './migrations.js';
import type { Database as Schema } from './schema.js';

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** Connections per node: enough for concurrent commits and uploads, few enough for 3+ nodes on a default max_connections of 100. */
export const POOL_SIZE = 16;

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** The URL with its password hidden, for logs and `server status`. */
export function redactUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]+:)[^@]*@/i, '$1***@');
}

export async function openPostgresCatalog(url: string): Promise<Kysely<Schema>> {
  const types = {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === INT8_OID || oid === NUMERIC_OID) return (v: string) => Number(v);
      return pg.types.getTypeParser(oid, format);
    },
  } as pg.CustomTypesConfig;
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, types, connectionTimeoutMillis: 15_000 });
  // An idle connection the server drops (a restart, a failover) is replaced; without a handler its error would end the process.
  pool.on('error', (e) => process.stderr.write(`${new Date().toISOString()} catalog connection lost: ${e.message}\n`));
  try {
    const client = await pool.connect();
    client.release();
  } catch (e) {
    await pool.end();
    throw new CoffreError('CatalogUnavailable', `cannot connect to the catalog at ${redactUrl(url)}: ${(e as Error).message}; check that PostgreSQL runs there and the URL's user, password and database`);
  }
  return migrated(new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) }));
}
