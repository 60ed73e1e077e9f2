/**
 * The protection lifecycle of an item: stop (keeping its data, or deleting it), resume, undelete,
 * purge, and on-demand backups asked for by a principal. States are in item-state.ts.
 *
 * Stopping with delete is a critical operation (protection-rules.ts: immutability, then the
 * guard); what it does then depends on the vault's soft delete: the item becomes SoftDeleted for
 * the vault's period (nothing of it is pruned or collected, it can be undeleted), or, with soft
 * delete Disabled, it is purged at once. Purging removes the points; garbage collection then
 * returns their space. Resuming makes retention apply again, which may shorten the life of the
 * points kept while stopped: that is "shortening a retention", with its checks.
 */
import type { Selectable } from 'kysely';
import type { ItemRow, VaultRow } from '../catalog/schema.js';
import type { ItemStatus, JobInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { validatePolicy } from '../policy/policy.js';
import { principalName, SYSTEM, type Principal } from './access.js';
import { recordAudit } from './audit.js';
import { manifestKey, refreshExpiries, refsKey, type DataContext } from './data.js';
import { itemRecordKey, pointRecordKey } from './records.js';
import { collectGarbage } from './gc.js';
import { itemState, setItemState } from './item-state.js';
import { pruneVault, retentionChange, shortens } from './policies.js';
import { checkCritical } from './protection-rules.js';
import { vaultScope } from './roles.js';
import { vaultSecurity } from './security-settings.js';
import { findItem, itemInfo, resolveVault } from './vaults.js';
import { visibleVaults } from './authorize.js';

/** How long an on-demand point asked for by a principal is kept when no date is given. */
export const ON_DEMAND_DEFAULT_DAYS = 30;

async function status(ctx: DataContext, item: Selectable<ItemRow>): Promise<ItemStatus> {
  const s = await itemState(ctx.db, item.id);
  const pts = await ctx.db.selectFrom('points').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('time').as('last')]).where('item_id', '=', item.id).executeTakeFirstOrThrow();
  return { ...(await itemInfo(ctx, item)), state: s.state, stateSince: s.changedAt, purgeAt: s.purgeAt, points: Number(pts.n), lastBackup: (pts.last as string | null) ?? null };
}

export async function listItems(ctx: DataContext, p: Principal, vault?: string): Promise<ItemStatus[]> {
  let q = ctx.db.selectFrom('items').selectAll();
  if (vault) q = q.where('vault_id', '=', (await resolveVault(ctx, p, vault)).id);
  if (p.kind === 'agent') q = q.where('container_id', '=', p.containerId);
  const visible = await visibleVaults(ctx.db, p);
  const rows = (await q.orderBy('created_at').orderBy('name').execute()).filter((r) => visible === 'all' || visible.has(r.vault_id));
  return Promise.all(rows.map((r) => status(ctx, r)));
}

async function target(ctx: DataContext, p: Principal, vaultName: string | undefined, itemName: string): Promise<{ vault: Selectable<VaultRow>; item: Selectable<ItemRow> }> {
  const vault = await resolveVault(ctx, p, vaultName);
  return { vault, item: await findItem(ctx, p, itemName, vault.id) };
}

function chunked<T>(all: readonly T[], size = 400): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
}

/** Removes an item and its points for good; their chunks go at the next garbage collection. */
export async function purgeItem(ctx: DataContext, itemId: string): Promise<number> {
  const points = await ctx.db.selectFrom('points').select('id').where('item_id', '=', itemId).execute();
  const { vault_id: vaultId } = await ctx.db.selectFrom('items').select('vault_id').where('id', '=', itemId).executeTakeFirstOrThrow();
  const store = await ctx.stores.byId(vaultId);
  await ctx.db.transaction().execute(async (tx) => {
    for (const group of chunked(points.map((pt) => pt.id))) {
      await tx.deleteFrom('db_points').where('point_id', 'in', group).execute();
      await tx.deleteFrom('point_objects').where('point_id', 'in', group).execute();
    }
    await tx.deleteFrom('points').where('item_id', '=', itemId).execute();
    await tx.deleteFrom('schedules').where('item_id', '=', itemId).execute();
    await tx.deleteFrom('backup_requests').where('item_id', '=', itemId).execute();
    await tx.deleteFrom('item_protection').where('item_id', '=', itemId).execute();
    await tx.deleteFrom('items').where('id', '=', itemId).execute();
  });
  // Catalog first: the points stop existing in one step; their objects follow (GC removes any left by a crash).
  // Records first: what has no record is not brought back by a recovery from the stores.
  await store.delete(itemRecordKey(itemId));
  for (const pt of points) {
    await store.delete(pointRecordKey(pt.id));
    await store.delete(manifestKey(pt.id));
    await store.delete(refsKey(pt.id));
  }
  return points.length;
}

