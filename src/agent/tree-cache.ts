/**
 * The local metadata cache, on disk: for each folder of the last committed backup, a signature
 * of its listing (names and stat keys of its entries), the pages it was stored as, and its
 * entries with their stat keys. A backup reads one folder's row at a time, so its memory does
 * not grow with the tree (the cache was one JSON document, held whole, before).
 *
 * One SQLite file per vault and item (better-sqlite3: synchronous calls, microseconds each).
 * A backup writes inside one transaction that commits only after its point did: a failed or
 * killed backup leaves the previous cache as it was. The cache is a hint; nothing it says is
 * used unless the vault still holds what it names. Damaged or locked, it is set aside: the
 * backup is slower, never wrong.
 */
import Database from 'better-sqlite3';
import { mkdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { compressChunk, decompressChunk } from '../core/compress.js';
import type { TreeEntry } from '../core/tree.js';

/** An entry as cached: its name, its stat key, and the entry itself (a folder's without pages). */
export type CachedEntry = [name: string, key: string, entry: TreeEntry];

export interface CachedFolder {
  sig: string;
  pages: string[];
  /** Files directly in the folder and their bytes, counted without decoding its entries. */
  files: number;
  bytes: number;
  /** Decoded on demand: a folder whose listing did not change never needs them. */
  entries(): CachedEntry[];
}

/** Version of the rows' format: a cache of another version is started afresh. */
const FORMAT = '1';

export class TreeCache {
  private readonly gen: number;
  private readonly select: Database.Statement<[string], { sig: string; pages: string; files: number; bytes: number; entries: Buffer }>;
  private readonly touch: Database.Statement<[number, string]>;
  private readonly upsert: Database.Statement<[string, number, string, string, number, number, Buffer]>;

  private constructor(private readonly db: Database.Database | null) {
    if (!db) {
      this.gen = 0;
      this.select = this.touch = this.upsert = null as never;
      return;
    }
    const row = db.prepare(`SELECT value FROM meta WHERE key = 'gen'`).get() as { value: string } | undefined;
    this.gen = Number(row?.value ?? 0) + 1;
    this.select = db.prepare('SELECT sig, pages, files, bytes, entries FROM folders WHERE path = ?');
    this.touch = db.prepare('UPDATE folders SET gen = ? WHERE path = ?');
    this.upsert = db.prepare('INSERT OR REPLACE INTO folders (path, gen, sig, pages, files, bytes, entries) VALUES (?, ?, ?, ?, ?, ?, ?)');
  }

  /**
   * Opens the cache of one item for one backup and starts its transaction. A cache another
   * backup of the same item holds, or one that cannot be read, gives an empty cache that
   * writes nothing.
   */
  static open(agentDir: string, vaultId: string, item: string): TreeCache {
    const dir = join(agentDir, 'cache');
    const name = createHash('sha256').update(`${vaultId}\0${item}`).digest('hex').slice(0, 24);
    const file = join(dir, `${name}.sqlite`);
    // The cache of earlier versions (one JSON document) is replaced by this one.
    rmSync(join(dir, `${name}.json`), { force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      let db: Database.Database | null = null;
      try {
        db = new Database(file, { timeout: 0 });
        db.pragma('journal_mode = WAL');
        // A hint: losing the last transaction on power loss costs one slower backup, not data.
        db.pragma('synchronous = NORMAL');
        db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
          CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, gen INTEGER NOT NULL, sig TEXT NOT NULL, pages TEXT NOT NULL,
            files INTEGER NOT NULL, bytes INTEGER NOT NULL, entries BLOB NOT NULL) WITHOUT ROWID;`);
        const format = db.prepare(`SELECT value FROM meta WHERE key = 'format'`).get() as { value: string } | undefined;
        db.exec('BEGIN IMMEDIATE');
        if (format?.value !== FORMAT) {
          db.exec(`DELETE FROM folders; DELETE FROM meta;`);
          db.prepare(`INSERT INTO meta (key, value) VALUES ('format', ?)`).run(FORMAT);
        }
        return new TreeCache(db);
      } catch (e) {
        db?.close();
        if ((e as { code?: string }).code === 'SQLITE_BUSY') return new TreeCache(null);
        // Anything else is damage: start afresh once.
        for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
      }
    }
    return new TreeCache(null);
  }

  folder(path: string): CachedFolder | null {
    if (!this.db) return null;
    const row = this.select.get(path);
    if (!row) return null;
    let decoded: CachedEntry[] | null = null;
    return {
      sig: row.sig,
      pages: JSON.parse(row.pages) as string[],
      files: row.files,
      bytes: row.bytes,
      entries: () => (decoded ??= JSON.parse(decompressChunk(row.entries[0]!, row.entries.subarray(1)).toString('utf8')) as CachedEntry[]),
    };
  }

  /** The folder did not change: its row stays, for this generation. */
  keep(path: string): void {
    this.touch?.run(this.gen, path);
  }

  put(path: string, sig: string, pages: string[], totals: { files: number; bytes: number }, entries: CachedEntry[]): void {
    if (!this.db) return;
    const { codec, data } = compressChunk(Buffer.from(JSON.stringify(entries)));
    this.upsert.run(path, this.gen, sig, JSON.stringify(pages), totals.files, totals.bytes, Buffer.concat([Uint8Array.of(codec), data]));
  }

  meta(key: string): string | undefined {
    return (this.db?.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db?.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(key, value);
  }

  /** After the point committed: folders not seen by this backup go, and the transaction commits. */
  commit(): void {
    if (!this.db) return;
    this.db.prepare('DELETE FROM folders WHERE gen <> ?').run(this.gen);
    this.setMeta('gen', String(this.gen));
    this.db.exec('COMMIT');
    this.db.close();
  }

  /** The backup failed: the cache stays as the last committed backup left it. */
  abandon(): void {
    if (!this.db?.open) return;
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.db.close();
  }
}
