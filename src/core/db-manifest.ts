/**
 * The manifest of a PostgreSQL point. It is sealed with the container's key and bound to its
 * point id by its own associated data (not the file or VM manifest's), so a database manifest
 * can never be read as another kind of point or moved to another point.
 *
 * `entries` is a file tree in the file manifest's format (validated by the same code) with two
 * roots: `data/` (the cluster's data folder, as read) and `wal/` (WAL segments and timeline
 * history files). A base backup (Full, Differential) also carries the `backup_label` and
 * `tablespace_map` that `pg_backup_stop` returned: without them a restore would start replay
 * from the wrong checkpoint.
 *
 * A Differential holds, for a relation file that existed in its Full, only the 8 KiB pages
 * changed since the Full started (`deltas`): the restore writes the Full's file, then these
 * extents over it, then cuts the file to `size`. Every other file of a Differential is whole
 * in `entries` (unchanged ones cost nothing: their chunks are already stored). A file of the
 * Full that is in neither list no longer exists.
 */
import { z } from 'zod';
import { open, seal, type KeySet } from './crypto.js';
import { compressChunk, decompressChunk } from './compress.js';
import { CoffreError } from './errors.js';
import { isSafeComponent, decodeName, validateManifest, type ChunkRef, type Entry } from './manifest.js';
import type { DbBackupType } from './api.js';

/** Pages of a relation file written over the Full's copy: [byte offset, chunks of contiguous pages]. */
export type Extent = [number, ChunkRef[]];

export interface DeltaFile {
  /** Path from the point's root; starts with "data". */
  path: string[];
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  /** The file's size now (it may have grown or shrunk since the Full). */
  size: number;
  extents: Extent[];
}

export interface DbManifest {
  version: 1;
  kind: 'postgres';
  item: string;
  time: string;
  type: DbBackupType;
  /** Base backups: what pg_backup_stop returned. */
  backupLabel?: string;
  tablespaceMap?: string;
  entries: Entry[];
  deltas: DeltaFile[];
}

export const PAGE_SIZE = 8192;

function ad(pointId: string): Buffer {
  return Buffer.from(`coffre:db-manifest:v1:${pointId}`);
}

const utf8 = new TextEncoder();

export function sealDbManifest(keys: KeySet, pointId: string, m: DbManifest): Buffer {
  const { codec, data } = compressChunk(utf8.encode(JSON.stringify(m)));
  return Buffer.concat([Uint8Array.of(codec), seal(keys.encKey, data, ad(pointId))]);
}

/** Opens and validates; null when it is not a database manifest of this point (other kind, other point, other keys). */
export function openDbManifest(keys: KeySet, pointId: string, stored: Buffer): DbManifest | null {
  const opened = open(keys.encKey, stored.subarray(1), ad(pointId));
  if (!opened) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(decompressChunk(stored[0] ?? 0, opened).toString('utf8'));
  } catch {
    throw new CoffreError('ManifestInvalid', `the database manifest of point ${pointId} cannot be decoded`);
  }
  return validateDbManifest(parsed);
}

const chunkRef = z.tuple([z.string().regex(/^[0-9a-f]{64}$/).nullable(), z.number().int().positive()]);
const headerSchema = z.object({
  version: z.literal(1),
  kind: z.literal('postgres'),
  item: z.string().min(1),
  time: z.string(),
  type: z.enum(['Full', 'Differential', 'Log']),
  backupLabel: z.string().optional(),
  tablespaceMap: z.string().optional(),
  entries: z.array(z.unknown()),
  deltas: z.array(z.strictObject({
    path: z.array(z.string()).min(2),
    mode: z.number().int().nonnegative(),
    uid: z.number().int().nonnegative(),
    gid: z.number().int().nonnegative(),
    mtime: z.string().regex(/^-?\d+$/),
    size: z.number().int().nonnegative(),
    extents: z.array(z.tuple([z.number().int().nonnegative(), z.array(chunkRef)])),
  })),
});

/**
 * Checks everything a restore relies on before a byte is written: the tree as a file manifest
 * does (safe names, parents first), base backups carry their label, and every extent is
 * page-aligned, inside its file and in increasing order.
 */
export function validateDbManifest(input: unknown): DbManifest {
  const bad = (why: string) => new CoffreError('ManifestInvalid', `database manifest refused: ${why}`);
  const parsed = headerSchema.safeParse(input);
  if (!parsed.success) throw bad(`${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`);
  const m = parsed.data;
  validateManifest({ version: 1, item: m.item, time: m.time, entries: m.entries });
  for (const e of m.entries as Entry[]) {
    if (e.path[0] !== 'data' && e.path[0] !== 'wal') throw bad(`an entry lies outside data/ and wal/`);
  }
  if (m.type !== 'Log' && m.backupLabel === undefined) throw bad('a base backup without its backup_label');
  const seen = new Set((m.entries as Entry[]).map((e) => e.path.join('\0/')));
  for (const d of m.deltas) {
    if (m.type !== 'Differential') throw bad('page extents in a point that is not a differential');
    if (d.path[0] !== 'data' || !d.path.every((p) => isSafeComponent(decodeName(p)))) throw bad('a page extent file has an unsafe path');
    const key = d.path.join('\0/');
    if (seen.has(key)) throw bad(`${d.path.join('/')} is listed twice`);
    seen.add(key);
    let end = 0;
    for (const [offset, chunks] of d.extents) {
      const length = chunks.reduce((n, c) => n + c[1], 0);
      if (offset % PAGE_SIZE !== 0 || length % PAGE_SIZE !== 0 || length === 0) throw bad(`${d.path.join('/')}: an extent is not made of whole pages`);
      if (offset < end || offset + length > d.size) throw bad(`${d.path.join('/')}: extents overlap or pass the end of the file`);
      end = offset + length;
    }
  }
  return m as DbManifest;
}

/** Every distinct chunk id the point references: the tree's and the extents'. */
export function dbReferencedChunks(m: DbManifest): string[] {
  const ids = new Set<string>();
  for (const e of m.entries) if (e.type === 'file') for (const [id] of e.chunks) if (id) ids.add(id);
  for (const d of m.deltas) for (const [, chunks] of d.extents) for (const [id] of chunks) if (id) ids.add(id);
  return [...ids];
}
