/**
 * evaluateRetention against a naive reference model. The model only runs in zones with a
 * fixed UTC offset, where "local time" is the instant shifted by that offset and read with
 * the Date UTC getters, so it needs no time-zone code of its own.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LIMITS, MONTHS, validatePolicy, WEEK_DAYS, WEEKS_OF_MONTH, type MonthDays, type Policy } from './policy.js';
import { diffRetention, evaluateRetention, type RetentionPoint, type RuleName } from './retention.js';

const DAY = 86_400_000;
const BASE = Date.UTC(2020, 0, 1);

interface Plain { id: string; expiresAt: number; keep: boolean; rules: RuleName[] }

// ---------- reference model ----------

const lastDayOf = (year: number, monthIndex: number) => new Date(Date.UTC(year, monthIndex + 1, 0)).getUTCDate();

function refMatchesMonthDays(rule: MonthDays, local: Date): boolean {
  const day = local.getUTCDate();
  const last = lastDayOf(local.getUTCFullYear(), local.getUTCMonth());
  if ('days' in rule) return rule.days.some((d) => (d === 'Last' ? day === last : d === day));
  if (!rule.weekDays.includes(WEEK_DAYS[local.getUTCDay()] ?? 'Sunday')) return false;
  return rule.weeks.some((w) => (w === 'Last' ? day > last - 7 : WEEKS_OF_MONTH.indexOf(w) === Math.floor((day - 1) / 7)));
}

/** Local wall time `months` later, as the UTC-shifted Date; days past the month's end clamp. */
function refAddMonths(local: Date, months: number): number {
  const first = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth() + months, 1));
  const day = Math.min(local.getUTCDate(), lastDayOf(first.getUTCFullYear(), first.getUTCMonth()));
  return Date.UTC(first.getUTCFullYear(), first.getUTCMonth(), day,
    local.getUTCHours(), local.getUTCMinutes(), local.getUTCSeconds(), local.getUTCMilliseconds());
}

function reference(policy: Policy, offset: number, points: RetentionPoint[], now: number): Plain[] {
  const local = (p: RetentionPoint) => new Date(p.time.getTime() + offset);
  const dayOf = (p: RetentionPoint) => local(p).toISOString().slice(0, 10);
  const r = policy.retention;
  return points.map((p, i): Plain => {
    if (p.kind === 'OnDemand') {
      const [y = 0, m = 1, d = 1] = (p.retainUntil ?? '').split('-').map(Number);
      const expiresAt = Date.UTC(y, m - 1, d + 1) - offset;
      return { id: p.id, expiresAt, keep: expiresAt > now, rules: [] };
    }
    const earliest = points.every((q, j) => j === i || q.kind !== 'Scheduled' || dayOf(q) !== dayOf(p)
      || q.time.getTime() > p.time.getTime() || (q.time.getTime() === p.time.getTime() && j > i));
    const t = p.time.getTime();
    const L = local(p);
    const candidates: [RuleName, number][] = [];
    if (r.daily) candidates.push(['daily', t + r.daily.count * DAY]);
    if (earliest && r.weekly && r.weekly.weekDays.includes(WEEK_DAYS[L.getUTCDay()] ?? 'Sunday')) {
      candidates.push(['weekly', t + r.weekly.count * 7 * DAY]);
    }
    if (earliest && r.monthly && refMatchesMonthDays(r.monthly, L)) candidates.push(['monthly', refAddMonths(L, r.monthly.count) - offset]);
    if (earliest && r.yearly && r.yearly.months.includes(MONTHS[L.getUTCMonth()] ?? 'January') && refMatchesMonthDays(r.yearly, L)) {
      candidates.push(['yearly', refAddMonths(L, 12 * r.yearly.count) - offset]);
    }
    const expiresAt = Math.max(t, ...candidates.map(([, e]) => e));
    return { id: p.id, expiresAt, keep: expiresAt > now, rules: candidates.map(([rule]) => rule) };
  });
}

// ---------- generators ----------

const FIXED_ZONES: [string, number][] = [['UTC', 0], ['Etc/GMT-2', 2], ['Etc/GMT+5', -5], ['Asia/Kolkata', 5.5], ['Etc/GMT-14', 14]];

const count = (limit: { min: number; max: number }, small: number) =>
  fc.oneof({ weight: 4, arbitrary: fc.integer({ min: limit.min, max: Math.min(small, limit.max) }) }, fc.integer(limit));
