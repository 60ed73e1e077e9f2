/**
 * The Backup center's overview (items by health, the last day's jobs by status, active alerts,
 * storage per vault over time) and its job search, for what a principal may see.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { JobInfo, JobStatus } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import type { Health, JobFilter, Overview } from '../core/monitor-api.js';
import { listAlerts } from './alerts.js';
import { jobInfo } from './jobs.js';
import { itemStates } from './protected-items.js';
import { vaultCopies, type CopiesContext } from './storage-copies.js';
import { storageHistory, vaultsNow } from './storage-history.js';
import type { Visibility } from './visibility.js';

const DAY_MS = 86_400_000;
/** How far back the overview's storage chart goes. */
export const HISTORY_DAYS = 90;

export async function overview(ctx: CopiesContext & { clock: Clock }, v: Visibility): Promise<Overview> {
  const now = ctx.clock.now();
  const items: Record<Health, number> = { healthy: 0, warning: 0, critical: 0 };
  for (const s of await itemStates(ctx.db, v, now)) items[s.status.health]++;
  let jq = ctx.db.selectFrom('jobs').select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .where('start_time', '>=', new Date(now.getTime() - DAY_MS).toISOString());
  if (v.vaultIds) jq = jq.where('vault_id', 'in', v.vaultIds.size ? [...v.vaultIds] : ['']);
  if (v.containerId) jq = jq.where('container_id', '=', v.containerId);
  const jobsLast24h: Partial<Record<JobStatus, number>> = {};
  for (const r of await jq.groupBy('status').execute()) jobsLast24h[r.status as JobStatus] = Number(r.n);
  let rq = ctx.db.selectFrom('jobs').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'InProgress');
  if (v.vaultIds) rq = rq.where('vault_id', 'in', v.vaultIds.size ? [...v.vaultIds] : ['']);
  if (v.containerId) rq = rq.where('container_id', '=', v.containerId);
  const running = Number((await rq.executeTakeFirstOrThrow()).n);
  const since = new Date(now.getTime() - HISTORY_DAYS * DAY_MS).toISOString();
  const vaults = await Promise.all((await vaultsNow(ctx.db, v.vaultIds)).map(async (x) => {
    const history = await storageHistory(ctx.db, x.id, since);
    // The chart ends with the present, not with the last hourly sample.
    history.push({ time: now.toISOString(), storedBytes: x.storedBytes, points: x.points, protectedBytes: x.protectedBytes });
    return { vault: x.name, storedBytes: x.storedBytes, points: x.points, items: x.items, protectedBytes: x.protectedBytes, redundancy: x.redundancy, ...(await vaultCopies(ctx, x)), history };
  }));
  return { now: now.toISOString(), items, jobsLast24h, running, activeAlerts: await listAlerts(ctx.db, v, {}), vaults };
}

export const MAX_JOBS = 500;

/** Jobs newest first, filtered on the server (the dashboard polls this for live progress). */
export async function searchJobs(db: Kysely<Database>, v: Visibility, f: JobFilter): Promise<JobInfo[]> {
  let q = db.selectFrom('jobs').innerJoin('vaults', 'vaults.id', 'jobs.vault_id').leftJoin('items', 'items.id', 'jobs.item_id')
    .selectAll('jobs').select(['vaults.name as vaultName', 'items.name as itemName']);
  if (v.vaultIds) q = q.where('jobs.vault_id', 'in', v.vaultIds.size ? [...v.vaultIds] : ['']);
  if (v.containerId) q = q.where('jobs.container_id', '=', v.containerId);
  if (f.status) q = q.where('jobs.status', '=', f.status);
  if (f.operation) q = q.where('jobs.operation', '=', f.operation);
  if (f.item) q = q.where('items.name', '=', f.item);
  if (f.vault) q = q.where('vaults.name', '=', f.vault);
  const rows = await q.orderBy('jobs.start_time', 'desc').orderBy('jobs.id').limit(Math.min(f.limit ?? 200, MAX_JOBS)).execute();
  return rows.map((r) => jobInfo(r, r.vaultName, r.itemName ?? null));
}
