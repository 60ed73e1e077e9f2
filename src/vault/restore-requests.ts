/**
 * Restores asked for from the dashboard (or the API), carried out by the agent of the item's
 * machine: the vault cannot reach an agent, so the request waits in the catalog until the
 * daemon's next poll (GET /v1/agent/restores), which claims it once, restores with the
 * machine's keys (the vault never has them) and reports the outcome with its restore job.
 *
 * States: Pending → InProgress (claimed) → Completed | CompletedWithWarnings | Failed. A
 * claimed request whose agent vanished shows Failed once its job went stale, or, before the
 * job existed, after the same two minutes.
 */
import { isAbsolute } from 'node:path';
import type { Selectable } from 'kysely';
import type { RestoreRequestRow } from '../catalog/schema.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { RestoreRequestInfo, RestoreRequestState } from '../core/monitor-api.js';
import { principalName, type Principal } from './access.js';
import { findPoint, type DataContext } from './data.js';
import { STALE_JOB_MS } from './jobs.js';
import { visibilityOf, sees } from './visibility.js';

export type Overwrite = 'skip' | 'replace' | 'rename';

export interface RestoreRequestInput { point: string; target: string; paths?: string[]; overwrite?: Overwrite }

function checkInput(input: RestoreRequestInput): void {
  if (!isAbsolute(input.target) || input.target.includes('\0')) throw new CoffreError('InvalidArgument', `the target ${JSON.stringify(input.target)} must be an absolute folder path on the item's machine`);
  for (const p of input.paths ?? []) {
    if (p === '' || p.includes('\0') || p.split('/').includes('..')) throw new CoffreError('InvalidArgument', `the path ${JSON.stringify(p)} must name something inside the point (no "..")`);
  }
}

export async function requestRestore(ctx: DataContext, p: Principal, input: RestoreRequestInput): Promise<RestoreRequestInfo> {
  checkInput(input);
  // Who may restore this point was decided at the door (the restore permission on its vault).
  const point = await findPoint(ctx, p, input.point);
  const row: Selectable<RestoreRequestRow> = {
    id: newId(), vault_id: point.vault_id, item_id: point.item_id, container_id: point.container_id, point_id: point.id, target: input.target,
    paths: JSON.stringify(input.paths ?? []), overwrite: input.overwrite ?? 'rename', requested_by: principalName(p), requested_at: ctx.clock.now().toISOString(),
    state: 'Pending', job_id: null, claimed_at: null, ended_at: null, error: null,
  };
  await ctx.db.insertInto('restore_requests').values(row).execute();
  return (await describe(ctx, [row]))[0]!;
}

async function describe(ctx: DataContext, rows: Selectable<RestoreRequestRow>[]): Promise<RestoreRequestInfo[]> {
  const out: RestoreRequestInfo[] = [];
  const now = ctx.clock.now().getTime();
  for (const r of rows) {
    const names = await ctx.db.selectFrom('items').innerJoin('vaults', 'vaults.id', 'items.vault_id').innerJoin('containers', 'containers.id', 'items.container_id')
      .select(['items.name as item', 'vaults.name as vault', 'containers.name as machine']).where('items.id', '=', r.item_id).executeTakeFirst();
    let state = r.state as RestoreRequestState;
    let error = r.error;
    if (state === 'InProgress') {
      const job = r.job_id ? await ctx.db.selectFrom('jobs').select(['status', 'errors']).where('id', '=', r.job_id).executeTakeFirst() : undefined;
      if (job && job.status === 'Failed') { state = 'Failed'; error = (JSON.parse(job.errors) as { message: string }[])[0]?.message ?? 'the restore job failed'; }
      else if (!job && r.claimed_at && now - Date.parse(r.claimed_at) > STALE_JOB_MS) { state = 'Failed'; error = 'the agent claimed the request but never started the restore'; }
    }
    out.push({
      id: r.id, vault: names?.vault ?? '', item: names?.item ?? '', machine: names?.machine ?? '', pointId: r.point_id, target: r.target,
      paths: JSON.parse(r.paths) as string[], overwrite: r.overwrite as Overwrite, requestedBy: r.requested_by, requestedAt: r.requested_at,
      state, jobId: r.job_id, claimedAt: r.claimed_at, endedAt: r.ended_at, error,
    });
  }
  return out;
}

