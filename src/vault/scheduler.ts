/**
 * The vault decides what is due; agents only connect outwards and ask. Each item backed up
 * from a machine follows its policy's schedule. A run that no agent claimed before its window
 * closed becomes a Failed job with the reason, never a silent gap.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { validatePolicy, type Policy } from '../policy/policy.js';
import { nextRuns } from '../policy/schedule.js';
import type { Principal } from './access.js';
import { createJob, finishJob } from './jobs.js';

/** How long after its scheduled time a run may still start. */
export const RUN_WINDOW_MS = 4 * 60 * 60 * 1000;

/** What a scheduled run backs up: folders (file agent) or a protected VM, configured on the machine. */
export type BackupSource = { paths: string[]; excludes?: string[] } | { vm: string };
export interface DueRun { item: string; scheduledAt: string; source: BackupSource }

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

/** Scheduled runs after `after` up to `until`, in order. */
export function runsBetween(policy: Policy, after: Date, until: Date): Date[] {
  const out: Date[] = [];
  let from = after;
  for (;;) {
    const batch = nextRuns(policy, from, 64);
    for (const r of batch) {
      if (r > until) return out;
      out.push(r);
    }
    if (batch.length === 0) return out;
    from = batch[batch.length - 1]!;
  }
}

async function scheduledItems(ctx: SchedulerContext, containerId?: string) {
  let q = ctx.db.selectFrom('schedules').innerJoin('items', 'items.id', 'schedules.item_id').innerJoin('policies', 'policies.id', 'items.policy_id')
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
  for (const row of await scheduledItems(ctx, containerId)) {
    const policy = validatePolicy(JSON.parse(row.body));
    const runs = runsBetween(policy, new Date(row.lastRun ?? row.createdAt), now);
    if (runs.length === 0) continue;
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
  return due;
}

export async function dueRuns(ctx: SchedulerContext, p: Principal): Promise<DueRun[]> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only a registered agent asks for its due backups');
  return [...(await reconcile(ctx, p.containerId)).values()].map(({ item, scheduledAt, source }) => ({ item, scheduledAt, source }));
}

/** An agent takes a due run; a run is handed out once. */
export async function claimRun(ctx: SchedulerContext, p: Principal, item: string, scheduledAt: string): Promise<void> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only a registered agent claims scheduled backups');
  const row = await ctx.db.selectFrom('schedules').innerJoin('items', 'items.id', 'schedules.item_id')
    .select(['items.id', 'schedules.last_run']).where('items.name', '=', item).where('items.container_id', '=', p.containerId).executeTakeFirst();
  if (!row) throw new CoffreError('ItemNotFound', `no scheduled item ${item} on this machine`);
  const res = await ctx.db.updateTable('schedules').set({ last_run: scheduledAt })
    .where('item_id', '=', row.id).where((eb) => eb.or([eb('last_run', 'is', null), eb('last_run', '<', scheduledAt)])).executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw new CoffreError('BadRequest', `the run of ${item} at ${scheduledAt} was already taken`);
}
