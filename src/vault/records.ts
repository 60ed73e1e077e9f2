/**
 * "The catalog is an index, the stores are the truth": everything the catalog needs to be
 * rebuilt is also written, as a small JSON record, into the vault's own store — the vault,
 * its policies, its machines (with their wrapped keys: only the passphrase opens them), its
 * protected items and every recovery point. Records follow the vault's redundancy like its
 * data, so `coffre server --recover-from` can rebuild a catalog from any surviving region.
 *
 * A record is written after the catalog change it mirrors, except a point's, which is written
 * before the point is committed (a point is never in the catalog without its record).
 */
import type { Kysely, Selectable } from 'kysely';
import type { ContainerRow, Database, ItemRow, PointRow, PolicyRow } from '../catalog/schema.js';
import type { DbPointMeta } from '../core/api.js';
import type { ObjectStore } from '../store/object-store.js';
import { metaOf } from './db-point-rows.js';
import type { VaultStores } from './vault-stores.js';

export interface RecordContext { db: Kysely<Database>; stores: VaultStores }

export const VAULT_RECORD = 'vault.json';
export const policyRecordKey = (id: string) => `policies/${id}.json`;
export const containerRecordKey = (id: string) => `containers/${id}.json`;
export const itemRecordKey = (id: string) => `items/${id}.json`;
export const pointRecordKey = (id: string) => `points/${id}/record.json`;

export interface VaultRecord { kind: 'coffre-vault'; version: 1; id: string; name: string; subscription: string; redundancy: string; crossRegionRestore: boolean; createdAt: string }
export interface PolicyRecord { kind: 'coffre-policy'; version: 1; id: string; name: string; body: unknown; updatedAt: string }
export interface ContainerRecord { kind: 'coffre-machine'; version: 1; id: string; name: string; wrappedKeys: unknown; createdAt: string }
export interface ItemRecord { kind: 'coffre-item'; version: 1; id: string; name: string; itemKind: string; containerId: string; policyId: string; source: unknown; createdAt: string }
export interface PointRecord {
  kind: 'coffre-point'; version: 1; id: string; itemId: string; containerId: string; jobId: string; time: string; pointKind: string;
  consistency: string; retainUntil: string | null; files: number; bytes: number; chunkCount: number; manifestSha256: string; refsSha256: string;
  /** A database point's chain facts (type, WAL segments, base); records written before 2026-12 lack them. */
  database?: DbPointMeta;
}

const encode = (r: object) => Buffer.from(JSON.stringify(r, null, 1) + '\n');

async function vaultStore(ctx: RecordContext, vaultId: string): Promise<ObjectStore> {
  return ctx.stores.byId(vaultId);
}

async function vaultRecord(ctx: RecordContext, vaultId: string): Promise<Buffer> {
  const v = await ctx.db.selectFrom('vaults').selectAll().where('id', '=', vaultId).executeTakeFirstOrThrow();
  const storage = await ctx.db.selectFrom('vault_storage').select('cross_region_restore').where('vault_id', '=', vaultId).executeTakeFirst();
  return encode({
    kind: 'coffre-vault', version: 1, id: v.id, name: v.name, subscription: v.subscription, redundancy: v.redundancy,
    crossRegionRestore: (storage?.cross_region_restore ?? 0) === 1, createdAt: v.created_at,
  } satisfies VaultRecord);
}

const policyRecord = (p: Selectable<PolicyRow>) =>
  encode({ kind: 'coffre-policy', version: 1, id: p.id, name: p.name, body: JSON.parse(p.body), updatedAt: p.updated_at } satisfies PolicyRecord);

const containerRecord = (c: Selectable<ContainerRow>) => encode({
  kind: 'coffre-machine', version: 1, id: c.id, name: c.name, wrappedKeys: c.wrapped_keys ? JSON.parse(c.wrapped_keys) : null, createdAt: c.created_at,
} satisfies ContainerRecord);

const itemRecord = (i: Selectable<ItemRow> & { source: string | null }) => encode({
  kind: 'coffre-item', version: 1, id: i.id, name: i.name, itemKind: i.kind, containerId: i.container_id, policyId: i.policy_id,
  source: i.source ? JSON.parse(i.source) : null, createdAt: i.created_at,
} satisfies ItemRecord);