/** Requests a principal may see, newest first. */
export async function listRestoreRequests(ctx: DataContext, p: Principal, filter: { item?: string; limit?: number }): Promise<RestoreRequestInfo[]> {
  const v = await visibilityOf(ctx.db, p);
  let q = ctx.db.selectFrom('restore_requests').innerJoin('items', 'items.id', 'restore_requests.item_id').selectAll('restore_requests');
  if (filter.item) q = q.where((eb) => eb.or([eb('items.name', '=', filter.item!), eb('items.id', '=', filter.item!)]));
  const rows = (await q.orderBy('restore_requests.requested_at', 'desc').orderBy('restore_requests.id').limit(filter.limit ?? 200).execute())
    .filter((r) => sees(v, r.vault_id, r.container_id));
  return describe(ctx, rows);
}

function requireOwnAgent(p: Principal, row: Selectable<RestoreRequestRow> | undefined, id: string): asserts row is Selectable<RestoreRequestRow> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only the agent of the item\'s machine carries out a restore request');
  if (!row || row.container_id !== p.containerId) throw new CoffreError('RestoreRequestNotFound', `no restore request ${id} for this machine`);
}

/** What an agent has to restore: its machine's pending requests, oldest first. */
export async function pendingRestores(ctx: DataContext, p: Principal): Promise<RestoreRequestInfo[]> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'only a registered agent asks for its restore requests');
  const rows = await ctx.db.selectFrom('restore_requests').selectAll().where('container_id', '=', p.containerId).where('state', '=', 'Pending')
    .orderBy('requested_at').orderBy('id').execute();
  return describe(ctx, rows);
}

/** An agent takes a request; a request is handed out once. */
export async function claimRestore(ctx: DataContext, p: Principal, id: string): Promise<RestoreRequestInfo> {
  const row = await ctx.db.selectFrom('restore_requests').selectAll().where('id', '=', id).executeTakeFirst();
  requireOwnAgent(p, row, id);
  const now = ctx.clock.now().toISOString();
  const res = await ctx.db.updateTable('restore_requests').set({ state: 'InProgress', claimed_at: now }).where('id', '=', id).where('state', '=', 'Pending').executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw new CoffreError('BadRequest', `restore request ${id} was already taken`);
  return (await describe(ctx, [{ ...row, state: 'InProgress', claimed_at: now }]))[0]!;
}

/** The agent's report: the restore job it ran (which holds the counters and errors), or why it could not start. */
export async function finishRestore(ctx: DataContext, p: Principal, id: string, outcome: { jobId?: string; error?: string }): Promise<RestoreRequestInfo> {
  const row = await ctx.db.selectFrom('restore_requests').selectAll().where('id', '=', id).executeTakeFirst();
  requireOwnAgent(p, row, id);
  if (row.state !== 'InProgress') throw new CoffreError('BadRequest', `restore request ${id} is ${row.state}, not in progress`);
  let state: RestoreRequestState = 'Failed';
  let error = outcome.error ?? null;
  if (outcome.jobId) {
    const job = await ctx.db.selectFrom('jobs').select(['status', 'operation', 'container_id', 'point_id', 'errors']).where('id', '=', outcome.jobId).executeTakeFirst();
    if (!job || job.operation !== 'Restore' || job.container_id !== row.container_id || job.point_id !== row.point_id) {
      throw new CoffreError('BadRequest', `job ${outcome.jobId} is not a restore of point ${row.point_id} by this machine`);
    }
    if (job.status === 'Completed' || job.status === 'CompletedWithWarnings') state = job.status;
    else error ??= (JSON.parse(job.errors) as { message: string }[])[0]?.message ?? `the restore job ended ${job.status}`;
  }
  const now = ctx.clock.now().toISOString();
  await ctx.db.updateTable('restore_requests').set({ state, job_id: outcome.jobId ?? null, ended_at: now, error }).where('id', '=', id).execute();
  return (await describe(ctx, [{ ...row, state, job_id: outcome.jobId ?? null, ended_at: now, error }]))[0]!;
}

/** Links the restore job an agent started for a request: the request then follows the job (progress, a lost agent). */
export async function linkRestoreJob(ctx: DataContext, p: Principal, id: string, jobId: string): Promise<void> {
  const row = await ctx.db.selectFrom('restore_requests').selectAll().where('id', '=', id).executeTakeFirst();
  requireOwnAgent(p, row, id);
  const job = await ctx.db.selectFrom('jobs').select(['operation', 'container_id', 'point_id']).where('id', '=', jobId).executeTakeFirst();
  if (!job || job.operation !== 'Restore' || job.container_id !== row.container_id || job.point_id !== row.point_id) {
    throw new CoffreError('BadRequest', `job ${jobId} is not a restore of point ${row.point_id} by this machine`);
  }
  await ctx.db.updateTable('restore_requests').set({ job_id: jobId }).where('id', '=', id).where('state', '=', 'InProgress').execute();
}
