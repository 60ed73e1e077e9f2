/**
 * Policies of a vault, their assignment to items, and pruning. Retention is evaluated with the
 * current policy over existing points, so every change applies retroactively; a dry run shows
 * what a change would delete and which expiries it would move before anything happens.
 */
import type { Selectable } from 'kysely';
import type { PolicyRow } from '../catalog/schema.js';
import type { JobInfo, PolicyInfo as ApiPolicyInfo, RetentionChange } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { isDbPolicy, validateAnyPolicy, type AnyPolicy } from '../policy/db-policy.js';
import type { Principal } from './access.js';
import { expiriesUnder, manifestKey, refreshExpiries, refsKey, type DataContext } from './data.js';
import { itemState, type ProtectionState } from './item-state.js';
import { checkCritical } from './protection-rules.js';
import { createJob, describeJob, finishJob } from './jobs.js';
import { findItem, resolveVault } from './vaults.js';
import { collectGarbage } from './gc.js';
import { pointRecordKey, writeItemRecord, writePolicyRecord } from './records.js';

export interface PolicyInfo extends ApiPolicyInfo { policy: AnyPolicy }

async function policyRow(ctx: DataContext, vaultId: string, name: string): Promise<Selectable<PolicyRow>> {
  const row = await ctx.db.selectFrom('policies').selectAll().where('vault_id', '=', vaultId).where('name', '=', name).executeTakeFirst();
  if (!row) throw new CoffreError('PolicyNotFound', `no policy ${name} in this vault; list them with \`coffre policy list\``);
  return row;
}

async function describe(ctx: DataContext, row: Selectable<PolicyRow>, vaultName: string): Promise<PolicyInfo> {
  const items = await ctx.db.selectFrom('items').select('name').where('policy_id', '=', row.id).orderBy('name').execute();
  return { name: row.name, vault: vaultName, items: items.map((i) => i.name), policy: validateAnyPolicy(JSON.parse(row.body)), updatedAt: row.updated_at };
}

function named(body: unknown, name: string): AnyPolicy {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new CoffreError('InvalidPolicy', 'a policy is a JSON object');
  return validateAnyPolicy({ ...(body as Record<string, unknown>), name });
}

