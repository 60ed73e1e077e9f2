/**
 * The database chain (restorable ranges, restore plans) and chain-aware retention, against a
 * small model written the obvious way: to restore an instant, take the newest base consistent
 * by then and walk the WAL segment by segment through log points until one ends after the
 * instant; a point is kept as long as any kept point whose restore needs it (to a fixpoint).
 * Chains are generated as the agent makes them (segments grow with time, log points follow
 * each other, some segments are lost) and then some points are deleted, as pruning or damage would.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { validateDbPolicy, fullAsPolicy } from './db-policy.js';
import { planForTime, restorableRanges, type ChainPoint } from './db-chain.js';
import { evaluateDbRetention, type DbRetentionPoint } from './db-retention.js';
import { evaluateRetention } from './retention.js';

const MIN = 60_000;
const DAY = 86_400_000;
const START = Date.UTC(2026, 0, 4);
const iso = (ms: number) => new Date(ms).toISOString();

type Ev = { kind: 'F' | 'D' | 'L' | 'gap'; minutes: number };

/** A chain as the agent would build it from these events. */
function simulate(events: Ev[]): DbRetentionPoint[] {
  const out: DbRetentionPoint[] = [];
  let t = START;
  let seg = 10;
  let lost = -1;
  let prevLog: DbRetentionPoint | null = null;
  let n = 0;
  for (const ev of events) {
    t += ev.minutes * MIN;
    const id = `p${n++}`;
    if (ev.kind === 'gap') { lost = seg; seg++; continue; }
    if (ev.kind === 'F' || ev.kind === 'D') {
      const full = [...out].reverse().find((p) => p.type === 'Full');
      if (ev.kind === 'D' && !full) continue;
      out.push({ id, type: ev.kind === 'F' ? 'Full' : 'Differential', timeline: 1, firstSegment: seg, lastSegment: seg + 1, consistentAt: iso(t), basedOn: ev.kind === 'D' ? full!.id : null, time: new Date(t), kind: 'Scheduled' });
      seg += 2;
      continue;
    }
    const bases = out.filter((p) => p.type !== 'Log');
    let first: number;
    let from: string;
    if (prevLog && prevLog.lastSegment + 1 > lost) { first = prevLog.lastSegment + 1; from = prevLog.to!; }
    else {
      const base = bases.find((b) => b.firstSegment > lost && (!prevLog || b.firstSegment > prevLog.lastSegment));
      if (!base) continue; // the agent reports the gap and makes no point
      first = base.firstSegment;
      from = base.consistentAt!;
    }
    const log: DbRetentionPoint = { id, type: 'Log', timeline: 1, firstSegment: first, lastSegment: seg, from, to: iso(t), basedOn: null, time: new Date(t), kind: 'Scheduled' };
    out.push(log);
    prevLog = log;
    seg++;
  }
  return out;
}

// ---------- the model ----------

const at = (s: string | null | undefined) => Date.parse(s!);

function modelBases(points: ChainPoint[]): ChainPoint[] {
  return points.filter((p) => p.type === 'Full' || (p.type === 'Differential' && points.some((f) => f.id === p.basedOn && f.type === 'Full')));
}

/** The points a restore to `t` reads, or null. */
function modelPlan(points: ChainPoint[], t: number): string[] | null {
  const bases = modelBases(points).filter((b) => at(b.consistentAt) <= t)
    .sort((a, b) => at(b.consistentAt) - at(a.consistentAt) || (a.type === 'Differential' ? -1 : 1));
  for (const b of bases) {
    const used = [...(b.type === 'Differential' ? [b.basedOn!] : []), b.id];
    let s = b.lastSegment + 1;
    for (;;) {
      const l = points.find((p) => p.type === 'Log' && p.firstSegment <= s && s <= p.lastSegment);
      if (!l) break;
      used.push(l.id);
      if (at(l.to) > t) return used;
      s = l.lastSegment + 1;
    }
  }
  return null;
}

function modelNeeds(points: ChainPoint[], q: ChainPoint): string[] {
  if (q.type === 'Differential') return points.some((p) => p.id === q.basedOn) ? [q.basedOn!] : [];
  if (q.type === 'Full') return [];
  const candidates = [at(q.from), ...points.map((p) => at(p.consistentAt)).filter((x) => x > at(q.from) && x < at(q.to))].sort((a, b) => a - b);
  for (const t of candidates) {
    const plan = modelPlan(points, t);
    if (plan?.includes(q.id)) return plan.filter((x) => x !== q.id);
  }
  return [];
}

const policy = validateDbPolicy({
  name: 'P', workload: 'PostgreSQL', timeZone: 'UTC',
  full: { frequency: 'Weekly', weekDays: ['Sunday', 'Wednesday'], time: '00:00', retention: { weekly: { count: 2, weekDays: ['Sunday'] } } },
  differential: { weekDays: ['Monday', 'Friday'], time: '00:00', retentionDays: 9 },
  log: { everyMinutes: 60, retentionDays: 7 },
});