export async function stopProtection(ctx: DataContext, p: Principal, input: { vault?: string; item: string; deleteData: boolean; requestId?: string }): Promise<ItemStatus & { purged: boolean; gc: JobInfo | null }> {
  const { vault, item } = await target(ctx, p, input.vault, input.item);
  const current = await itemState(ctx.db, item.id);
  const now = ctx.clock.now();
  if (!input.deleteData) {
    if (current.state === 'SoftDeleted') throw new CoffreError('ItemSoftDeleted', `${item.name} is already deleted (soft delete until ${current.purgeAt}); \`coffre item undelete ${item.name}\` brings it back stopped with its data`);
    if (current.state === 'Protected') {
      await setItemState(ctx.db, item.id, 'ProtectionStopped', now.toISOString());
      await ctx.db.deleteFrom('backup_requests').where('item_id', '=', item.id).execute();
      await refreshExpiries(ctx, item.id);
    }
    return { ...(await status(ctx, item)), purged: false, gc: null };
  }
  if (current.state === 'SoftDeleted') throw new CoffreError('ItemSoftDeleted', `${item.name} is already deleted; it is purged on ${current.purgeAt}`);
  await checkCritical(ctx, p, vault, { kind: 'stopDelete', target: `item ${item.name} of vault ${vault.name}`, params: { item: item.id }, requestId: input.requestId });
  const sec = await vaultSecurity(ctx.db, vault.id);
  if (sec.softDeleteState === 'Disabled') {
    const info = await status(ctx, item);
    await purgeItem(ctx, item.id);
    const gc = await collectGarbage(ctx, SYSTEM, vault.id);
    return { ...info, state: 'SoftDeleted', purgeAt: now.toISOString(), points: 0, purged: true, gc };
  }
  const purgeAt = new Date(now.getTime() + sec.softDeleteDays * 86_400_000).toISOString();
  await setItemState(ctx.db, item.id, 'SoftDeleted', now.toISOString(), purgeAt);
  await ctx.db.deleteFrom('backup_requests').where('item_id', '=', item.id).execute();
  await refreshExpiries(ctx, item.id);
  return { ...(await status(ctx, item)), purged: false, gc: null };
}

export async function undeleteItem(ctx: DataContext, p: Principal, input: { vault?: string; item: string }): Promise<ItemStatus> {
  const { item } = await target(ctx, p, input.vault, input.item);
  const current = await itemState(ctx.db, item.id);
  if (current.state !== 'SoftDeleted') throw new CoffreError('ItemStateInvalid', `${item.name} is ${current.state}, not deleted: there is nothing to undelete`);
  await setItemState(ctx.db, item.id, 'ProtectionStopped', ctx.clock.now().toISOString());
  return status(ctx, item);
}

