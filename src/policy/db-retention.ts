/**
 * How long each database point is kept, chain-aware. Pure, and like the file retention
 * evaluated with the CURRENT policy over the points that exist (retroactive by design).
 *
 * A point's own expiry:
 * - Full: the full's daily/weekly/monthly/yearly rules (the shared retention engine, on the
 *   full's schedule); an on-demand Full its retain-until day;
 * - Differential: its time + differential.retentionDays; Log: its time + log.retentionDays;
 *   (when the policy has no such section, an on-demand one keeps its retain-until day, a
 *   scheduled one nothing).
 * Then the chain: a point is kept at least as long as every kept point that needs it (a Full
 * while a Differential or Log point built on it is kept; earlier logs while a later log of the
 * same run is kept), so every point still listed can actually be restored. `keptFor` names the
 * points that extend an expiry past the point's own.
 */
import type { DbPolicy } from './db-policy.js';
import { fullAsPolicy } from './db-policy.js';
import { needsOfAll, type ChainPoint } from './db-chain.js';
import { evaluateRetention, type RetentionResult, type RuleName } from './retention.js';

const DAY = 86_400_000;

export interface DbRetentionPoint extends ChainPoint {
  time: Date;
  kind: 'Scheduled' | 'OnDemand';
  retainUntil?: string;
}

export interface DbRetentionResult extends RetentionResult {
  /** The expiry the point's own rule gives. */
  ownExpiresAt: Date;
  /** Points kept longer that need this one, when they extend its expiry. */
  keptFor: string[];
}

/** When a point's chain position is settled: the later, the more points it may need. */
function chainKey(p: DbRetentionPoint): number {
  const at = p.type === 'Log' ? p.to : p.consistentAt;
  return at ? Date.parse(at) : p.time.getTime();
}

/** Expiry and reasons of every point, in input order. Points of one item must be passed together. */
export function evaluateDbRetention(policy: DbPolicy, points: readonly DbRetentionPoint[], now: Date): DbRetentionResult[] {
  const own = new Map<string, { at: number; rules: RuleName[] }>();
  const fullPolicy = fullAsPolicy(policy);
  const fulls = points.filter((p) => p.type === 'Full');
  evaluateRetention(fullPolicy, fulls.map((p) => ({ id: p.id, time: p.time, kind: p.kind, ...(p.retainUntil ? { retainUntil: p.retainUntil } : {}) })), now)
    .forEach((r) => own.set(r.id, { at: r.expiresAt.getTime(), rules: r.rules }));
  for (const p of points) {
    if (p.type === 'Full') continue;
    const days = p.type === 'Differential' ? policy.differential?.retentionDays : policy.log?.retentionDays;
    if (days !== undefined) own.set(p.id, { at: p.time.getTime() + days * DAY, rules: [] });
    else if (p.kind === 'OnDemand' && p.retainUntil) {
      const [r] = evaluateRetention(fullPolicy, [{ id: p.id, time: p.time, kind: 'OnDemand', retainUntil: p.retainUntil }], now);
      own.set(p.id, { at: r!.expiresAt.getTime(), rules: [] });
    } else own.set(p.id, { at: p.time.getTime(), rules: [] });
  }

  const expiry = new Map<string, number>([...own].map(([id, o]) => [id, o.at]));
  const keptFor = new Map<string, string[]>(points.map((p) => [p.id, []]));
  const needs = needsOfAll(points);
  // Newest first: a point's final expiry is known before the older points it needs are visited.
  const order = [...points].sort((a, b) => chainKey(b) - chainKey(a));
  for (const q of order) {
    const qAt = expiry.get(q.id)!;
    for (const p of needs.get(q.id) ?? []) {
      if (qAt > expiry.get(p)!) expiry.set(p, qAt);
      if (qAt > own.get(p)!.at) keptFor.get(p)!.push(q.id);
    }
  }
  return points.map((p) => {
    const at = expiry.get(p.id)!;
    return {
      id: p.id, expiresAt: new Date(at), keep: at > now.getTime(), rules: own.get(p.id)!.rules,
      ownExpiresAt: new Date(own.get(p.id)!.at), keptFor: keptFor.get(p.id)!,
    };
  });
}