function modelExpiries(points: DbRetentionPoint[], now: Date): Map<string, number> {
  const exp = new Map<string, number>();
  const fulls = points.filter((p) => p.type === 'Full');
  evaluateRetention(fullAsPolicy(policy), fulls.map((p) => ({ id: p.id, time: p.time, kind: p.kind })), now).forEach((r) => exp.set(r.id, r.expiresAt.getTime()));
  for (const p of points) {
    if (p.type === 'Differential') exp.set(p.id, p.time.getTime() + policy.differential!.retentionDays * DAY);
    if (p.type === 'Log') exp.set(p.id, p.time.getTime() + policy.log!.retentionDays * DAY);
  }
  const needs = new Map(points.map((q) => [q.id, modelNeeds(points, q)]));
  for (let changed = true; changed;) {
    changed = false;
    for (const q of points) {
      for (const p of needs.get(q.id)!) {
        if (exp.get(q.id)! > exp.get(p)!) { exp.set(p, exp.get(q.id)!); changed = true; }
      }
    }
  }
  return exp;
}

// ---------- generators ----------

const event = fc.record({
  kind: fc.constantFrom<Ev['kind']>('F', 'D', 'L', 'L', 'L', 'L', 'gap'),
  minutes: fc.integer({ min: 1, max: 24 * 60 }),
});
const scenario = fc.record({
  events: fc.array(event, { minLength: 1, maxLength: 40 }),
  deleted: fc.array(fc.nat(60), { maxLength: 4 }),
  probes: fc.array(fc.integer({ min: 0, max: 40 * DAY / MIN }), { minLength: 1, maxLength: 12 }),
  nowDays: fc.integer({ min: 0, max: 30 }),
});

function build(s: { events: Ev[]; deleted: number[] }): DbRetentionPoint[] {
  const all = simulate(s.events);
  const gone = new Set(s.deleted.map((d) => all[d % Math.max(1, all.length)]?.id));
  return all.filter((p) => !gone.has(p.id));
}

describe('database chain and retention against the model', () => {
  it('restores exactly the instants the model can, with the same points', () => {
    fc.assert(fc.property(scenario, (s) => {
      const points = build(s);
      const ranges = restorableRanges(points);
      for (const m of s.probes) {
        const t = START + m * MIN;
        const want = modelPlan(points, t);
        const got = planForTime(points, iso(t));
        assert.equal(got !== null, want !== null, `instant ${iso(t)} restorable`);
        assert.equal(ranges.some((r) => at(r.from) <= t && t < at(r.to)), want !== null, `ranges agree at ${iso(t)}`);
        if (got && want) assert.deepEqual([got.full, ...(got.differential ? [got.differential] : []), ...got.logs].sort(), [...want].sort());
      }
      for (let i = 1; i < ranges.length; i++) assert.ok(at(ranges[i - 1]!.to) < at(ranges[i]!.from), 'ranges are merged and ordered');
    }), { numRuns: 300 });
  });

  it('keeps every point as long as a kept point needs it, and says which', () => {
    fc.assert(fc.property(scenario, (s) => {
      const points = build(s);
      const now = new Date(START + s.nowDays * DAY);
      const got = evaluateDbRetention(policy, points, now);
      const want = modelExpiries(points, now);
      for (const r of got) {
        assert.equal(r.expiresAt.getTime(), want.get(r.id), `expiry of ${r.id}`);
        assert.equal(r.keep, r.expiresAt.getTime() > now.getTime());
        assert.equal(r.keptFor.length > 0, r.expiresAt.getTime() > r.ownExpiresAt.getTime(), `${r.id} says why it is kept longer`);
      }
    }), { numRuns: 300 });
  });
});

describe('database retention, a worked example', () => {
  it('a full stays while the logs and differential built on it are kept', () => {
    const points = simulate([{ kind: 'F', minutes: 60 }, { kind: 'L', minutes: 60 }, { kind: 'D', minutes: 60 }, { kind: 'L', minutes: 60 }, { kind: 'L', minutes: 60 }]);
    // Sunday 2026-01-04 01:00 full: weekly rule keeps it 2 weeks; the last log is kept 7 days from Sunday 05:00.
    const r = evaluateDbRetention(policy, points, new Date(START + DAY));
    const full = r.find((x) => x.id === points[0]!.id)!;
    assert.equal(full.ownExpiresAt.toISOString(), '2026-01-18T01:00:00.000Z');
    assert.equal(full.keptFor.length, 0, 'its own rule keeps it longest');
    // With a one-week full retention, the logs (7 days) and the differential (9 days) keep it longer.
    const short = validateDbPolicy({ ...policy, full: { ...policy.full, retention: { weekly: { count: 1, weekDays: ['Sunday'] } } } });
    const r2 = evaluateDbRetention(short, points, new Date(START + DAY));
    const full2 = r2.find((x) => x.id === points[0]!.id)!;
    assert.equal(full2.ownExpiresAt.toISOString(), '2026-01-11T01:00:00.000Z');
    assert.equal(full2.expiresAt.toISOString(), '2026-01-13T03:00:00.000Z', 'kept until the differential based on it expires');
    // Every later point needs it: the logs (through the differential, itself based on it) and the differential.
    assert.deepEqual(full2.keptFor.sort(), points.slice(1).map((p) => p.id).sort());
    const firstLog = r2.find((x) => x.id === points[1]!.id)!;
    // The second log's range starts before the differential was consistent: it replays from the full through the first log.
    assert.deepEqual(firstLog.keptFor, [points[3]!.id]);
    // The last log restores from the differential, whose WAL the second log continues.
    assert.deepEqual(r2.find((x) => x.id === points[3]!.id)!.keptFor, [points[4]!.id]);
    assert.deepEqual(r2.find((x) => x.id === points[4]!.id)!.keptFor, []);
  });
});
