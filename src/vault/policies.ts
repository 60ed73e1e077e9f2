/**
 * Policies of a vault, their assignment to items, and pruning. Retention is evaluated with the
 * current policy over existing points, so every change applies retroactively; a dry run shows
 * what a change would delete and which expiries it would move before anything happens.
 */
import type { Selectable } from 'kysely';
import type { PolicyRow } from '../catalog/schema.js';
import type { JobInfo, PointKind, PolicyInfo as ApiPolicyInfo, RetentionChange } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { validatePolicy, type Policy } from '../policy/policy.js';
import { evaluateRetention } from '../policy/retention.js';
import { requireAdmin, type Principal } from './access.js';
import { manifestKey, refreshExpiries, refsKey, type DataContext } from './data.js';
import { createJob, describeJob, finishJob } from './jobs.js';
import { findItem, resolveVault } from './vaults.js';
import { collectGarbage } from './gc.js';
import { pointRecordKey, writeItemRecord, writePolicyRecord } from './records.js';

export interface PolicyInfo extends ApiPolicyInfo { policy: Policy }

async function policyRow(ctx: DataContext, vaultId: string, name: string): Promise<Selectable<PolicyRow>> {
  const row = await ctx.db.selectFrom('policies').selectAll().where('vault_id', '=', vaultId).where('name', '=', name).executeTakeFirst();
  if (!row) throw new CoffreError('PolicyNotFound', `no policy ${name} in this vault; list them with \`coffre policy list\``);
  return row;
}

async function describe(ctx: DataContext, row: Selectable<PolicyRow>, vaultName: string): Promise<PolicyInfo> {
  const items = await ctx.db.selectFrom('items').select('name').where('policy_id', '=', row.id).orderBy('name').execute();
  return { name: row.name, vault: vaultName, items: items.map((i) => i.name), policy: validatePolicy(JSON.parse(row.body)), updatedAt: row.updated_at };
}

function named(body: unknown, name: string): Policy {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new CoffreError('InvalidPolicy', 'a policy is a JSON object');
  return validatePolicy({ ...(body as Record<string, unknown>), name });
}

export async function createPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string, body: unknown): Promise<PolicyInfo> {
  requireAdmin(p);
  const v = await resolveVault(ctx, p, vault);
  const policy = named(body, name);
  const exists = await ctx.db.selectFrom('policies').select('id').where('vault_id', '=', v.id).where('name', '=', name).executeTakeFirst();
  if (exists) throw new CoffreError('PolicyExists', `policy ${name} already exists; change it with \`coffre policy set\``);
  const id = newId();
  await ctx.db.insertInto('policies').values({ id, vault_id: v.id, name, body: JSON.stringify(policy), updated_at: ctx.clock.now().toISOString() }).execute();
  await writePolicyRecord(ctx, id);
  return describe(ctx, await policyRow(ctx, v.id, name), v.name);
}

export async function listPolicies(ctx: DataContext, p: Principal, vault?: string): Promise<PolicyInfo[]> {
  const v = await resolveVault(ctx, p, vault);
  const rows = await ctx.db.selectFrom('policies').selectAll().where('vault_id', '=', v.id).orderBy('name').execute();
  return Promise.all(rows.map((r) => describe(ctx, r, v.name)));
}

export async function showPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string): Promise<PolicyInfo> {
  const v = await resolveVault(ctx, p, vault);
  return describe(ctx, await policyRow(ctx, v.id, name), v.name);
}

/** What evaluating `policy` instead of each item's stored expiries would do to the items' points. */
async function previewChange(ctx: DataContext, itemIds: string[], policyFor: (itemId: string) => Policy): Promise<RetentionChange> {
  const now = ctx.clock.now();
  const out: RetentionChange = { deleted: [], changed: [] };
  for (const itemId of itemIds) {
    const item = await ctx.db.selectFrom('items').select('name').where('id', '=', itemId).executeTakeFirstOrThrow();
    const points = await ctx.db.selectFrom('points').select(['id', 'time', 'kind', 'retain_until', 'expires_at']).where('item_id', '=', itemId).orderBy('time').execute();
    const results = evaluateRetention(policyFor(itemId), points.map((pt) => ({
      id: pt.id, time: new Date(pt.time), kind: pt.kind as PointKind, ...(pt.retain_until ? { retainUntil: pt.retain_until } : {}),
    })), now);
    results.forEach((r, i) => {
      const pt = points[i]!;
      const to = r.expiresAt.toISOString();
      const liveBefore = pt.expires_at > now.toISOString();
      if (liveBefore && !r.keep) out.deleted.push({ id: pt.id, item: item.name, time: pt.time, expiresAt: to });
      else if (r.keep && to !== pt.expires_at) out.changed.push({ id: pt.id, item: item.name, time: pt.time, from: pt.expires_at, to });
    });
  }
  return out;
}

