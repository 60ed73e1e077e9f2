/**
 * Writes stored chunks at given offsets of files the caller has created: the restore's data
 * path (ranges of packs planned close together, fetched a few at a time into reused buffers,
 * opened, checked and written by the restore's worker threads), without the file tree logic of
 * a file restore. A database restore calls it once for its base files and once more for the
 * changed pages a differential writes over them.
 */
import type { ChunkRef } from '../../core/manifest.js';
import type { BlobLocation } from '../../core/api.js';
import type { KeySet } from '../../core/crypto.js';
import { CoffreError } from '../../core/errors.js';
import type { VaultClient } from '../client.js';
import { ChunkWriter, type WriteBlob, type WriteTarget } from '../chunk-writer.js';
import { DEFAULT_RANGE_LIMITS, planRanges, type PackRange } from '../pack-ranges.js';
import { fetchRanges } from '../range-fetch.js';

const FETCHES_IN_FLIGHT = 4;

/** One stored chunk to write: into `path` (bytes as latin1, created by the caller) at `offset`. */
export interface Piece { path: string; offset: number; ref: ChunkRef }

/** Where the chunks of a set of pieces lie in the vault; a missing one is refused before anything is written. */
export async function locatePieces(client: VaultClient, containerId: string, pieces: readonly Piece[], what: (id: string) => string): Promise<Map<string, BlobLocation>> {
  const ids = [...new Set(pieces.map((p) => p.ref[0]).filter((id): id is string => id !== null))];
  const out = new Map<string, BlobLocation>();
  for (let i = 0; i < ids.length; i += 50_000) for (const l of await client.locate(containerId, ids.slice(i, i + 50_000))) out.set(l.id, l);
  const missing = ids.filter((id) => !out.has(id));
  if (missing.length) {
    throw new CoffreError('ChunkMissing', `${missing.length} chunk(s) of ${what(missing[0]!)} are missing from the vault; nothing was written (run \`coffre verify\`)`, { missing: missing.slice(0, 20) });
  }
  return out;
}

/**
 * Writes every stored chunk of `pieces` (null ids are holes: the caller's files are sparse). Returns the bytes written.
 * `writer`: the caller's workers, kept open (a caller that started them early, or writes in several passes, pays
 * their start-up once); without one, workers are started and closed here.
 */
export async function writePieces(opts: {
  client: VaultClient; keys: KeySet; containerId: string; pieces: readonly Piece[]; locations: Map<string, BlobLocation>; onBytes?: (n: number) => void;
  writer?: ChunkWriter;
  /** The files already hold data where these pieces go (a differential's pages over its full's): zero blocks are written too. */
  overwrite?: boolean;
}): Promise<number> {
  const targets = new Map<string, WriteTarget[]>();
  const plain = new Map<string, number>();
  // Each file is named by a number in the workers' replies.
  const fileOf = new Map<string, number>();
  for (const p of opts.pieces) {
    const id = p.ref[0];
    if (!id) continue;
    let t = targets.get(id);
    if (!t) { targets.set(id, (t = [])); plain.set(id, p.ref[1]); }
    let file = fileOf.get(p.path);
    if (file === undefined) fileOf.set(p.path, (file = fileOf.size));
    t.push({ path: p.path, offset: p.offset, file, ...(opts.overwrite ? { dense: true } : {}) });
  }
  if (targets.size === 0) return 0;
  const ranges = planRanges([...targets.keys()].map((id) => opts.locations.get(id)!), (id) => plain.get(id) ?? 0);
  const writer = opts.writer ?? new ChunkWriter(opts.keys);
  const free: ArrayBuffer[] = [];
  const given = new Map<PackRange, ArrayBuffer>();
  let written = 0;
  try {
    await fetchRanges({
      client: opts.client, containerId: opts.containerId, ranges, inFlight: FETCHES_IN_FLIGHT,
      bufferFor: (r) => {
        const i = free.findIndex((b) => b.byteLength >= r.length);
        const b = i >= 0 ? free.splice(i, 1)[0]! : new ArrayBuffer(Math.max(r.length, DEFAULT_RANGE_LIMITS.maxStored));
        given.set(r, b);
        return new Uint8Array(b);
      },
      onDamage: (r, err) => { throw new CoffreError('ChecksumMismatch', `a pack range the restore needs is damaged or missing (${err.message}); run \`coffre verify\``); },
      onRange: async (r, data) => {
        let buffer = given.get(r)!;
        given.delete(r);
        if (data.buffer !== buffer) {
          if (buffer.byteLength < data.length) buffer = new ArrayBuffer(data.length);
          data.copy(new Uint8Array(buffer));
        }
        const blobs: WriteBlob[] = r.blobs.map((b) => ({ id: b.id, offset: b.offset - r.offset, length: b.length, plainLength: plain.get(b.id) ?? 0, targets: targets.get(b.id)! }));
        const result = await writer.write(buffer, data.length, blobs);
        free.push(result.buffer);
        if (result.damaged.length) throw new CoffreError('ChecksumMismatch', `chunk ${r.blobs[result.damaged[0]!]!.id.slice(0, 16)} failed its checksum; the restore stopped (run \`coffre verify\`)`);
        // A database folder is restored whole or not at all: one file that cannot be written stops it.
        if (result.failed.length) throw new CoffreError('Internal', `a file of the restored database could not be written (${result.failed[0]!.message}); free space or fix the target, then restore again`);
        written += result.written;
        opts.onBytes?.(result.written);
      },
    });
  } finally {
    if (!opts.writer) await writer.close();
  }
  return written;
}