const someOf = <T>(values: readonly T[], max = 3) => fc.uniqueArray(fc.constantFrom(...values), { minLength: 1, maxLength: max });
const monthDaysArb = fc.oneof(
  fc.record({ days: fc.uniqueArray(fc.oneof(fc.integer({ min: 1, max: 31 }), fc.constant('Last' as const)), { minLength: 1, maxLength: 4 }) }),
  fc.record({ weeks: someOf(WEEKS_OF_MONTH), weekDays: someOf(WEEK_DAYS) }),
);

function policyArb(zones: readonly string[]): fc.Arbitrary<Policy> {
  return fc.record({
    zone: fc.constantFrom(...zones),
    weeklySchedule: fc.option(someOf(WEEK_DAYS, 7), { nil: undefined }),
    daily: fc.option(count(LIMITS.daily, 60), { nil: undefined }),
    weekly: fc.option(fc.record({ count: count(LIMITS.weekly, 20), weekDays: someOf(WEEK_DAYS) }), { nil: undefined }),
    monthly: fc.option(fc.tuple(count(LIMITS.monthly, 24), monthDaysArb), { nil: undefined }),
    yearly: fc.option(fc.tuple(count(LIMITS.yearly, 5), someOf(MONTHS), monthDaysArb), { nil: undefined }),
  }).map((g) => {
    // A weekly schedule allows no daily rule and only scheduled days in the weekly rule.
    const weekly = g.weekly && g.weeklySchedule
      ? { ...g.weekly, weekDays: g.weekly.weekDays.filter((d) => g.weeklySchedule?.includes(d)) } : g.weekly;
    const retention = {
      ...(g.daily !== undefined && g.weeklySchedule === undefined ? { daily: { count: g.daily } } : {}),
      ...(weekly && weekly.weekDays.length > 0 ? { weekly } : {}),
      ...(g.monthly ? { monthly: { count: g.monthly[0], ...g.monthly[1] } } : {}),
      ...(g.yearly ? { yearly: { count: g.yearly[0], months: g.yearly[1], ...g.yearly[2] } } : {}),
    };
    return validatePolicy({
      name: 'Random', timeZone: g.zone,
      schedule: g.weeklySchedule ? { frequency: 'Weekly', weekDays: g.weeklySchedule, times: ['02:00'] } : { frequency: 'Daily', times: ['02:00'] },
      retention: Object.keys(retention).length > 0 ? retention : { monthly: { count: 1, days: ['Last'] } },
    });
  });
}

/**
 * Several years of points; a dense first two months so that days hold several points, and
 * some points at the same instant as the previous one to exercise the tie-break.
 */
const pointsArb = fc.array(fc.record({
  day: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 6 * 366 })),
  ms: fc.oneof(fc.integer({ min: 0, max: DAY - 1 }), fc.constantFrom(0, 2 * 3_600_000, DAY - 1)),
  sameAsPrevious: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
  onDemand: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  keepDays: fc.integer({ min: 0, max: 800 }),
}), { maxLength: 60 }).map((raw) => raw.map((g, i): RetentionPoint => {
  const previous = raw[i - 1];
  const source = g.sameAsPrevious && previous !== undefined ? previous : g;
  const time = new Date(BASE + source.day * DAY + source.ms);
  return g.onDemand
    ? { id: `p${i}`, time, kind: 'OnDemand', retainUntil: new Date(BASE + (g.day + g.keepDays) * DAY).toISOString().slice(0, 10) }
    : { id: `p${i}`, time, kind: 'Scheduled' };
}));

const nowArb = fc.integer({ min: BASE - 30 * DAY, max: BASE + 8 * 366 * DAY });

const plain = (results: ReturnType<typeof evaluateRetention>): Plain[] =>
  results.map((r) => ({ id: r.id, expiresAt: r.expiresAt.getTime(), keep: r.keep, rules: r.rules }));

function lengthened(policy: Policy, by: number): Policy {
  const grow = (n: number, limit: { max: number }) => Math.min(limit.max, n + by);
  const r = policy.retention;
  return {
    ...policy,
    retention: {
      ...(r.daily ? { daily: { count: grow(r.daily.count, LIMITS.daily) } } : {}),
      ...(r.weekly ? { weekly: { ...r.weekly, count: grow(r.weekly.count, LIMITS.weekly) } } : {}),
      ...(r.monthly ? { monthly: { ...r.monthly, count: grow(r.monthly.count, LIMITS.monthly) } } : {}),
      ...(r.yearly ? { yearly: { ...r.yearly, count: grow(r.yearly.count, LIMITS.yearly) } } : {}),
    },
  };
}

