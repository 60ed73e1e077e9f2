/**
 * The schedule of database items: each backup type (Full, Differential, Log) has its own runs
 * and its own last run handed out. As for files, a Full or Differential run no agent claimed
 * in time becomes a Failed job saying so; a Log run superseded by the next one is not a loss
 * (the next log backup takes all the WAL since the previous one), so only the latest is due.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import type { DbBackupType } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import type { DbPolicy } from '../policy/db-policy.js';
import { dbRunsBetween, DB_BACKUP_TYPES } from '../policy/db-schedule.js';
import type { Principal } from './access.js';
import { createJob, finishJob } from './jobs.js';

interface Ctx { db: Kysely<Database>; clock: Clock }

export interface DbDueRun { item: string; scheduledAt: string; source: { db: string; backupType: DbBackupType } }

/** The runs of one database item: missed ones recorded, the open ones returned (Full, Differential, Log order). */
export async function reconcileDb(ctx: Ctx, row: { itemId: string; item: string; vaultId: string; containerId: string; createdAt: string }, policy: DbPolicy, windowMs: number): Promise<DbDueRun[]> {
  const now = ctx.clock.now();
  const last = new Map((await ctx.db.selectFrom('db_schedules').selectAll().where('item_id', '=', row.itemId).execute()).map((r) => [r.type, r.last_run]));
  const due: DbDueRun[] = [];
  for (const type of DB_BACKUP_TYPES) {
    const after = new Date(last.get(type) ?? row.createdAt);
    const runs = dbRunsBetween(policy, type, after, now);
    if (runs.length === 0) continue;
    const latest = runs[runs.length - 1]!;
    const open = now.getTime() - latest.getTime() < windowMs;
    const missed = type === 'Log' ? (open ? [] : [latest]) : (open ? runs.slice(0, -1) : runs);
    for (const r of missed) {
      const jobId = await createJob(ctx, { vaultId: row.vaultId, itemId: row.itemId, containerId: row.containerId, operation: 'Backup', details: { scheduledAt: r.toISOString(), backupType: type } });
      await finishJob(ctx, jobId, { status: 'Failed', errors: [{ code: 'MissedSchedule', message: `the ${type.toLowerCase()} backup scheduled at ${r.toISOString()} did not run: no agent claimed it in time (is \`coffre agent run\` running on the machine?)` }] });
    }
    const handled = open ? (type === 'Log' ? null : runs[runs.length - 2]) : latest;
    if (handled) {
      await ctx.db.insertInto('db_schedules').values({ item_id: row.itemId, type, last_run: handled.toISOString() })
        .onConflict((oc) => oc.columns(['item_id', 'type']).doUpdateSet({ last_run: handled.toISOString() })).execute();
    }
    if (open) due.push({ item: row.item, scheduledAt: latest.toISOString(), source: { db: row.item, backupType: type } });
  }
  return due;
}

/** An agent takes a due database run; each run is handed out once. */
export async function claimDbRun(ctx: Ctx, p: Principal, item: string, scheduledAt: string, type: DbBackupType): Promise<void> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only a registered agent claims scheduled backups');
  const row = await ctx.db.selectFrom('items').select('id').where('name', '=', item).where('container_id', '=', p.containerId).executeTakeFirst();
  if (!row) throw new CoffreError('ItemNotFound', `no scheduled item ${item} on this machine`);
  const res = await ctx.db.updateTable('db_schedules').set({ last_run: scheduledAt })
    .where('item_id', '=', row.id).where('type', '=', type).where('last_run', '<', scheduledAt).executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw new CoffreError('BadRequest', `the ${type} run of ${item} at ${scheduledAt} was already taken`);
}
