/**
 * Versioned schema migrations, applied when a server starts, the same way on both engines.
 *
 * `schema_migrations` records every version applied. Version 1 is the baseline (schema.ts):
 * idempotent, and re-applied at every start so that a table appended to it reaches existing
 * catalogs too. Every later version is a one-time change, appended to MIGRATIONS and applied
 * once, in order, in the same transaction that records it.
 *
 * Several nodes may start together on one PostgreSQL catalog: the whole run holds one advisory
 * lock, so one node migrates and the others then find nothing to do. A catalog that a newer
 * Coffre migrated (a version this code does not know) is refused before anything is written:
 * an old node must not write rows a newer schema reads differently (`CatalogTooNew`).
 */
import { sql, type Kysely } from 'kysely';
import { CoffreError } from '../core/errors.js';
import { lockKey } from './engine.js';
import { migrate as baseline, type Database } from './schema.js';

export interface Migration {
  version: number;
  name: string;
  up(db: Kysely<Database>): Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'baseline', up: baseline },
  {
    version: 2,
    name: 'node leases',
    async up(db) {
      // Leases (src/vault/leases.ts): which node runs each once-across-nodes task, until when.
      await db.schema.createTable('leases').ifNotExists()
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('acquired_at', 'text', (c) => c.notNull())
        .execute();
      // Nodes sharing the catalog, and when each last said it was alive.
      await db.schema.createTable('nodes').ifNotExists()
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('heartbeat', 'text', (c) => c.notNull())
        .execute();
    },
  },
];

/** The schema version this code writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

interface MigrationsTable { schema_migrations: { version: number; name: string; applied_at: string } }

/** The highest version applied to a catalog, 0 for a new one. */
export async function schemaVersion(db: Kysely<Database>): Promise<number> {
  const m = db as unknown as Kysely<MigrationsTable>;
  const row = await m.selectFrom('schema_migrations').select((eb) => eb.fn.max('version').as('v')).executeTakeFirst();
  return Number(row?.v ?? 0);
}

/** Brings a catalog to SCHEMA_VERSION; refuses one that is newer. Returns the version it is at. */
export async function applyMigrations(db: Kysely<Database>, now: () => string = () => new Date().toISOString()): Promise<number> {
  return db.transaction().execute(async (tx) => {
    await lockKey(tx, 'coffre:migrations');
    await tx.schema.createTable('schema_migrations').ifNotExists()
      .addColumn('version', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('applied_at', 'text', (c) => c.notNull())
      .execute();
    const current = await schemaVersion(tx);
    if (current > SCHEMA_VERSION) {
      throw new CoffreError('CatalogTooNew', `the catalog is at schema version ${current}, newer than this Coffre knows (${SCHEMA_VERSION}): a newer version migrated it. Upgrade this node to the version the other nodes run; nothing was changed`);
    }
    const m = tx as unknown as Kysely<MigrationsTable>;
    await baseline(tx);
    for (const step of MIGRATIONS) {
      if (step.version <= current) continue;
      if (step.version > 1) await step.up(tx);
      await m.insertInto('schema_migrations').values({ version: step.version, name: step.name, applied_at: now() }).execute();
    }
    await sql`select 1`.execute(tx);
    return SCHEMA_VERSION;
  });
}

/** A newly opened catalog, migrated; closed again when its migration fails, so nothing is left open. */
export async function migrated(db: Kysely<Database>): Promise<Kysely<Database>> {
  try {
    await applyMigrations(db);
  } catch (e) {
    await db.destroy();
    throw e;
  }
  return db;
}
