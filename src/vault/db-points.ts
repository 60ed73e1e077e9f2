/**
 * The vault's side of database (PostgreSQL) protection: the protected item, the facts of each
 * point (type, WAL segments, time range, chain), the restorable ranges, and the checks made
 * when a point is committed. Points travel the same data path as files and disks (packs,
 * sealed manifest, reference list, `commitPoint`); this module adds what a chain needs, in
 * the same catalog transaction as the point itself, and refuses a log point whose WAL another
 * log point already holds, so no segment is ever counted twice.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Database, DbPointRow, ItemRow } from '../catalog/schema.js';
import type { BackupStart, DbBackupType, DbPointMeta, ItemInfo, PointInfo, RestorableRange } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { restorableRanges, type ChainPoint } from '../policy/db-chain.js';
import { defaultDbPolicy, isDbPolicy, validateAnyPolicy } from '../policy/db-policy.js';
import { DB_BACKUP_TYPES } from '../policy/db-schedule.js';
import { requireContainer, type Principal } from './access.js';
import { chainFactsProblem, dbPointRow, metaOf } from './db-point-rows.js';
import { commitPoint, listPoints, startBackup, type CommitInput, type DataContext } from './data.js';
import { writeItemRecord, writePolicyRecord } from './records.js';
import { rememberSource } from './scheduler.js';
import { checkName, findItem, itemInfo } from './vaults.js';

export const DB_ITEM_KIND = 'PostgreSQL';

export function chainPointOf(id: string, m: DbPointMeta): ChainPoint {
  return { id, type: m.type, timeline: m.timeline, firstSegment: m.firstSegment, lastSegment: m.lastSegment, consistentAt: m.consistentAt, basedOn: m.basedOn, from: m.from, to: m.to };
}

/** The chain facts of an item's existing points (rows of pruned points are left out). */
export async function dbChainPoints(ctx: { db: Kysely<Database> }, itemId: string): Promise<ChainPoint[]> {
  const rows = await ctx.db.selectFrom('db_points').innerJoin('points', 'points.id', 'db_points.point_id')
    .selectAll('db_points').where('db_points.item_id', '=', itemId).execute();
  return rows.map((r) => chainPointOf(r.point_id, metaOf(r)));
}

/** Adds the database facts to listed points (a no-op for file and VM points). */
export async function attachDbInfo(ctx: { db: Kysely<Database> }, points: PointInfo[]): Promise<void> {
  const ids = points.filter((p) => p.itemKind === DB_ITEM_KIND).map((p) => p.id);
  if (ids.length === 0) return;
  const rows = new Map<string, Selectable<DbPointRow>>();
  for (let i = 0; i < ids.length; i += 400) {
    for (const r of await ctx.db.selectFrom('db_points').selectAll().where('point_id', 'in', ids.slice(i, i + 400)).execute()) rows.set(r.point_id, r);
  }
  for (const p of points) {
    const r = rows.get(p.id);
    if (!r) continue;
    const m = metaOf(r);
    Object.assign(p, { backupType: m.type, from: m.from, to: m.to, basedOn: m.basedOn, database: m });
  }
}

async function requireDbItem(ctx: DataContext, p: Principal, name: string): Promise<Selectable<ItemRow>> {
  const item = await findItem(ctx, p, name);
  if (item.kind !== DB_ITEM_KIND) throw new CoffreError('InvalidArgument', `item ${name} holds ${item.kind} backups, not a PostgreSQL database`);
  return item;
}

/** The vault's default database policy, created on first use. */
async function defaultDbPolicyId(ctx: DataContext, vaultId: string): Promise<string> {
  const policy = defaultDbPolicy();
  const existing = await ctx.db.selectFrom('policies').select('id').where('vault_id', '=', vaultId).where('name', '=', policy.name).executeTakeFirst();
  // Its record too (a policy made before policies of this kind had records may lack it): a
  // recovered vault needs the policy of every item it brings back.
  if (existing) {
    await writePolicyRecord(ctx, existing.id);
    return existing.id;
  }
  const id = newId();
  await ctx.db.insertInto('policies').values({ id, vault_id: vaultId, name: policy.name, body: JSON.stringify(policy), updated_at: ctx.clock.now().toISOString() })
    .onConflict((oc) => oc.columns(['vault_id', 'name']).doNothing()).execute();
  const made = (await ctx.db.selectFrom('policies').select('id').where('vault_id', '=', vaultId).where('name', '=', policy.name).executeTakeFirstOrThrow()).id;
  // Like every policy, it has its record in the vault's store: a recovered vault finds it.
  await writePolicyRecord(ctx, made);
  return made;
}

/**
 * Registers (or finds) a database of the calling machine as a protected item. A new item takes
 * the policy named (a database policy) or the vault's DefaultDatabasePolicy; an existing item
 * keeps its policy (changing it may delete points: an administrator does that with `policy assign`).
 */
