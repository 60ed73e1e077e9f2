/**
 * Alerts: the rules of alert-rules.ts applied to the catalog, with states Active → Resolved,
 * de-duplicated (at most one active alert per rule and key, enforced by a unique index), and a
 * webhook notification queued in the same transaction as each state change (webhooks.ts sends
 * them). Nothing else changes an alert's state, so a receiver gets exactly one notification per
 * change, however often the rules are evaluated.
 *
 * The AlertCenter evaluates the rules on the vault's maintenance tick and soon after any job
 * ends (jobs.ts calls `jobEnded`), one evaluation at a time: a job that ends during an
 * evaluation causes one more, not one each.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { AlertRow, Database } from '../catalog/schema.js';
import type { JobProblem, Operation } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import type { AlertInfo, AlertNotification, AlertRule, AlertSeverity } from '../core/monitor-api.js';
import { newId } from '../core/ids.js';
import { evaluateRules, type DesiredAlert, type EndedVerify, type FailedJobs, type VaultReplication } from './alert-rules.js';
import { loadSettings } from './alert-settings.js';
import { itemStates } from './protected-items.js';
import { vaultsNow } from './storage-history.js';
import { ALL, sees, type Visibility } from './visibility.js';
import { deliverDue, fetchSend, type DeliveryResult, type Fetch } from './webhooks.js';

export interface AlertContext {
  db: Kysely<Database>;
  clock: Clock;
  /** What each vault with a paired region still has to copy there (none when absent). */
  replication?: () => Promise<VaultReplication[]>;
}

const SUCCESS = ['Completed', 'CompletedWithWarnings'];
/** Verifications looked at per evaluation: the latest of each vault and item are among them. */
const VERIFY_WINDOW = 1000;

function firstError(errors: string): JobProblem | null {
  return (JSON.parse(errors) as JobProblem[])[0] ?? null;
}

/** Failed restores, prunes and garbage collections since their last success on the same item or vault. */
async function otherFailures(db: Kysely<Database>): Promise<FailedJobs[]> {
  const rows = await db.selectFrom('jobs as j')
    .innerJoin('vaults', 'vaults.id', 'j.vault_id').leftJoin('items', 'items.id', 'j.item_id')
    .select(['j.id', 'j.operation', 'j.vault_id', 'j.item_id', 'j.end_time', 'j.errors', 'vaults.name as vault', 'items.name as item'])
    .where('j.status', '=', 'Failed').where('j.operation', 'not in', ['Backup', 'Verify'])
    .where((eb) => eb('j.end_time', '>', eb.fn.coalesce(
      eb.selectFrom('jobs as s').select((s) => s.fn.max('s.end_time').as('m'))
        .whereRef('s.operation', '=', 'j.operation').whereRef('s.vault_id', '=', 'j.vault_id')
        .where((x) => x(x.fn.coalesce('s.item_id', x.val('')), '=', x.fn.coalesce('j.item_id', x.val(''))))
        .where('s.status', 'in', SUCCESS), eb.val(''))))
    .orderBy('j.end_time').execute();
  const groups = new Map<string, FailedJobs>();
  for (const r of rows) {
    const key = `${r.operation}:${r.item_id ?? r.vault_id}`;
    let g = groups.get(key);
    if (!g) {
      g = { operation: r.operation as Operation, vaultId: r.vault_id, vault: r.vault, itemId: r.item_id, item: r.item ?? null, jobs: [] };
      groups.set(key, g);
    }
    g.jobs.push({ id: r.id, endTime: r.end_time!, error: firstError(r.errors) });
  }
  return [...groups.values()];
}

async function endedVerifies(db: Kysely<Database>): Promise<EndedVerify[]> {
  const rows = await db.selectFrom('jobs').innerJoin('vaults', 'vaults.id', 'jobs.vault_id').leftJoin('items', 'items.id', 'jobs.item_id')
    .select(['jobs.id', 'jobs.vault_id', 'jobs.item_id', 'jobs.status', 'jobs.end_time', 'jobs.errors', 'vaults.name as vault', 'items.name as item'])
    .where('jobs.operation', '=', 'Verify').where('jobs.end_time', 'is not', null)
    .orderBy('jobs.end_time', 'desc').limit(VERIFY_WINDOW).execute();
  return rows.map((r) => ({ id: r.id, vaultId: r.vault_id, vault: r.vault, itemId: r.item_id, item: r.item ?? null, status: r.status, endTime: r.end_time!, error: firstError(r.errors) }));
}

