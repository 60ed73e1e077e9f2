/**
 * Every protected item with its health, in a handful of set queries (not one per item): the
 * facts the pure verdict of item-health.ts needs, read from the catalog. The Backup center's
 * items page, its overview, the alert rules and /metrics all read items through here.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { JobProblem, JobStatus } from '../core/api.js';
import type { ItemHealthStatus } from '../core/monitor-api.js';
import type { Policy } from '../policy/policy.js';
import { fullAsPolicy, isDbPolicy, validateAnyPolicy } from '../policy/db-policy.js';
import { conditionsOf, nextRun, worst, type Condition, type ItemFacts } from './item-health.js';
import { RUN_WINDOW_MS } from './scheduler.js';
import type { Visibility } from './visibility.js';

const SUCCESS: JobStatus[] = ['Completed', 'CompletedWithWarnings'];

export interface ItemState { status: ItemHealthStatus; vaultId: string; containerId: string; conditions: Condition[] }

function firstError(errors: string): JobProblem | null {
  const list = JSON.parse(errors) as JobProblem[];
  return list[0] ?? null;
}

export async function itemStates(db: Kysely<Database>, v: Visibility, now: Date): Promise<ItemState[]> {
  let q = db.selectFrom('items')
    .innerJoin('vaults', 'vaults.id', 'items.vault_id')
    .innerJoin('containers', 'containers.id', 'items.container_id')
    .innerJoin('policies', 'policies.id', 'items.policy_id')
    .leftJoin('schedules', 'schedules.item_id', 'items.id')
    .leftJoin('backup_requests', 'backup_requests.item_id', 'items.id')
    .leftJoin('item_protection', 'item_protection.item_id', 'items.id')
    .select(['item_protection.state as protection', 'items.id', 'items.name', 'items.kind', 'items.created_at as createdAt', 'items.vault_id as vaultId', 'items.container_id as containerId',
      'vaults.name as vault', 'containers.name as machine', 'policies.name as policy', 'policies.body as policyBody',
      'schedules.item_id as scheduled', 'backup_requests.requested_at as requestedAt']);
  if (v.vaultIds) q = q.where('items.vault_id', 'in', v.vaultIds.size ? [...v.vaultIds] : ['']);
  if (v.containerId) q = q.where('items.container_id', '=', v.containerId);
  const items = await q.orderBy('vaults.name').orderBy('items.name').execute();
  if (items.length === 0) return [];

  const lastSuccess = new Map((await db.selectFrom('jobs').select(['item_id', (eb) => eb.fn.max('end_time').as('t')])
    .where('operation', '=', 'Backup').where('status', 'in', SUCCESS).where('item_id', 'is not', null).groupBy('item_id').execute())
    .map((r) => [r.item_id!, r.t as string | null]));
  const latest = new Map((await db.selectFrom('jobs as j')
    .select(['j.id', 'j.item_id', 'j.status', 'j.start_time', 'j.end_time', 'j.warnings'])
    .where('j.operation', '=', 'Backup')
    .where('j.start_time', '=', (eb) => eb.selectFrom('jobs as k').select((k) => k.fn.max('k.start_time').as('m'))
      .whereRef('k.item_id', '=', 'j.item_id').where('k.operation', '=', 'Backup'))
    .orderBy('j.id').execute()).map((r) => [r.item_id!, r]));
  // Failed backups after the item's last success: what JobFailed and MissedSchedule report.
  const failures = await db.selectFrom('jobs as j').select(['j.id', 'j.item_id', 'j.end_time', 'j.errors'])
    .where('j.operation', '=', 'Backup').where('j.status', '=', 'Failed')
    .where((eb) => eb('j.end_time', '>', eb.fn.coalesce(
      eb.selectFrom('jobs as s').select((s) => s.fn.max('s.end_time').as('m')).whereRef('s.item_id', '=', 'j.item_id')
        .where('s.operation', '=', 'Backup').where('s.status', 'in', SUCCESS), eb.val(''))))
    .orderBy('j.end_time').execute();
  const failuresOf = new Map<string, ItemFacts['failuresSinceSuccess']>();
  for (const f of failures) {
    const list = failuresOf.get(f.item_id!) ?? [];
    list.push({ jobId: f.id, endTime: f.end_time!, error: firstError(f.errors) });
    failuresOf.set(f.item_id!, list);
  }
  const points = new Map((await db.selectFrom('points').select(['item_id', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('item_id').execute())
    .map((r) => [r.item_id, Number(r.n)]));
  const protectedBytes = new Map((await db.selectFrom('points as p').select(['p.item_id', 'p.bytes'])
    .where('p.time', '=', (eb) => eb.selectFrom('points as q').select((q) => q.fn.max('q.time').as('m')).whereRef('q.item_id', '=', 'p.item_id'))
    .execute()).map((r) => [r.item_id, Number(r.bytes)]));

  // A database policy's objective follows its full backups' schedule (any later backup, log included, meets it).
  const policies = new Map<string, Policy>();
  return items.map((it) => {
    let policy = policies.get(it.policyBody);
    if (!policy) {
      const any = validateAnyPolicy(JSON.parse(it.policyBody));
      policy = isDbPolicy(any) ? fullAsPolicy(any) : any;
      policies.set(it.policyBody, policy);
    }
    // A stopped or soft-deleted item takes no backups: no objective, no missed runs.
    const protection = it.protection ?? 'Protected';
    const last = latest.get(it.id);
    const facts: ItemFacts = {
      createdAt: it.createdAt,
      schedule: it.scheduled && protection === 'Protected' ? policy : null,
      lastSuccess: lastSuccess.get(it.id) ?? null,
      lastBackup: last ? { jobId: last.id, status: last.status as JobStatus, startTime: last.start_time, endTime: last.end_time, warnings: (JSON.parse(last.warnings) as unknown[]).length } : null,
      failuresSinceSuccess: failuresOf.get(it.id) ?? [],
    };
    const { rpo, conditions } = conditionsOf(facts, now, RUN_WINDOW_MS);
    const status: ItemHealthStatus = {
      id: it.id, name: it.name, vault: it.vault, machine: it.machine, kind: it.kind, policy: it.policy, createdAt: it.createdAt, protection,
      health: worst(conditions), reasons: conditions.map((c) => c.reason),
      lastBackup: facts.lastBackup ? { jobId: facts.lastBackup.jobId, status: facts.lastBackup.status, startTime: facts.lastBackup.startTime, endTime: facts.lastBackup.endTime } : null,
      lastSuccess: facts.lastSuccess, nextRun: nextRun(facts, now), rpo,
      points: points.get(it.id) ?? 0, protectedBytes: protectedBytes.get(it.id) ?? 0, backupRequestedAt: it.requestedAt ?? null,
    };
    return { status, vaultId: it.vaultId, containerId: it.containerId, conditions };
  });
}