export async function createPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string, body: unknown): Promise<PolicyInfo> {
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

/**
 * What evaluating `policy` (in `stateFor`, by default each item's own state) instead of each
 * item's stored expiries would do to the items' points.
 */
export async function retentionChange(ctx: DataContext, itemIds: string[], policyFor: (itemId: string) => AnyPolicy, stateFor?: (itemId: string) => ProtectionState): Promise<RetentionChange> {
  const now = ctx.clock.now().toISOString();
  const out: RetentionChange = { deleted: [], changed: [] };
  for (const itemId of itemIds) {
    const item = await ctx.db.selectFrom('items').select('name').where('id', '=', itemId).executeTakeFirstOrThrow();
    const state = stateFor?.(itemId) ?? (await itemState(ctx.db, itemId)).state;
    for (const pt of await expiriesUnder(ctx, itemId, policyFor(itemId), state)) {
      const liveBefore = pt.stored > now;
      const keep = pt.expiresAt > now;
      // A database point kept past its own rule says which kept points need it.
      const keptFor = pt.keptFor?.length ? { keptFor: pt.keptFor } : {};
      if (liveBefore && !keep) out.deleted.push({ id: pt.id, item: item.name, time: pt.time, expiresAt: pt.expiresAt });
      else if (keep && (pt.expiresAt !== pt.stored || pt.keptFor?.length)) out.changed.push({ id: pt.id, item: item.name, time: pt.time, from: pt.stored, to: pt.expiresAt, ...keptFor });
    }
  }
  return out;
}

/** A database policy governs database items only, and the other kind the others. */
async function checkKinds(ctx: DataContext, policy: AnyPolicy, itemIds: string[]): Promise<void> {
  for (const id of itemIds) {
    const item = await ctx.db.selectFrom('items').select(['name', 'kind']).where('id', '=', id).executeTakeFirstOrThrow();
    if ((item.kind === 'PostgreSQL') !== isDbPolicy(policy)) {
      throw new CoffreError('InvalidPolicy', isDbPolicy(policy)
        ? `policy ${policy.name} is a database policy; item ${item.name} holds ${item.kind} backups: give it a file/VM policy`
        : `policy ${policy.name} is not a database policy; item ${item.name} is a PostgreSQL database: give it a policy with "workload": "PostgreSQL"`);
    }
  }
}

/** A change shortens a retention when it deletes a live point or brings any expiry closer. */
export function shortens(change: RetentionChange): boolean {
  return change.deleted.length > 0 || change.changed.some((c) => c.to < c.from);
}

export async function setPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string, body: unknown, dryRun: boolean, requestId?: string): Promise<{ policy: PolicyInfo; change: RetentionChange; prune: JobInfo | null; gc?: JobInfo }> {
  const v = await resolveVault(ctx, p, vault);
  const row = await policyRow(ctx, v.id, name);
  const policy = named(body, name);
  const items = (await ctx.db.selectFrom('items').select('id').where('policy_id', '=', row.id).execute()).map((i) => i.id);
  await checkKinds(ctx, policy, items);
  const change = await retentionChange(ctx, items, () => policy);
  if (dryRun) return { policy: { ...(await describe(ctx, row, v.name)), policy }, change, prune: null };
  if (shortens(change)) {
    await checkCritical(ctx, p, v, { kind: 'shortenRetention', target: `policy ${name} of vault ${v.name}`, params: { policy: row.id, body: policy }, requestId });
  }
  await ctx.db.updateTable('policies').set({ body: JSON.stringify(policy), updated_at: ctx.clock.now().toISOString() }).where('id', '=', row.id).execute();
  await writePolicyRecord(ctx, row.id);
  for (const id of items) await refreshExpiries(ctx, id);
  const prune = await pruneVault(ctx, p, v.id);
  const gc = await collectGarbage(ctx, p, v.id);
  return { policy: await describe(ctx, await policyRow(ctx, v.id, name), v.name), change, prune, gc };
}

export async function assignPolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string, itemName: string, requestId?: string): Promise<{ policy: PolicyInfo; change: RetentionChange; prune: JobInfo; gc: JobInfo }> {
  const v = await resolveVault(ctx, p, vault);
  const row = await policyRow(ctx, v.id, name);
  const item = await findItem(ctx, p, itemName, v.id);
  const policy = validateAnyPolicy(JSON.parse(row.body));
  await checkKinds(ctx, policy, [item.id]);
  const change = await retentionChange(ctx, [item.id], () => policy);
  // Moving an item to a policy that keeps its points less long is modifying its retention.
  if (shortens(change)) {
    await checkCritical(ctx, p, v, { kind: 'shortenRetention', alsoRequires: 'policy.write', target: `item ${item.name} of vault ${v.name} (to policy ${name})`, params: { item: item.id, policy: row.id }, requestId });
  }
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
      await tx.deleteFrom('db_points').where('point_id', '=', pt.id).execute();
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

/** Deletes a policy no item uses. DefaultPolicy stays: new items get it. */
export async function deletePolicy(ctx: DataContext, p: Principal, vault: string | undefined, name: string): Promise<{ deleted: string; vault: string }> {
  const v = await resolveVault(ctx, p, vault);
  const row = await policyRow(ctx, v.id, name);
  if (name === 'DefaultPolicy') throw new CoffreError('InvalidArgument', 'DefaultPolicy cannot be deleted: every new item starts with it');
  const users = await ctx.db.selectFrom('items').select('name').where('policy_id', '=', row.id).orderBy('name').execute();
  if (users.length) throw new CoffreError('PolicyInUse', `policy ${name} protects ${users.map((u) => u.name).join(', ')}; assign them another policy first`);
  await ctx.db.deleteFrom('policies').where('id', '=', row.id).execute();
  return { deleted: name, vault: v.name };
}
