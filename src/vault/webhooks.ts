/**
 * Webhook delivery of alert notifications, through an outbox in the catalog: a state change
 * writes one row per webhook in the same transaction as the change, and delivery reads the
 * rows that are due. A notification therefore survives a restart, is retried with backoff
 * (30 s doubling to an hour, 10 tries) until the receiver answers 2xx, and is never sent for
 * a change that did not happen. Each try carries the same `id` (and `x-coffre-delivery`), so
 * a receiver that answered but whose answer was lost can drop the repeat.
 *
 * Times come from the vault's Clock (tests drive retries without waiting); with several server
 * nodes, a row is leased by moving its next try forward before it is sent.
 */
import { createHmac } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import type { AlertNotification, NotificationInfo } from '../core/monitor-api.js';

export const MAX_ATTEMPTS = 10;
export const FIRST_RETRY_MS = 30_000;
export const MAX_RETRY_MS = 60 * 60 * 1000;
/** How long one try may take, and how long a node holds a row it is sending. */
export const ATTEMPT_TIMEOUT_MS = 10_000;
const LEASE_MS = 60_000;
const BATCH = 50;

export type Fetch = (url: string, init: { method: string; headers: Record<string, string>; body: string; signal: AbortSignal }) => Promise<{ status: number }>;

export function retryDelay(attempts: number): number {
  return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1));
}

export interface DeliveryResult { delivered: number; failed: number; gaveUp: number }

export async function deliverDue(ctx: { db: Kysely<Database>; clock: Clock }, send: Fetch, secrets: Map<string, string>): Promise<DeliveryResult> {
  const result: DeliveryResult = { delivered: 0, failed: 0, gaveUp: 0 };
  const now = ctx.clock.now();
  const due = await ctx.db.selectFrom('alert_notifications').selectAll()
    .where('delivered_at', 'is', null).where('gave_up_at', 'is', null).where('next_attempt_at', '<=', now.toISOString())
    .orderBy('created_at').orderBy('id').limit(BATCH).execute();
  for (const n of due) {
    const lease = await ctx.db.updateTable('alert_notifications').set({ next_attempt_at: new Date(now.getTime() + LEASE_MS).toISOString() })
      .where('id', '=', n.id).where('next_attempt_at', '=', n.next_attempt_at).where('delivered_at', 'is', null).executeTakeFirst();
    if (Number(lease.numUpdatedRows) !== 1) continue; // another node took it
    const message: AlertNotification = { ...(JSON.parse(n.payload) as Omit<AlertNotification, 'sentAt'>), sentAt: ctx.clock.now().toISOString() };
    const body = JSON.stringify(message);
    const headers: Record<string, string> = {
      'content-type': 'application/json', 'user-agent': 'coffre-alerts', 'x-coffre-event': n.event, 'x-coffre-delivery': n.id,
    };
    const secret = secrets.get(n.url);
    if (secret) headers['x-coffre-signature'] = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    let error: string | null = null;
    try {
      const res = await send(n.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS) });
      if (res.status < 200 || res.status >= 300) error = `the receiver answered ${res.status}`;
    } catch (e) {
      error = `cannot reach the receiver: ${(e as Error).message}`;
    }
    const attempts = n.attempts + 1;
    const at = ctx.clock.now();
    if (error === null) {
      await ctx.db.updateTable('alert_notifications').set({ attempts, delivered_at: at.toISOString(), last_error: null }).where('id', '=', n.id).execute();
      result.delivered++;
    } else if (attempts >= MAX_ATTEMPTS) {
      await ctx.db.updateTable('alert_notifications').set({ attempts, gave_up_at: at.toISOString(), last_error: error }).where('id', '=', n.id).execute();
      result.gaveUp++;
    } else {
      await ctx.db.updateTable('alert_notifications').set({ attempts, last_error: error, next_attempt_at: new Date(at.getTime() + retryDelay(attempts)).toISOString() })
        .where('id', '=', n.id).execute();
      result.failed++;
    }
  }
  return result;
}

export const fetchSend: Fetch = async (url, init) => {
  const res = await fetch(url, init);
  // The body is not needed; reading it lets the connection be reused.
  await res.arrayBuffer().catch(() => undefined);
  return { status: res.status };
};

export async function listNotifications(db: Kysely<Database>, alertIds: string[]): Promise<NotificationInfo[]> {
  if (alertIds.length === 0) return [];
  const rows = await db.selectFrom('alert_notifications').selectAll().where('alert_id', 'in', alertIds).orderBy('created_at').orderBy('id').execute();
  return rows.map((r) => ({
    id: r.id, alertId: r.alert_id, event: r.event as 'fired' | 'resolved', url: r.url, attempts: r.attempts, nextAttemptAt: r.next_attempt_at,
    deliveredAt: r.delivered_at, gaveUpAt: r.gave_up_at, lastError: r.last_error, createdAt: r.created_at,
  }));
}
