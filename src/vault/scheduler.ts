/**
 * The vault decides what is due; agents only connect outwards and ask. Each item backed up
 * from a machine follows its policy's schedule. A run that no agent claimed before its window
 * closed becomes a Failed job with the reason, never a silent gap.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { FileSource } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { lockKey } from '../catalog/engine.js';
import type { Policy } from '../policy/policy.js';
import { isDbPolicy, validateAnyPolicy } from '../policy/db-policy.js';
import type { DbBackupType } from '../core/api.js';
import { claimDbRun, reconcileDb, type DbDueRun } from './db-scheduler.js';
import { runsBetween } from '../policy/schedule.js';
import type { Principal } from './access.js';
import { createJob, finishJob } from './jobs.js';

/** How long after its scheduled time a run may still start. */
export const RUN_WINDOW_MS = 4 * 60 * 60 * 1000;

/** What a scheduled run backs up: folders (file agent) or a protected VM, configured on the machine. */
export type BackupSource = FileSource | { vm: string } | { db: string };
export interface DueRun {
  item: string; scheduledAt: string; source: BackupSource | DbDueRun['source'];
  /** Set when a principal asked for this backup now: it makes an on-demand point kept until then. */
  onDemand?: { retainUntil: string };
}

interface SchedulerContext { db: Kysely<Database>; clock: Clock }

/** Remembers what an item backs up, so the daemon can run it on schedule; says whether that changed. */
export async function rememberSource(ctx: SchedulerContext, itemId: string, source: BackupSource): Promise<boolean> {
  const now = ctx.clock.now().toISOString();
  const text = JSON.stringify(source);
  const before = await ctx.db.selectFrom('schedules').select('source').where('item_id', '=', itemId).executeTakeFirst();
  if (before?.source === text) return false;
  await ctx.db.insertInto('schedules').values({ item_id: itemId, source: text, last_run: now })
    .onConflict((oc) => oc.column('item_id').doUpdateSet({ source: text })).execute();
  return true;
}


async function scheduledItems(ctx: SchedulerContext, containerId?: string) {
  // Only Protected items are scheduled: a stopped or deleted item takes no backups.
  let q = ctx.db.selectFrom('schedules').innerJoin('items', 'items.id', 'schedules.item_id').innerJoin('policies', 'policies.id', 'items.policy_id')
    .leftJoin('item_protection', 'item_protection.item_id', 'items.id')
    .where((eb) => eb.or([eb('item_protection.state', 'is', null), eb('item_protection.state', '=', 'Protected')]))
    .select(['items.id as itemId', 'items.name as item', 'items.vault_id as vaultId', 'items.container_id as containerId', 'schedules.source', 'schedules.last_run as lastRun', 'items.created_at as createdAt', 'policies.body']);
  if (containerId) q = q.where('items.container_id', '=', containerId);
  return q.execute();
}

async function recordMissed(ctx: SchedulerContext, row: { vaultId: string; itemId: string; containerId: string }, at: Date, why: string): Promise<void> {
  const jobId = await createJob(ctx, { vaultId: row.vaultId, itemId: row.itemId, containerId: row.containerId, operation: 'Backup', details: { scheduledAt: at.toISOString() } });
  await finishJob(ctx, jobId, { status: 'Failed', errors: [{ code: 'MissedSchedule', message: `the backup scheduled at ${at.toISOString()} did not run: ${why}` }] });
}

/**
 * Walks every scheduled item: runs whose window closed unclaimed become Failed jobs; the
 * latest open run, if any, is returned as due.
 */
export async function reconcile(ctx: SchedulerContext, containerId?: string): Promise<Map<string, DueRun & { containerId: string }>> {
  const now = ctx.clock.now();
  const due = new Map<string, DueRun & { containerId: string }>();
  for (const listed of await scheduledItems(ctx, containerId)) {
    const policy = validateAnyPolicy(JSON.parse(listed.body));
    // Per item, one transaction under the item's lock: several nodes (or polls) reconciling the
    // same item record each missed run once, and see the last run the other one handed out.
    await ctx.db.transaction().execute(async (db) => {
      await lockKey(db, `schedule:${listed.itemId}`);
      const tx = { ...ctx, db };
      if (isDbPolicy(policy)) {
        for (const run of await reconcileDb(tx, listed, policy, RUN_WINDOW_MS)) due.set(`${listed.itemId}:${run.source.backupType}`, { ...run, containerId: listed.containerId });
        return;
      }
      const fresh = await db.selectFrom('schedules').select('last_run').where('item_id', '=', listed.itemId).executeTakeFirst();
      if (!fresh) return;
      await reconcileFiles(tx, { ...listed, lastRun: fresh.last_run }, policy, now, due);
    });
  }
  return due;
}