function itemsWithSource(ctx: RecordContext) {
  return ctx.db.selectFrom('items').leftJoin('schedules', 'schedules.item_id', 'items.id').selectAll('items').select('schedules.source');
}

export function pointRecord(p: Selectable<PointRow>, manifestSha256: string, refsSha256: string, database: DbPointMeta | null = null): Buffer {
  return encode({
    kind: 'coffre-point', version: 1, id: p.id, itemId: p.item_id, containerId: p.container_id, jobId: p.job_id, time: p.time, pointKind: p.kind,
    consistency: p.consistency, retainUntil: p.retain_until, files: p.files, bytes: Number(p.bytes), chunkCount: p.chunk_count, manifestSha256, refsSha256,
    ...(database ? { database } : {}),
  } satisfies PointRecord);
}

/** Every record a vault's store should hold, as the catalog has it now: key → bytes. */
export async function expectedRecords(ctx: RecordContext, vaultId: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  out.set(VAULT_RECORD, await vaultRecord(ctx, vaultId));
  for (const p of await ctx.db.selectFrom('policies').selectAll().where('vault_id', '=', vaultId).execute()) out.set(policyRecordKey(p.id), policyRecord(p));
  for (const c of await ctx.db.selectFrom('containers').selectAll().where('vault_id', '=', vaultId).execute()) out.set(containerRecordKey(c.id), containerRecord(c));
  for (const i of await itemsWithSource(ctx).where('items.vault_id', '=', vaultId).execute()) out.set(itemRecordKey(i.id), itemRecord(i));
  const points = await ctx.db.selectFrom('points').innerJoin('point_objects', 'point_objects.point_id', 'points.id')
    .selectAll('points').select(['point_objects.manifest_sha256', 'point_objects.refs_sha256']).where('points.vault_id', '=', vaultId).execute();
  const chains = new Map<string, DbPointMeta>();
  const dbRows = await ctx.db.selectFrom('db_points').innerJoin('points', 'points.id', 'db_points.point_id').selectAll('db_points').where('points.vault_id', '=', vaultId).execute();
  for (const r of dbRows) chains.set(r.point_id, metaOf(r));
  for (const p of points) out.set(pointRecordKey(p.id), pointRecord(p, p.manifest_sha256, p.refs_sha256, chains.get(p.id) ?? null));
  return out;
}

export async function writeVaultRecord(ctx: RecordContext, vaultId: string): Promise<void> {
  await (await vaultStore(ctx, vaultId)).put(VAULT_RECORD, await vaultRecord(ctx, vaultId));
}

export async function writePolicyRecord(ctx: RecordContext, policyId: string): Promise<void> {
  const p = await ctx.db.selectFrom('policies').selectAll().where('id', '=', policyId).executeTakeFirstOrThrow();
  await (await vaultStore(ctx, p.vault_id)).put(policyRecordKey(p.id), policyRecord(p));
}

export async function writeContainerRecord(ctx: RecordContext, containerId: string): Promise<void> {
  const c = await ctx.db.selectFrom('containers').selectAll().where('id', '=', containerId).executeTakeFirstOrThrow();
  await (await vaultStore(ctx, c.vault_id)).put(containerRecordKey(c.id), containerRecord(c));
}

export async function writeItemRecord(ctx: RecordContext, itemId: string): Promise<void> {
  const i = await itemsWithSource(ctx).where('items.id', '=', itemId).executeTakeFirstOrThrow();
  await (await vaultStore(ctx, i.vault_id)).put(itemRecordKey(i.id), itemRecord(i));
}

/** Writes every record of a vault (an upgrade, a change of redundancy). */
export async function writeAllRecords(ctx: RecordContext, vaultId: string, store?: ObjectStore): Promise<number> {
  const target = store ?? await vaultStore(ctx, vaultId);
  const all = await expectedRecords(ctx, vaultId);
  for (const [key, data] of all) await target.put(key, data);
  return all.size;
}