export async function resumeProtection(ctx: DataContext, p: Principal, input: { vault?: string; item: string; policy?: string; requestId?: string }): Promise<ItemStatus & { prune: JobInfo; gc: JobInfo }> {
  const { vault, item } = await target(ctx, p, input.vault, input.item);
  const current = await itemState(ctx.db, item.id);
  if (current.state === 'SoftDeleted') throw new CoffreError('ItemSoftDeleted', `${item.name} is deleted: undelete it first (\`coffre item undelete ${item.name}\`)`);
  if (current.state === 'Protected') throw new CoffreError('ItemStateInvalid', `${item.name} is already protected; change its policy with \`coffre policy assign\``);
  const policyRow = input.policy
    ? await ctx.db.selectFrom('policies').selectAll().where('vault_id', '=', vault.id).where('name', '=', input.policy).executeTakeFirst()
    : await ctx.db.selectFrom('policies').selectAll().where('id', '=', item.policy_id).executeTakeFirst();
  if (!policyRow) throw new CoffreError('PolicyNotFound', `no policy ${input.policy} in vault ${vault.name}; list them with \`coffre policy list\``);
  const change = await retentionChange(ctx, [item.id], () => validatePolicy(JSON.parse(policyRow.body)), () => 'Protected');
  if (shortens(change)) {
    await checkCritical(ctx, p, vault, {
      kind: 'shortenRetention', alsoRequires: 'policy.write', target: `item ${item.name} of vault ${vault.name} (resume with ${policyRow.name})`,
      params: { item: item.id, policy: policyRow.id, resume: true }, requestId: input.requestId,
    });
  }
  const now = ctx.clock.now().toISOString();
  await ctx.db.updateTable('items').set({ policy_id: policyRow.id }).where('id', '=', item.id).execute();
  await setItemState(ctx.db, item.id, 'Protected', now);
  // The schedule starts again from now: the runs while stopped were not missed.
  await ctx.db.updateTable('schedules').set({ last_run: now }).where('item_id', '=', item.id).execute();
  await refreshExpiries(ctx, item.id);
  const prune = await pruneVault(ctx, SYSTEM, vault.id);
  const gc = await collectGarbage(ctx, SYSTEM, vault.id);
  return { ...(await status(ctx, (await ctx.db.selectFrom('items').selectAll().where('id', '=', item.id).executeTakeFirstOrThrow()))), prune, gc };
}

/** A principal's "back up now": the item's agent runs it on its next poll, as an on-demand point. */
export async function requestBackup(ctx: DataContext, p: Principal, input: { vault?: string; item: string; retainUntil?: string }): Promise<{ item: string; requestedAt: string; retainUntil: string }> {
  const { item } = await target(ctx, p, input.vault, input.item);
  const { state } = await itemState(ctx.db, item.id);
  if (state !== 'Protected') throw new CoffreError(state === 'SoftDeleted' ? 'ItemSoftDeleted' : 'ProtectionStopped', `${item.name} is ${state}: resume its protection before backing it up`);
  const now = ctx.clock.now();
  const today = now.toISOString().slice(0, 10);
  const retainUntil = input.retainUntil ?? new Date(now.getTime() + ON_DEMAND_DEFAULT_DAYS * 86_400_000).toISOString().slice(0, 10);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(retainUntil) || retainUntil <= today) throw new CoffreError('InvalidArgument', '--retain-until must be a future date as YYYY-MM-DD');
  const row = { item_id: item.id, requested_at: now.toISOString(), retain_until: retainUntil, requested_by: principalName(p) };
  await ctx.db.insertInto('backup_requests').values(row)
    .onConflict((oc) => oc.column('item_id').doUpdateSet({ requested_at: row.requested_at, retain_until: row.retain_until, requested_by: row.requested_by })).execute();
  return { item: item.name, requestedAt: row.requested_at, retainUntil };
}

/** Soft-deleted items of one vault, or of every vault whose period is over, purged; then their space reclaimed. */
export async function purgeSoftDeleted(ctx: DataContext, filter: { vaultId?: string; due?: boolean }): Promise<{ item: string; vaultId: string; points: number }[]> {
  let q = ctx.db.selectFrom('items').innerJoin('item_protection', 'item_protection.item_id', 'items.id')
    .select(['items.id', 'items.name', 'items.vault_id as vaultId']).where('item_protection.state', '=', 'SoftDeleted');
  if (filter.vaultId) q = q.where('items.vault_id', '=', filter.vaultId);
  if (filter.due) q = q.where('item_protection.purge_at', '<=', ctx.clock.now().toISOString());
  const out: { item: string; vaultId: string; points: number }[] = [];
  for (const it of await q.execute()) {
    const points = await purgeItem(ctx, it.id);
    out.push({ item: it.name, vaultId: it.vaultId, points });
    const v = await ctx.db.selectFrom('vaults').select(['name', 'subscription']).where('id', '=', it.vaultId).executeTakeFirst();
    await recordAudit(ctx, {
      principal: SYSTEM, operation: 'protection.purge', target: { scope: v ? vaultScope(v.subscription, v.name) : '/', vaultId: it.vaultId },
      resource: `item ${it.name}`, status: 200, code: null, details: { points, reason: filter.due ? 'soft delete period over' : 'soft delete disabled' },
    });
  }
  for (const vaultId of new Set(out.map((o) => o.vaultId))) await collectGarbage(ctx, SYSTEM, vaultId);
  return out;
}

