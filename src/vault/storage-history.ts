/**
 * What each vault stores, now and over time. The bytes of a vault are the sizes of its packs
 * as the catalog indexes them: one copy (each of the vault's stores holds them once, see
 * storage-copies.ts), known without listing a store; the maintenance tick records a sample at most once an
 * hour, so the overview can draw a vault's storage over time and a report can tell its growth
 * over a period. Samples are small (one row per vault per hour) and kept for good.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import type { StorageSample } from '../core/monitor-api.js';

export const SAMPLE_INTERVAL_MS = 60 * 60 * 1000;

export interface VaultNow { id: string; name: string; redundancy: string; storedBytes: number; points: number; items: number; protectedBytes: number }

export async function vaultsNow(db: Kysely<Database>, vaultIds: Set<string> | null): Promise<VaultNow[]> {
  let q = db.selectFrom('vaults').select(['id', 'name', 'redundancy']);
  if (vaultIds) q = q.where('id', 'in', vaultIds.size ? [...vaultIds] : ['']);
  const vaults = await q.orderBy('name').execute();
  const stored = new Map((await db.selectFrom('packs').innerJoin('containers', 'containers.id', 'packs.container_id')
    .select(['containers.vault_id as v', (eb) => eb.fn.sum<number>('packs.size').as('n')]).groupBy('containers.vault_id').execute())
    .map((r) => [r.v, Number(r.n)]));
  const points = new Map((await db.selectFrom('points').select(['vault_id as v', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('vault_id').execute())
    .map((r) => [r.v, Number(r.n)]));
  const items = new Map((await db.selectFrom('items').select(['vault_id as v', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('vault_id').execute())
    .map((r) => [r.v, Number(r.n)]));
  // The data a vault protects: the latest point of each of its items.
  const protectedRows = await db.selectFrom('points as p').select(['p.vault_id as v', 'p.bytes'])
    .where('p.time', '=', (eb) => eb.selectFrom('points as q').select((q) => q.fn.max('q.time').as('m')).whereRef('q.item_id', '=', 'p.item_id'))
    .execute();
  const protectedBytes = new Map<string, number>();
  for (const r of protectedRows) protectedBytes.set(r.v, (protectedBytes.get(r.v) ?? 0) + Number(r.bytes));
  return vaults.map((v) => ({
    id: v.id, name: v.name, redundancy: v.redundancy, storedBytes: stored.get(v.id) ?? 0, points: points.get(v.id) ?? 0, items: items.get(v.id) ?? 0, protectedBytes: protectedBytes.get(v.id) ?? 0,
  }));
}

/** Records a sample of every vault whose latest is older than the interval. */
export async function sampleStorage(ctx: { db: Kysely<Database>; clock: Clock }, intervalMs = SAMPLE_INTERVAL_MS): Promise<number> {
  const now = ctx.clock.now();
  const last = new Map((await ctx.db.selectFrom('storage_samples').select(['vault_id', (eb) => eb.fn.max('time').as('t')]).groupBy('vault_id').execute())
    .map((r) => [r.vault_id, r.t as string]));
  let n = 0;
  for (const v of await vaultsNow(ctx.db, null)) {
    const t = last.get(v.id);
    if (t !== undefined && now.getTime() - Date.parse(t) < intervalMs) continue;
    await ctx.db.insertInto('storage_samples').values({ vault_id: v.id, time: now.toISOString(), stored_bytes: v.storedBytes, points: v.points, protected_bytes: v.protectedBytes })
      .onConflict((oc) => oc.columns(['vault_id', 'time']).doNothing()).execute();
    n++;
  }
  return n;
}

export async function storageHistory(db: Kysely<Database>, vaultId: string, since: string): Promise<StorageSample[]> {
  const rows = await db.selectFrom('storage_samples').selectAll().where('vault_id', '=', vaultId).where('time', '>=', since).orderBy('time').execute();
  return rows.map((r) => ({ time: r.time, storedBytes: Number(r.stored_bytes), points: r.points, protectedBytes: Number(r.protected_bytes) }));
}

/** The latest sample at or before an instant (null before the first). */
export async function storedAt(db: Kysely<Database>, vaultId: string, at: string): Promise<number | null> {
  const row = await db.selectFrom('storage_samples').select('stored_bytes').where('vault_id', '=', vaultId).where('time', '<=', at)
    .orderBy('time', 'desc').limit(1).executeTakeFirst();
  return row ? Number(row.stored_bytes) : null;
}
