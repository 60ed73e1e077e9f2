/** Job bookkeeping: every backup, restore and verify is a job with live counters. */
import type { Kysely, Selectable } from 'kysely';
import type { Database, JobRow } from '../catalog/schema.js';
import type { JobCounters, JobInfo, JobProblem, JobStatus, Operation } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { lockKey } from '../catalog/engine.js';
import { newId } from '../core/ids.js';
import { principalName, requireContainer, requireVault, type Principal } from './access.js';
import { visibleVaults } from './authorize.js';

/** A running job whose agent has not reported for this long is declared failed. */
export const STALE_JOB_MS = 120_000;

export interface JobContext {
  db: Kysely<Database>;
  clock: Clock;
  /** Told whenever a job ends (alerts and metrics, src/vault/monitoring.ts); it must only schedule work. */
  jobEnded?: (jobId: string) => void;
}

export function jobInfo(row: Selectable<JobRow>, vaultName: string, itemName: string | null): JobInfo {
  const end = row.end_time ? Date.parse(row.end_time) : null;
  return {
    id: row.id,
    operation: row.operation as Operation,
    status: row.status as JobStatus,
    item: itemName,
    vault: vaultName,
    startTime: row.start_time,
    endTime: row.end_time,
    durationSeconds: end === null ? null : Math.round((end - Date.parse(row.start_time)) / 100) / 10,
    pointId: row.point_id,
    bytesScanned: Number(row.bytes_scanned),
    bytesNew: Number(row.bytes_new),
    bytesUploaded: Number(row.bytes_uploaded),
    filesScanned: Number(row.files_scanned),
    filesChanged: Number(row.files_changed),
    errors: JSON.parse(row.errors) as JobProblem[],
    warnings: JSON.parse(row.warnings) as JobProblem[],
    details: JSON.parse(row.details) as Record<string, unknown>,
  };
}

export async function createJob(ctx: JobContext, job: {
  vaultId: string; itemId: string | null; containerId: string | null; operation: Operation; pointId?: string | null; details?: Record<string, unknown>;
}): Promise<string> {
  const id = newId();
  const now = ctx.clock.now().toISOString();
  const insert = (db: Kysely<Database>) => db.insertInto('jobs').values({
    id, vault_id: job.vaultId, item_id: job.itemId, container_id: job.containerId, operation: job.operation,
    status: 'InProgress', start_time: now, end_time: null, heartbeat: now,
    bytes_scanned: 0, bytes_new: 0, bytes_uploaded: 0, files_scanned: 0, files_changed: 0,
    errors: '[]', warnings: '[]', point_id: job.pointId ?? null, details: JSON.stringify(job.details ?? {}),
  }).execute();
  // GC deletes a container's unreferenced chunks only if no backup runs there, and a backup
  // learns which chunks exist only after its job row is written. On PostgreSQL the two
  // transactions would otherwise interleave (GC checks, the job row lands, the backup reuses a
  // chunk, GC deletes it): both take the container's lock.
  if (job.operation === 'Backup' && job.containerId) {
    const key = `container:${job.containerId}`;
    if (ctx.db.isTransaction) {
      await lockKey(ctx.db, key);
      await insert(ctx.db);
    } else {
      await ctx.db.transaction().execute(async (tx) => { await lockKey(tx, key); await insert(tx); });
    }
  } else {
    await insert(ctx.db);
  }
  return id;
}

export async function loadJob(ctx: JobContext, p: Principal, id: string): Promise<Selectable<JobRow>> {
  const row = await ctx.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw new CoffreError('JobNotFound', `no job ${id}; list jobs with \`coffre jobs\``);
  requireVault(p, row.vault_id);
  if (row.container_id) requireContainer(p, row.container_id);
  return row;
}

export async function describeJob(ctx: JobContext, id: string): Promise<JobInfo> {
  const row = await ctx.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const names = await ctx.db.selectFrom('vaults').leftJoin('items', (j) => j.on('items.id', '=', row.item_id ?? ''))
    .select(['vaults.name as vault', 'items.name as item']).where('vaults.id', '=', row.vault_id).executeTakeFirstOrThrow();
  return jobInfo(row, names.vault, names.item ?? null);
}

