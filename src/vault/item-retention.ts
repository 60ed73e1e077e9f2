/**
 * Retention of one item's points under a policy, whichever kind the item is: files and VMs
 * by the shared rules, databases chain-aware (a point stays while a kept point needs it).
 * The one place the vault evaluates retention, for refreshing expiries and for dry runs.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { PointKind } from '../core/api.js';
import { isDbPolicy, type AnyPolicy } from '../policy/db-policy.js';
import { evaluateDbRetention } from '../policy/db-retention.js';
import { evaluateRetention, type RetentionResult } from '../policy/retention.js';
import { dbChainPoints } from './db-points.js';

export interface ItemRetention {
  /** The item's points, oldest first. */
  points: { id: string; time: string; kind: string; retain_until: string | null; expires_at: string }[];
  /** One result per point, in the same order; `keptFor` for database points a kept point needs. */
  results: (RetentionResult & { keptFor?: string[] })[];
}

export async function itemRetention(ctx: { db: Kysely<Database> }, itemId: string, policy: AnyPolicy, now: Date): Promise<ItemRetention> {
  const points = await ctx.db.selectFrom('points').select(['id', 'time', 'kind', 'retain_until', 'expires_at'])
    .where('item_id', '=', itemId).orderBy('time').orderBy('id').execute();
  if (!isDbPolicy(policy)) {
    const results = evaluateRetention(policy, points.map((pt) => ({
      id: pt.id, time: new Date(pt.time), kind: pt.kind as PointKind, ...(pt.retain_until ? { retainUntil: pt.retain_until } : {}),
    })), now);
    return { points, results };
  }
  const chain = new Map((await dbChainPoints(ctx, itemId)).map((c) => [c.id, c]));
  const results = evaluateDbRetention(policy, points.flatMap((pt) => {
    const c = chain.get(pt.id);
    // A point without database facts cannot be part of a chain: it is kept by its own date alone.
    return [{
      ...(c ?? { id: pt.id, type: 'Log' as const, timeline: 0, firstSegment: -1, lastSegment: -1 }),
      time: new Date(pt.time), kind: pt.kind as PointKind, ...(pt.retain_until ? { retainUntil: pt.retain_until } : {}),
    }];
  }), now);
  return { points, results };
}