export async function desiredAlerts(ctx: AlertContext): Promise<DesiredAlert[]> {
  const now = ctx.clock.now();
  const [items, others, verifies, vaults, replication, settings] = await Promise.all([
    itemStates(ctx.db, ALL, now), otherFailures(ctx.db), endedVerifies(ctx.db), vaultsNow(ctx.db, null), ctx.replication?.() ?? [], loadSettings(ctx.db),
  ]);
  return evaluateRules({ items, otherFailures: others, verifies, vaults, replication, settings });
}

async function names(db: Kysely<Database>, row: Selectable<AlertRow>): Promise<{ vault: string | null; item: string | null }> {
  const v = row.vault_id ? await db.selectFrom('vaults').select('name').where('id', '=', row.vault_id).executeTakeFirst() : undefined;
  const i = row.item_id ? await db.selectFrom('items').select('name').where('id', '=', row.item_id).executeTakeFirst() : undefined;
  return { vault: v?.name ?? null, item: i?.name ?? null };
}

function alertInfo(row: Selectable<AlertRow>, n: { vault: string | null; item: string | null }): AlertInfo {
  return {
    id: row.id, rule: row.rule as AlertRule, severity: row.severity as AlertSeverity, state: row.state as 'Active' | 'Resolved',
    vault: n.vault, item: n.item, summary: row.summary, details: JSON.parse(row.details) as Record<string, unknown>,
    raisedAt: row.raised_at, updatedAt: row.updated_at, resolvedAt: row.resolved_at, occurrences: row.occurrences,
  };
}

/** Queues one notification per webhook for a state change, in the caller's transaction. */
async function enqueue(db: Kysely<Database>, row: Selectable<AlertRow>, event: 'fired' | 'resolved', urls: string[], now: string): Promise<void> {
  if (urls.length === 0) return;
  const alert = alertInfo(row, await names(db, row));
  for (const url of urls) {
    const id = newId();
    const payload: Omit<AlertNotification, 'sentAt'> = { id, event, alert };
    await db.insertInto('alert_notifications').values({
      id, alert_id: row.id, event, url, payload: JSON.stringify(payload), attempts: 0, next_attempt_at: now, delivered_at: null, gave_up_at: null, last_error: null, created_at: now,
    }).execute();
  }
}

export interface SyncResult { fired: string[]; resolved: string[] }

/** Makes the stored alerts match the desired ones: fire what is new, resolve what is gone, refresh the rest. */
export async function syncAlerts(ctx: AlertContext, desired: DesiredAlert[]): Promise<SyncResult> {
  const now = ctx.clock.now().toISOString();
  const urls = (await loadSettings(ctx.db)).webhooks.map((w) => w.url);
  const active = await ctx.db.selectFrom('alerts').selectAll().where('state', '=', 'Active').execute();
  const byKey = new Map(active.map((a) => [`${a.rule}\u0000${a.key}`, a]));
  const result: SyncResult = { fired: [], resolved: [] };
  for (const d of desired) {
    const k = `${d.rule}\u0000${d.key}`;
    const existing = byKey.get(k);
    byKey.delete(k);
    if (existing) {
      if (existing.summary !== d.summary || existing.occurrences !== d.occurrences || existing.severity !== d.severity) {
        await ctx.db.updateTable('alerts').set({ summary: d.summary, details: JSON.stringify(d.details), occurrences: d.occurrences, severity: d.severity, updated_at: now })
          .where('id', '=', existing.id).where('state', '=', 'Active').execute();
      }
      continue;
    }
    const row: Selectable<AlertRow> = {
      id: newId(), rule: d.rule, key: d.key, severity: d.severity, state: 'Active', vault_id: d.vaultId, item_id: d.itemId,
      summary: d.summary, details: JSON.stringify(d.details), raised_at: now, updated_at: now, resolved_at: null, occurrences: d.occurrences,
    };
    const fired = await ctx.db.transaction().execute(async (tx) => {
      // Another node may have raised it a moment ago: the unique index keeps one, and only its raiser notifies.
      const res = await tx.insertInto('alerts').values(row)
        .onConflict((oc) => oc.columns(['rule', 'key']).where(sql.ref('state'), '=', sql.lit('Active')).doNothing()).executeTakeFirst();
      if (Number(res.numInsertedOrUpdatedRows ?? 0n) !== 1) return false;
      await enqueue(tx, row, 'fired', urls, now);
      return true;
    });
    if (fired) result.fired.push(row.id);
  }
  for (const gone of byKey.values()) {
    const resolved = await ctx.db.transaction().execute(async (tx) => {
      const res = await tx.updateTable('alerts').set({ state: 'Resolved', resolved_at: now, updated_at: now }).where('id', '=', gone.id).where('state', '=', 'Active').executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      await enqueue(tx, { ...gone, state: 'Resolved', resolved_at: now, updated_at: now }, 'resolved', urls, now);
      return true;
    });
    if (resolved) result.resolved.push(gone.id);
  }
  return result;
}