export async function reportProgress(ctx: JobContext, p: Principal, id: string, counters: Partial<JobCounters>): Promise<void> {
  const row = await loadJob(ctx, p, id);
  if (row.status === 'Cancelled') throw new CoffreError('JobCancelled', `job ${id} was cancelled; stop working on it`);
  if (row.status !== 'InProgress') throw new CoffreError('BadRequest', `job ${id} is ${row.status}, not in progress`);
  await ctx.db.updateTable('jobs').set({
    heartbeat: ctx.clock.now().toISOString(),
    ...(counters.bytesScanned !== undefined && { bytes_scanned: counters.bytesScanned }),
    ...(counters.bytesNew !== undefined && { bytes_new: counters.bytesNew }),
    ...(counters.bytesUploaded !== undefined && { bytes_uploaded: counters.bytesUploaded }),
    ...(counters.filesScanned !== undefined && { files_scanned: counters.filesScanned }),
    ...(counters.filesChanged !== undefined && { files_changed: counters.filesChanged }),
  }).where('id', '=', id).execute();
}

export async function finishJob(ctx: JobContext, id: string, outcome: {
  status: JobStatus; counters?: Partial<JobCounters>; errors?: JobProblem[]; warnings?: JobProblem[]; details?: Record<string, unknown>; pointId?: string;
}): Promise<void> {
  const now = ctx.clock.now().toISOString();
  const row = await ctx.db.selectFrom('jobs').select(['details']).where('id', '=', id).executeTakeFirstOrThrow();
  const c = outcome.counters ?? {};
  await ctx.db.updateTable('jobs').set({
    status: outcome.status, end_time: now, heartbeat: now,
    ...(c.bytesScanned !== undefined && { bytes_scanned: c.bytesScanned }),
    ...(c.bytesNew !== undefined && { bytes_new: c.bytesNew }),
    ...(c.bytesUploaded !== undefined && { bytes_uploaded: c.bytesUploaded }),
    ...(c.filesScanned !== undefined && { files_scanned: c.filesScanned }),
    ...(c.filesChanged !== undefined && { files_changed: c.filesChanged }),
    ...(outcome.errors && { errors: JSON.stringify(outcome.errors) }),
    ...(outcome.warnings && { warnings: JSON.stringify(outcome.warnings) }),
    ...(outcome.pointId && { point_id: outcome.pointId }),
    ...(outcome.details && { details: JSON.stringify({ ...JSON.parse(row.details) as object, ...outcome.details }) }),
  }).where('id', '=', id).execute();
  ctx.jobEnded?.(id);
}

/** A killed agent never reports again: its job ends as Failed rather than running forever. */
export async function failStaleJobs(ctx: JobContext): Promise<void> {
  const now = ctx.clock.now();
  const limit = new Date(now.getTime() - STALE_JOB_MS).toISOString();
  await ctx.db.updateTable('jobs').set({
    status: 'Failed', end_time: now.toISOString(),
    errors: JSON.stringify([{ code: 'AgentLost', message: 'the agent stopped reporting (killed, crashed or disconnected); no point was created, and the next backup reuses the data that arrived' }]),
  }).where('status', '=', 'InProgress').where('heartbeat', '<', limit).execute();
}

export async function listJobs(ctx: JobContext, p: Principal, filter: { vaultId?: string; itemId?: string; limit?: number }): Promise<JobInfo[]> {
  await failStaleJobs(ctx);
  let q = ctx.db.selectFrom('jobs')
    .innerJoin('vaults', 'vaults.id', 'jobs.vault_id')
    .leftJoin('items', 'items.id', 'jobs.item_id')
    .selectAll('jobs').select(['vaults.name as vaultName', 'items.name as itemName']);
  if (filter.vaultId) q = q.where('jobs.vault_id', '=', filter.vaultId);
  if (filter.itemId) q = q.where('jobs.item_id', '=', filter.itemId);
  if (p.kind === 'agent') q = q.where('jobs.container_id', '=', p.containerId);
  const visible = await visibleVaults(ctx.db, p);
  if (visible !== 'all') q = q.where('jobs.vault_id', 'in', visible.size ? [...visible] : ['']); // '' matches no vault
  const rows = await q.orderBy('jobs.start_time', 'desc').orderBy('jobs.id').limit(filter.limit ?? 1000).execute();
  return rows.reverse().map((r) => jobInfo(r, r.vaultName, r.itemName ?? null));
}

/** Cancels a running job; its agent learns it at its next report (JobCancelled) and stops. */
export async function cancelJob(ctx: JobContext, p: Principal, id: string): Promise<JobInfo> {
  const row = await loadJob(ctx, p, id);
  const now = ctx.clock.now().toISOString();
  const res = await ctx.db.updateTable('jobs').set({
    status: 'Cancelled', end_time: now, heartbeat: now,
    errors: JSON.stringify([{ code: 'Cancelled', message: `cancelled by ${principalName(p)}` }]),
  }).where('id', '=', id).where('status', '=', 'InProgress').executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw new CoffreError('JobNotCancellable', `job ${id} is ${row.status}: only a job in progress can be cancelled`);
  return describeJob(ctx, id);
}
