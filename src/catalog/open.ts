/**
 * Chooses the catalog's engine, once, where the server starts: a `postgresql://` URL opens
 * PostgreSQL (scale-out), anything else keeps the embedded SQLite file in the data folder.
 */
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { CoffreError } from '../core/errors.js';
import type { CatalogEngine } from './engine.js';
import { schemaVersion } from './migrations.js';
import { isPostgresUrl, openPostgresCatalog, redactUrl } from './postgres.js';
import type { Database } from './schema.js';
import { openSqliteCatalog } from './sqlite.js';

export const SQLITE_CATALOG_FILE = 'catalog.sqlite';

export interface OpenCatalog {
  db: Kysely<Database>;
  engine: CatalogEngine;
  /** Where it is, safe to print (no password). */
  location: string;
  schemaVersion(): Promise<number>;
}

/** `url`: a `postgresql://` URL, or undefined for the SQLite file under `dataDir`. */
export async function openCatalog(url: string | undefined, dataDir: string): Promise<OpenCatalog> {
  if (url !== undefined && !isPostgresUrl(url)) {
    throw new CoffreError('InvalidArgument', `--catalog ${url} is not a PostgreSQL URL: write postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave it out for the SQLite file in the data folder`);
  }
  const db = url ? await openPostgresCatalog(url) : await openSqliteCatalog(join(dataDir, SQLITE_CATALOG_FILE));
  return {
    db,
    engine: url ? 'postgresql' : 'sqlite',
    location: url ? redactUrl(url) : join(dataDir, SQLITE_CATALOG_FILE),
    schemaVersion: () => schemaVersion(db),
  };
}
