/**
 * better-sqlite3 under Kysely with its statements kept: Kysely prepares every query it runs,
 * and preparing costs about as much as running the small lookups that make most of a server's
 * queries (a token, a machine's vault, a pack). Statements are reused by their SQL text, the
 * most recent few hundred kept. Kysely runs one query at a time on the connection, so a reused
 * statement is never busy, except an iteration (a streamed query), which gets a statement of
 * its own.
 */
import type Database from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

export const KEPT_STATEMENTS = 256;

export function keepingStatements(db: Database.Database, kept = KEPT_STATEMENTS): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  const prepared = (sql: string): Database.Statement => {
    const hit = cache.get(sql);
    if (hit) {
      // Most recently used last: the first entry is the one to drop.
      cache.delete(sql);
      cache.set(sql, hit);
      return hit;
    }
    const stmt = db.prepare(sql);
    cache.set(sql, stmt);
    if (cache.size > kept) cache.delete(cache.keys().next().value!);
    return stmt;
  };
  return {
    close: () => { cache.clear(); db.close(); },
    prepare(sql: string): SqliteStatement {
      const stmt = prepared(sql);
      return {
        reader: stmt.reader,
        all: (parameters) => stmt.all(parameters),
        run: (parameters) => stmt.run(parameters),
        iterate: (parameters) => db.prepare(sql).iterate(parameters),
      };
    },
  };
}
