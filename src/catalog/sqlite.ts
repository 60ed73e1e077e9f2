/** The embedded catalog: one SQLite file, opened for durability (WAL, synchronous=FULL). */
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { migrated } from './migrations.js';
import { keepingStatements } from './sqlite-statements.js';
import type { Database as Schema } from './schema.js';

export async function openSqliteCatalog(file: string): Promise<Kysely<Schema>> {
  const sqlite = new Database(file);
  sqlite.pragma('journal_mode = WAL');
  // A committed point must survive power loss: FULL syncs the WAL on every commit.
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('busy_timeout = 10000');
  // A large transaction (the index of a pack of many small chunks) grows the WAL; once
  // checkpointed it is cut back to this size instead of keeping its largest size for good.
  sqlite.pragma('journal_size_limit = 4194304');
  sqlite.pragma('foreign_keys = ON');
  return migrated(new Kysely<Schema>({ dialect: new SqliteDialect({ database: keepingStatements(sqlite) }) }));
}