// ---------- properties ----------

describe('evaluateRetention (property-based)', () => {
  it('agrees with the naive reference model in fixed-offset zones', () => {
    fc.assert(fc.property(policyArb(FIXED_ZONES.map(([zone]) => zone)), pointsArb, nowArb, (policy, points, now) => {
      const offset = (FIXED_ZONES.find(([zone]) => zone === policy.timeZone)?.[1] ?? 0) * 3_600_000;
      assert.deepEqual(plain(evaluateRetention(policy, points, new Date(now))), reference(policy, offset, points, now));
    }), { numRuns: 400 });
  });

  it('does not depend on the order of the points (distinct times)', () => {
    const zones = ['UTC', 'Europe/Paris', 'America/New_York'];
    const unique = pointsArb.map((points) => points.filter((p, i) => points.findIndex((q) => q.time.getTime() === p.time.getTime()) === i));
    fc.assert(fc.property(policyArb(zones), unique.chain((points) =>
      fc.tuple(fc.constant(points), fc.shuffledSubarray(points, { minLength: points.length, maxLength: points.length }))), nowArb,
    (policy, [points, shuffled], now) => {
      const sortById = (list: Plain[]) => [...list].sort((a, b) => a.id.localeCompare(b.id));
      assert.deepEqual(sortById(plain(evaluateRetention(policy, shuffled, new Date(now)))),
        sortById(plain(evaluateRetention(policy, points, new Date(now)))));
    }), { numRuns: 200 });
  });

  it('lengthening never shortens an expiry and never deletes; shortening never extends', () => {
    fc.assert(fc.property(policyArb(['UTC', 'Europe/Paris', 'Australia/Lord_Howe']), pointsArb, nowArb, fc.integer({ min: 1, max: 400 }),
      (policy, points, nowMs, by) => {
        const now = new Date(nowMs);
        const short = evaluateRetention(policy, points, now);
        const long = evaluateRetention(lengthened(policy, by), points, now);
        short.forEach((s, i) => {
          assert.ok((long[i]?.expiresAt.getTime() ?? 0) >= s.expiresAt.getTime(), s.id);
          assert.deepEqual(long[i]?.rules, s.rules, 'counts do not change which rules match');
        });
        assert.deepEqual(diffRetention(short, long, now).deleted, []);
        const shrink = diffRetention(long, short, now);
        assert.deepEqual(shrink.deleted, long.filter((l, i) => l.keep && !short[i]?.keep).map((l) => l.id));
        for (const change of shrink.changed) assert.ok(change.to.getTime() < change.from.getTime());
      }), { numRuns: 200 });
  });

  it('keeps results consistent: keep = expiresAt > now, rules only on the earliest point of a day', () => {
    fc.assert(fc.property(policyArb(['Europe/Paris', 'America/Santiago', 'Asia/Tokyo']), pointsArb, nowArb, (policy, points, nowMs) => {
      const results = evaluateRetention(policy, points, new Date(nowMs));
      const dayOf = (d: Date) => new Intl.DateTimeFormat('en-CA', { timeZone: policy.timeZone, dateStyle: 'short' }).format(d);
      results.forEach((result, i) => {
        const point = points[i];
        assert.ok(point !== undefined && result.id === point.id);
        assert.equal(result.keep, result.expiresAt.getTime() > nowMs);
        if (point.kind === 'OnDemand') return assert.deepEqual(result.rules, []);
        assert.ok(result.expiresAt.getTime() >= point.time.getTime());
        assert.equal(result.rules.length === 0, result.expiresAt.getTime() === point.time.getTime());
        assert.equal(result.rules.includes('daily'), policy.retention.daily !== undefined);
        const beats = (q: RetentionPoint, j: number) => q.kind === 'Scheduled' && dayOf(q.time) === dayOf(point.time)
          && (q.time.getTime() < point.time.getTime() || (q.time.getTime() === point.time.getTime() && j < i));
        const earlier = points.some((q, j) => j !== i && beats(q, j));
        if (earlier) assert.ok(result.rules.every((rule) => rule === 'daily'), `${result.id} is not its day's earliest`);
      });
    }), { numRuns: 150 });
  });
});