export async function protectDb(ctx: DataContext, p: Principal, input: { name: string; policy?: string }): Promise<{ item: ItemInfo; created: boolean; policyNote: string | null }> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'a database is protected by the agent of its machine: run `coffre agent register` there first');
  checkName('item', input.name);
  let policyId: string | null = null;
  if (input.policy) {
    const row = await ctx.db.selectFrom('policies').selectAll().where('vault_id', '=', p.vaultId).where('name', '=', input.policy).executeTakeFirst();
    if (!row) throw new CoffreError('PolicyNotFound', `no policy ${input.policy} in this vault; list them with \`coffre policy list\``);
    if (!isDbPolicy(validateAnyPolicy(JSON.parse(row.body)))) {
      throw new CoffreError('InvalidPolicy', `policy ${input.policy} is not a database policy (it has no "workload": "PostgreSQL"); create one with \`coffre policy create NAME --file db-policy.json\``);
    }
    policyId = row.id;
  }
  const now = ctx.clock.now().toISOString();
  const existing = await ctx.db.selectFrom('items').selectAll().where('vault_id', '=', p.vaultId).where('name', '=', input.name).executeTakeFirst();
  let item: Selectable<ItemRow>;
  let created = false;
  let policyNote: string | null = null;
  if (existing) {
    if (existing.container_id !== p.containerId) throw new CoffreError('ItemOwnedElsewhere', `item ${input.name} belongs to another machine of this vault; choose another name`);
    if (existing.kind !== DB_ITEM_KIND) throw new CoffreError('InvalidArgument', `item ${input.name} holds ${existing.kind} backups; protect the database under another name`);
    item = existing;
    if (policyId && policyId !== existing.policy_id) {
      policyNote = `the item keeps its current policy; an administrator applies ${input.policy} with \`coffre policy assign ${input.policy} --item ${input.name}\``;
    }
  } else {
    item = { id: newId(), vault_id: p.vaultId, container_id: p.containerId, name: input.name, kind: DB_ITEM_KIND, policy_id: policyId ?? await defaultDbPolicyId(ctx, p.vaultId), created_at: now };
    await ctx.db.insertInto('items').values(item).execute();
    created = true;
  }
  // The item's record (with what it backs up) is in the vault's store, so a recovered vault has it and its points.
  if (await rememberSource(ctx, item.id, { db: item.name }) || created) await writeItemRecord(ctx, item.id);
  for (const type of DB_BACKUP_TYPES) {
    await ctx.db.insertInto('db_schedules').values({ item_id: item.id, type, last_run: now }).onConflict((oc) => oc.columns(['item_id', 'type']).doNothing()).execute();
  }
  return { item: await itemInfo(ctx, item), created, policyNote };
}

export async function startDbBackup(ctx: DataContext, p: Principal, name: string, type: DbBackupType): Promise<BackupStart> {
  const item = await requireDbItem(ctx, p, name);
  requireContainer(p, item.container_id);
  return startBackup(ctx, p, { item: item.name, kind: DB_ITEM_KIND, source: { db: item.name, backupType: type } });
}

/** Every point of a database with its chain facts, oldest first. */
export async function dbChain(ctx: DataContext, p: Principal, name: string): Promise<PointInfo[]> {
  await requireDbItem(ctx, p, name);
  const points = await listPoints(ctx, p, { item: name });
  await attachDbInfo(ctx, points);
  return points;
}

export async function dbRanges(ctx: DataContext, p: Principal, name: string): Promise<RestorableRange[]> {
  const item = await requireDbItem(ctx, p, name);
  return restorableRanges(await dbChainPoints(ctx, item.id));
}

export type DbCommitInput = CommitInput & { database: DbPointMeta };

/**
 * Commits a database point with its chain facts, in one catalog transaction with the point.
 * Refused: a Differential whose Full is not a Full of this database, and a Log point whose
 * segments another log point of this database already holds.
 */
export async function commitDbPoint(ctx: DataContext, p: Principal, pointId: string, input: DbCommitInput): Promise<PointInfo> {
  const m = input.database;
  const problem = chainFactsProblem(m);
  if (problem) throw new CoffreError('BadRequest', problem);
  // The point comes back with its chain facts: describing a point attaches them.
  return commitPoint(ctx, p, pointId, input, m, async (tx, row) => {
    const item = await tx.selectFrom('items').select(['kind', 'name']).where('id', '=', row.item_id).executeTakeFirstOrThrow();
    if (item.kind !== DB_ITEM_KIND) throw new CoffreError('BadRequest', `item ${item.name} is not a database`);
    if (m.type === 'Differential') {
      const full = m.basedOn ? await tx.selectFrom('db_points').select('type').where('point_id', '=', m.basedOn).where('item_id', '=', row.item_id).executeTakeFirst() : undefined;
      if (full?.type !== 'Full') throw new CoffreError('ChainIncomplete', `the full backup ${m.basedOn ?? '(none)'} this differential is based on is not a full of ${item.name}; take a full backup`);
    }
    if (m.type === 'Log') {
      const overlap = await tx.selectFrom('db_points').innerJoin('points', 'points.id', 'db_points.point_id').select(['db_points.point_id', 'db_points.first_segment', 'db_points.last_segment'])
        .where('db_points.item_id', '=', row.item_id).where('db_points.type', '=', 'Log').where('db_points.timeline', '=', m.timeline)
        .where('db_points.first_segment', '<=', m.lastSegment).where('db_points.last_segment', '>=', m.firstSegment).executeTakeFirst();
      if (overlap) {
        throw new CoffreError('WalOverlap', `log point ${overlap.point_id} already holds WAL segments ${overlap.first_segment}-${overlap.last_segment}; this log backup overlaps it (another log backup ran at the same time?): run it again`);
      }
    }
    await tx.insertInto('db_points').values(dbPointRow(pointId, row.item_id, m)).execute();
  });
}
