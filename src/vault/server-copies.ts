/**
 * Online copies arriving from a backup server: a point copied "as it is". The server sends the
 * encrypted blobs of the point's closure that this vault lacks (packs, through the ordinary pack
 * route), then the point's manifest and reference list, then commits: the commit runs the same
 * closure check as any backup, so a point is visible only once everything it reaches is stored.
 *
 * What differs from a backup: the point keeps its id (its manifest is sealed and bound to it, and
 * nobody here can re-seal it) and its time (when its data was read, which retention counts from),
 * and its item is made with the online policy the server names. A copy of a point that is
 * already here answers so, which makes a copy whose commit answer was lost safe to repeat; a
 * copy of a point whose earlier copy is still running (cut short) resumes that job.
 */
import type { BackupStart, Consistency, JobCounters, PointInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Principal } from './access.js';
import { commitPoint, describePoint, type DataContext } from './data.js';
import { itemState } from './item-state.js';
import { createJob, describeJob, loadJob } from './jobs.js';
import { writeItemRecord } from './records.js';
import { requireServer } from './servers.js';
import { checkName, itemInfo } from './vaults.js';

export interface CopyStart {
  /** The vault's container of the machine (from attachMachine). */
  container: string;
  item: string;
  kind: string;
  /** The policy a new item gets: the group's online policy. */
  policy: string;
  point: string;
  time: string;
}

export type CopyStarted = (BackupStart & { alreadyCopied: false; resumed: boolean }) | { alreadyCopied: true; point: PointInfo };

async function requireOwned(ctx: DataContext, serverId: string, containerId: string): Promise<void> {
  const own = await ctx.db.selectFrom('server_containers').select('container_id').where('container_id', '=', containerId).where('server_id', '=', serverId).executeTakeFirst();
  if (!own) throw new CoffreError('Forbidden', 'a backup server copies only into the machines it attached');
}

/** The item a copy goes to, made with the online policy on first use; it must be protected. */
async function copyItem(ctx: DataContext, vaultId: string, containerId: string, input: CopyStart) {
  checkName('item', input.item);
  let created = false;
  const item = await ctx.db.transaction().execute(async (tx) => {
    const existing = await tx.selectFrom('items').selectAll().where('vault_id', '=', vaultId).where('name', '=', input.item).executeTakeFirst();
    if (existing) {
      if (existing.container_id !== containerId) throw new CoffreError('ItemOwnedElsewhere', `item ${input.item} belongs to another machine of the vault; rename the item on the backup server`);
      if (existing.kind !== input.kind) throw new CoffreError('InvalidArgument', `item ${input.item} of the vault holds ${existing.kind} points, not ${input.kind}`);
      const { state } = await itemState(tx, existing.id);
      if (state === 'ProtectionStopped') throw new CoffreError('ProtectionStopped', `protection of ${input.item} is stopped in the vault: no online copies until it is resumed there (\`coffre item resume ${input.item}\`)`);
      if (state === 'SoftDeleted') throw new CoffreError('ItemSoftDeleted', `${input.item} is deleted in the vault (soft delete): undelete and resume it there first`);
      return existing;
    }
    const policy = await tx.selectFrom('policies').select('id').where('vault_id', '=', vaultId).where('name', '=', input.policy).executeTakeFirst();
    if (!policy) throw new CoffreError('PolicyNotFound', `the vault has no policy ${input.policy}, the online policy of this item's group; create it in the vault with \`coffre policy create\``);
    const row = { id: newId(), vault_id: vaultId, container_id: containerId, name: input.item, kind: input.kind, policy_id: policy.id, created_at: ctx.clock.now().toISOString() };
    await tx.insertInto('items').values(row).execute();
    created = true;
    return row;
  });
  // Like any item, recorded in the vault's store (what `--recover-from` rebuilds the catalog from).
  if (created) await writeItemRecord(ctx, item.id);
  return item;
}

export async function startCopy(ctx: DataContext, p: Principal, input: CopyStart): Promise<CopyStarted> {
  const server = requireServer(p);
  await requireOwned(ctx, server.serverId, input.container);
  const existing = await ctx.db.selectFrom('points').select(['id', 'container_id']).where('id', '=', input.point).executeTakeFirst();
  if (existing) {
    if (existing.container_id !== input.container) throw new CoffreError('BadRequest', `point id ${input.point} is taken by another machine's point`);
    return { alreadyCopied: true, point: await describePoint(ctx, existing.id) };
  }
  const item = await copyItem(ctx, server.vaultId, input.container, input);
  // A copy cut short (the server killed, the network lost) left its job running: the next
  // attempt resumes it, so what arrived stays under a running backup, which GC leaves alone.
  const running = await ctx.db.selectFrom('jobs').select('id').where('point_id', '=', input.point).where('container_id', '=', input.container)
    .where('operation', '=', 'Backup').where('status', '=', 'InProgress').executeTakeFirst();
  if (running) {
    await ctx.db.updateTable('jobs').set({ heartbeat: ctx.clock.now().toISOString() }).where('id', '=', running.id).execute();
    return { alreadyCopied: false, resumed: true, job: await describeJob(ctx, running.id), pointId: input.point, item: await itemInfo(ctx, item) };
  }
  const jobId = await createJob(ctx, {
    vaultId: server.vaultId, itemId: item.id, containerId: input.container, operation: 'Backup', pointId: input.point,
    details: { onlineCopy: { server: server.name, time: input.time } },
  });
  return { alreadyCopied: false, resumed: false, job: await describeJob(ctx, jobId), pointId: input.point, item: await itemInfo(ctx, item) };
}

export interface CopyCommit { jobId: string; files: number; bytes: number; consistency: Consistency; counters: JobCounters; details?: Record<string, unknown> }

/** Commits a copied point at the time it was taken, after the closure check of every commit. */
export async function commitCopy(ctx: DataContext, p: Principal, pointId: string, input: CopyCommit): Promise<PointInfo> {
  requireServer(p);
  const job = await loadJob(ctx, p, input.jobId);
  const copy = (JSON.parse(job.details) as { onlineCopy?: { time?: unknown } }).onlineCopy;
  if (typeof copy?.time !== 'string') throw new CoffreError('BadRequest', `job ${input.jobId} is not an online copy`);
  return commitPoint(ctx, p, pointId, {
    jobId: input.jobId, files: input.files, bytes: input.bytes, kind: 'Scheduled', consistency: input.consistency, counters: input.counters,
    warnings: [], time: copy.time, ...(input.details ? { details: input.details } : {}),
  });
}
