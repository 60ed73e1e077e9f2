/**
 * Upgrade of a data folder written before redundancy: its packs, manifests and reference
 * lists lie in one folder store, `DATA/store`, with no vault in their keys. At start, each
 * object is copied into the store of the vault it belongs to (following the vault's
 * redundancy: a GRS vault's objects are then replicated, a ZRS vault's go to every zone),
 * and removed from the old folder once the copy is durable. A crash in the middle is
 * harmless: the next start copies what is left (an object already copied whole is not
 * copied again). Then every point gets its recorded hashes and every vault its records.
 *
 * Objects no vault claims (uploads whose backup never committed) are left in place.
 */
import { rm, stat } from 'node:fs/promises';
import { CoffreError } from '../core/errors.js';
import { LocalFolderStore } from '../store/local-folder.js';
import { manifestKey, refsKey, sha256, type DataContext } from './data.js';
import { writeAllRecords } from './records.js';

export const LEGACY_STORE_DIR = 'store';

export interface Migration { moved: number; bytes: number; leftInPlace: number; points: number; vaults: number }

async function exists(dir: string): Promise<boolean> {
  try {
    return (await stat(dir)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export async function migrateLegacyStore(ctx: DataContext, dir: string, log: (line: string) => void): Promise<Migration | null> {
  if (!(await exists(dir))) return null;
  const legacy = new LocalFolderStore(dir, 'old store');
  const out: Migration = { moved: 0, bytes: 0, leftInPlace: 0, points: 0, vaults: 0 };
  const vaultOf = new Map<string, string | null>();
  const lookup = async (kind: 'packs' | 'points', id: string): Promise<string | null> => {
    const k = `${kind}:${id}`;
    if (vaultOf.has(k)) return vaultOf.get(k)!;
    let vault: string | null = null;
    if (kind === 'packs') {
      vault = (await ctx.db.selectFrom('containers').select('vault_id').where('id', '=', id).executeTakeFirst())?.vault_id ?? null;
    } else {
      vault = (await ctx.db.selectFrom('points').select('vault_id').where('id', '=', id).executeTakeFirst())?.vault_id
        ?? (await ctx.db.selectFrom('jobs').select('vault_id').where('point_id', '=', id).executeTakeFirst())?.vault_id ?? null;
    }
    vaultOf.set(k, vault);
    return vault;
  };
  log(`upgrading ${dir}: moving its objects into the vaults' stores`);
  for await (const key of legacy.list('')) {
    const [kind, id] = key.split('/');
    const vaultId = (kind === 'packs' || kind === 'points') && id ? await lookup(kind, id) : null;
    if (!vaultId) { out.leftInPlace++; continue; }
    const store = await ctx.stores.byId(vaultId);
    const data = await legacy.get(key);
    const there = await store.stat(key);
    if (!there || there.size !== data.length) await store.put(key, data);
    await legacy.delete(key);
    out.moved++;
    out.bytes += data.length;
    if (out.moved % 1000 === 0) log(`  ${out.moved} objects moved`);
  }
  // Hashes for points committed before they were recorded.
  const points = await ctx.db.selectFrom('points').leftJoin('point_objects', 'point_objects.point_id', 'points.id')
    .select(['points.id', 'points.vault_id']).where('point_objects.point_id', 'is', null).execute();
  for (const pt of points) {
    const store = await ctx.stores.byId(pt.vault_id);
    let manifest: Buffer;
    let refs: Buffer;
    try {
      manifest = await store.get(manifestKey(pt.id));
      refs = await store.get(refsKey(pt.id));
    } catch (e) {
      if (!(e instanceof CoffreError)) throw e;
      log(`  point ${pt.id}: ${e.message}; \`coffre verify\` will report it`);
      continue;
    }
    // Its objects were just queued for the paired region (GRS): it is replicated once they are copied.
    const v = await ctx.db.selectFrom('vaults').select('redundancy').where('id', '=', pt.vault_id).executeTakeFirstOrThrow();
    const seq = await ctx.stores.queue.watermark(pt.vault_id, ctx.stores.secondaryTargets(v.redundancy));
    await ctx.db.insertInto('point_objects').values({ point_id: pt.id, manifest_sha256: sha256(manifest), refs_sha256: sha256(refs), replication_seq: seq }).execute();
    out.points++;
  }
  for (const v of await ctx.db.selectFrom('vaults').select('id').execute()) {
    await writeAllRecords(ctx, v.id);
    out.vaults++;
  }
  if (out.leftInPlace === 0) await rm(dir, { recursive: true, force: true });
  log(`upgrade done: ${out.moved} objects moved (${out.bytes} bytes), ${out.points} points and ${out.vaults} vaults recorded in the stores${out.leftInPlace ? `; ${out.leftInPlace} objects of no vault left in ${dir}` : `; ${dir} removed`}`);
  return out;
}