async function reconcileFiles(ctx: SchedulerContext, row: Awaited<ReturnType<typeof scheduledItems>>[number], policy: Policy, now: Date, due: Map<string, DueRun & { containerId: string }>): Promise<void> {
  const runs = runsBetween(policy, new Date(row.lastRun ?? row.createdAt), now);
  if (runs.length === 0) return;
  const last = runs[runs.length - 1]!;
  const open = now.getTime() - last.getTime() < RUN_WINDOW_MS;
  const missed = open ? runs.slice(0, -1) : runs;
  for (const r of missed) {
    const superseded = r !== last;
    await recordMissed(ctx, row, r, superseded
      ? 'no agent claimed it before the next scheduled run (is `coffre agent run` running on the machine?)'
      : `no agent claimed it within ${RUN_WINDOW_MS / 3_600_000} hours (is \`coffre agent run\` running on the machine?)`);
  }
  if (missed.length) {
    await ctx.db.updateTable('schedules').set({ last_run: missed[missed.length - 1]!.toISOString() }).where('item_id', '=', row.itemId).execute();
  }
  if (open) due.set(row.itemId, { item: row.item, scheduledAt: last.toISOString(), source: JSON.parse(row.source) as BackupSource, containerId: row.containerId });
}

export async function dueRuns(ctx: SchedulerContext, p: Principal): Promise<DueRun[]> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only a registered agent asks for its due backups');
  const due: DueRun[] = [...(await reconcile(ctx, p.containerId)).values()].map(({ item, scheduledAt, source }) => ({ item, scheduledAt, source }));
  // Backups a principal asked for (`coffre item backup`), with what the item last backed up.
  const asked = await ctx.db.selectFrom('backup_requests').innerJoin('items', 'items.id', 'backup_requests.item_id').innerJoin('schedules', 'schedules.item_id', 'items.id')
    .select(['items.name', 'backup_requests.requested_at', 'backup_requests.retain_until', 'schedules.source']).where('items.container_id', '=', p.containerId).execute();
  for (const a of asked) due.push({ item: a.name, scheduledAt: a.requested_at, source: JSON.parse(a.source) as BackupSource, ...(a.retain_until ? { onDemand: { retainUntil: a.retain_until } } : {}) });
  return due;
}

/** An agent takes a due run; a run is handed out once. */
export async function claimRun(ctx: SchedulerContext, p: Principal, item: string, scheduledAt: string, run: { onDemand?: boolean; backupType?: DbBackupType } = {}): Promise<void> {
  if (run.backupType) return claimDbRun(ctx, p, item, scheduledAt, run.backupType);
  const onDemand = run.onDemand ?? false;
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only a registered agent claims scheduled backups');
  if (onDemand) {
    const own = await ctx.db.selectFrom('items').select('id').where('name', '=', item).where('container_id', '=', p.containerId).executeTakeFirst();
    const res = own ? await ctx.db.deleteFrom('backup_requests').where('item_id', '=', own.id).where('requested_at', '=', scheduledAt).executeTakeFirst() : undefined;
    if (Number(res?.numDeletedRows ?? 0) !== 1) throw new CoffreError('BadRequest', `the on-demand backup of ${item} asked at ${scheduledAt} was already taken`);
    return;
  }
  const row = await ctx.db.selectFrom('schedules').innerJoin('items', 'items.id', 'schedules.item_id')
    .select(['items.id', 'schedules.last_run']).where('items.name', '=', item).where('items.container_id', '=', p.containerId).executeTakeFirst();
  if (!row) throw new CoffreError('ItemNotFound', `no scheduled item ${item} on this machine`);
  const res = await ctx.db.updateTable('schedules').set({ last_run: scheduledAt })
    .where('item_id', '=', row.id).where((eb) => eb.or([eb('last_run', 'is', null), eb('last_run', '<', scheduledAt)])).executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw new CoffreError('BadRequest', `the run of ${item} at ${scheduledAt} was already taken`);
}