/** Alerts a principal may see, newest first: active ones, or all (resolved too) since an instant. */
export async function listAlerts(db: Kysely<Database>, v: Visibility, filter: { all?: boolean; since?: string; limit?: number }): Promise<AlertInfo[]> {
  let q = db.selectFrom('alerts').leftJoin('vaults', 'vaults.id', 'alerts.vault_id').leftJoin('items', 'items.id', 'alerts.item_id')
    .selectAll('alerts').select(['vaults.name as vaultName', 'items.name as itemName', 'items.container_id as containerId']);
  if (!filter.all) q = q.where('alerts.state', '=', 'Active');
  if (filter.since) q = q.where((eb) => eb.or([eb('alerts.state', '=', 'Active'), eb('alerts.updated_at', '>=', filter.since!)]));
  const rows = await q.orderBy('alerts.raised_at', 'desc').orderBy('alerts.id').limit(filter.limit ?? 1000).execute();
  return rows.filter((r) => r.vault_id === null ? v.vaultIds === null : sees(v, r.vault_id, r.containerId))
    .map((r) => alertInfo(r, { vault: r.vaultName ?? null, item: r.itemName ?? null }));
}

/** One alert by id, if the principal may see it. */
export async function findAlert(db: Kysely<Database>, v: Visibility, id: string): Promise<AlertInfo | undefined> {
  const r = await db.selectFrom('alerts').leftJoin('vaults', 'vaults.id', 'alerts.vault_id').leftJoin('items', 'items.id', 'alerts.item_id')
    .selectAll('alerts').select(['vaults.name as vaultName', 'items.name as itemName', 'items.container_id as containerId'])
    .where('alerts.id', '=', id).executeTakeFirst();
  if (!r || !(r.vault_id === null ? v.vaultIds === null : sees(v, r.vault_id, r.containerId))) return undefined;
  return alertInfo(r, { vault: r.vaultName ?? null, item: r.itemName ?? null });
}

export interface AlertCenterOptions { send?: Fetch; onError?: (e: unknown) => void }

/** Runs evaluations one at a time, and delivers notifications after each. */
export class AlertCenter {
  private running: Promise<void> | null = null;
  private again = false;
  private closed = false;
  private readonly send: Fetch;
  /** Evaluations and deliveries that threw (the next tick tries again); exported as a metric. */
  errors = 0;
  lastDelivery: DeliveryResult = { delivered: 0, failed: 0, gaveUp: 0 };

  constructor(private readonly ctx: AlertContext, private readonly opts: AlertCenterOptions = {}) {
    this.send = opts.send ?? fetchSend;
  }

  /** Evaluate the rules and deliver what is due; resolves when done (a call during a run waits for one more run). */
  evaluate(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await syncAlerts(this.ctx, await desiredAlerts(this.ctx));
          await this.deliver();
        } catch (e) {
          this.errors++;
          this.opts.onError?.(e);
        }
      } while (this.again && !this.closed);
    })().finally(() => { this.running = null; });
    return this.running;
  }

  async deliver(): Promise<void> {
    const secrets = new Map((await loadSettings(this.ctx.db)).webhooks.filter((w) => w.secret).map((w) => [w.url, w.secret!]));
    this.lastDelivery = await deliverDue(this.ctx, this.send, secrets);
  }

  /** A job ended: evaluate soon (after the transaction that ended it commits). */
  jobEnded(): void {
    if (this.closed) return;
    setImmediate(() => { void this.evaluate(); });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running;
  }
}