export async function setPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string, body: unknown, dryRun: boolean): Promise<{ policy: PolicyInfo; change: RetentionChange; prune: JobInfo | null; gc?: JobInfo }> {
  requireAdmin(p);
  const v = await resolveVault(ctx, p, vault);
  const row = await policyRow(ctx, v.id, name);
  const policy = named(body, name);
  const items = (await ctx.db.selectFrom('items').select('id').where('policy_id', '=', row.id).execute()).map((i) => i.id);
  const change = await previewChange(ctx, items, () => policy);
  if (dryRun) return { policy: { ...(await describe(ctx, row, v.name)), policy }, change, prune: null };
  await ctx.db.updateTable('policies').set({ body: JSON.stringify(policy), updated_at: ctx.clock.now().toISOString() }).where('id', '=', row.id).execute();
  await writePolicyRecord(ctx, row.id);
  for (const id of items) await refreshExpiries(ctx, id);
  const prune = await pruneVault(ctx, p, v.id);
  const gc = await collectGarbage(ctx, p, v.id);
  return { policy: await describe(ctx, await policyRow(ctx, v.id, name), v.name), change, prune, gc };
}

export async function assignPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string, itemName: string): Promise<{ policy: PolicyInfo; change: RetentionChange; prune: JobInfo; gc: JobInfo }> {
  requireAdmin(p);
  const v = await resolveVault(ctx, p, vault);
  const row = await policyRow(ctx, v.id, name);
  const item = await findItem(ctx, p, itemName, v.id);
  const change = await previewChange(ctx, [item.id], () => validatePolicy(JSON.parse(row.body)));
  await ctx.db.updateTable('items').set({ policy_id: row.id }).where('id', '=', item.id).execute();
  await writeItemRecord(ctx, item.id);
  await refreshExpiries(ctx, item.id);
  const prune = await pruneVault(ctx, p, v.id);
  const gc = await collectGarbage(ctx, p, v.id);
  return { policy: await describe(ctx, row, v.name), change, prune, gc };
}

/**
 * Deletes expired points. The catalog row goes first (the point stops being visible and
 * restorable in one step), then its objects; their chunks are left to garbage collection.
 */
export async function pruneVault(ctx: DataContext, p: Principal, vault?: string): Promise<JobInfo> {
  requireAdmin(p);
  const v = await resolveVault(ctx, p, vault);
  const jobId = await createJob(ctx, { vaultId: v.id, itemId: null, containerId: null, operation: 'Prune' });
  const items = await ctx.db.selectFrom('items').select('id').where('vault_id', '=', v.id).execute();
  for (const item of items) await refreshExpiries(ctx, item.id);
  const now = ctx.clock.now().toISOString();
  const expired = await ctx.db.selectFrom('points').select(['id', 'bytes']).where('vault_id', '=', v.id).where('expires_at', '<=', now).execute();
  const store = ctx.stores.forVault(v);
  for (const pt of expired) {
    await ctx.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('points').where('id', '=', pt.id).execute();
      await tx.deleteFrom('point_objects').where('point_id', '=', pt.id).execute();
    });
    // The record first: a point whose record is gone is not brought back by a recovery.
    await store.delete(pointRecordKey(pt.id));
    await store.delete(manifestKey(pt.id));
    await store.delete(refsKey(pt.id));
  }
  await finishJob(ctx, jobId, { status: 'Completed', details: { pointsDeleted: expired.map((e) => e.id) }, counters: { filesChanged: expired.length } });
  return describeJob(ctx, jobId);
}
