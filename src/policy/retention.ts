/**
 * How long each recovery point is kept under a policy.
 *
 * Always evaluated with the CURRENT policy over the points that exist, so a retention or
 * schedule change applies retroactively: nothing about a point's expiry is stored, it is
 * recomputed. Pure: the caller passes the points and the current time.
 *
 * Rules, read on the policy time zone's clocks:
 * - daily keeps every scheduled point `count` days;
 * - weekly / monthly / yearly keep, `count` weeks / months / years, the earliest scheduled
 *   point of each local day the rule matches (the other points of that day are not theirs);
 * - a point's expiry is the latest its matching rules give (point's local time + count,
 *   calendar arithmetic, wall clock kept across DST, missing days clamped to the month's
 *   end); a point no rule keeps expires at its own time;
 * - an on-demand point ignores the rules and expires at the END of its retain-until day,
 *   i.e. at the start of the following local day, so "retain until 10 June" keeps it all
 *   of 10 June in the policy's zone.
 */
import { CoffreError } from '../core/errors.js';
import { MONTHS, WEEK_DAYS, type MonthDays, type Policy, type Retention, type WeekOfMonth } from './policy.js';
import {
  addDays, addMonths, addYears, daysInMonth, formatLocalDate, fromLocal, parseLocalDate, toLocal,
  type LocalDate, type LocalDateTime,
} from './zoned-time.js';

export type RuleName = 'daily' | 'weekly' | 'monthly' | 'yearly';
export const RULE_NAMES: readonly RuleName[] = ['daily', 'weekly', 'monthly', 'yearly'];

export interface RetentionPoint {
  readonly id: string;
  readonly time: Date;
  readonly kind: 'Scheduled' | 'OnDemand';
  /** "YYYY-MM-DD" in the policy's time zone; required for OnDemand, ignored for Scheduled. */
  readonly retainUntil?: string;
}

export interface RetentionResult {
  readonly id: string;
  readonly expiresAt: Date;
  /** expiresAt > now. */
  readonly keep: boolean;
  /** Rules that match the point and so give it its expiry (even one already past); empty for on-demand points. */
  readonly rules: RuleName[];
}

export interface RetentionDiff {
  /** Points kept under the old result and not under the new one, in `before` order. */
  readonly deleted: string[];
  /** Points whose expiry moves and that at least one side keeps, excluding `deleted`. */
  readonly changed: { id: string; from: Date; to: Date }[];
}

const NTH: Record<Exclude<WeekOfMonth, 'Last'>, number> = { First: 1, Second: 2, Third: 3, Fourth: 4 };

function matchesMonthDays(rule: MonthDays, date: LocalDateTime): boolean {
  const lastDay = daysInMonth(date.year, date.month);
  if ('days' in rule) {
    // Day 31 does not match a 30-day month: "Last" is the way to say "month end".
    return rule.days.some((day) => (day === 'Last' ? date.day === lastDay : day === date.day));
  }
  const weekday = WEEK_DAYS[date.weekday];
  if (weekday === undefined || !rule.weekDays.includes(weekday)) return false;
  const nth = Math.ceil(date.day / 7);
  const isLast = date.day + 7 > lastDay;
  return rule.weeks.some((week) => (week === 'Last' ? isLast : NTH[week] === nth));
}

/** The long-term rules (weekly, monthly, yearly) whose day pattern matches this local day. */
export function matchingDayRules(retention: Retention, date: LocalDateTime): RuleName[] {
  const rules: RuleName[] = [];
  const weekday = WEEK_DAYS[date.weekday];
  if (retention.weekly !== undefined && weekday !== undefined && retention.weekly.weekDays.includes(weekday)) rules.push('weekly');
  if (retention.monthly !== undefined && matchesMonthDays(retention.monthly, date)) rules.push('monthly');
  const month = MONTHS[date.month - 1];
  if (retention.yearly !== undefined && month !== undefined && retention.yearly.months.includes(month)
    && matchesMonthDays(retention.yearly, date)) rules.push('yearly');
  return rules;
}

function ruleExpiry(rule: RuleName, count: number, local: LocalDateTime, timeZone: string): Date {
  let date: LocalDate;
  switch (rule) {
    case 'daily': date = addDays(local, count); break;
    case 'weekly': date = addDays(local, 7 * count); break;
    case 'monthly': date = addMonths(local, count); break;
    case 'yearly': date = addYears(local, count); break;
  }
  return fromLocal({ ...date, hour: local.hour, minute: local.minute, second: local.second, millisecond: local.millisecond }, timeZone);
}

function ruleCount(retention: Retention, rule: RuleName): number {
  return retention[rule]?.count ?? 0;
}

function onDemandExpiry(point: RetentionPoint, timeZone: string): Date {
  const until = point.retainUntil === undefined ? undefined : parseLocalDate(point.retainUntil);
  if (until === undefined) {
    throw new CoffreError('InvalidArgument',
      `point ${point.id}: an OnDemand point needs retainUntil as a calendar date "YYYY-MM-DD" (got ${JSON.stringify(point.retainUntil)})`);
  }
  return fromLocal(addDays(until, 1), timeZone);
}

function checkPoint(point: RetentionPoint): void {
  if (!(point.time instanceof Date) || Number.isNaN(point.time.getTime())) {
    throw new CoffreError('InvalidArgument', `point ${point.id}: time must be a valid date`);
  }
  if (point.kind !== 'Scheduled' && point.kind !== 'OnDemand') {
    throw new CoffreError('InvalidArgument', `point ${point.id}: kind must be "Scheduled" or "OnDemand"`);
  }
}

/**
 * Expiry and rules of every point under `policy`, in input order. Points of one item must be
 * passed together: which point is the earliest of its day depends on its day-mates.
 * Of two scheduled points at the same instant, the first in input order is the earliest.
 */
export function evaluateRetention(policy: Policy, points: readonly RetentionPoint[], now: Date): RetentionResult[] {
  points.forEach(checkPoint);
  const { timeZone, retention } = policy;
  const locals = points.map((point) => (point.kind === 'Scheduled' ? toLocal(point.time, timeZone) : undefined));

  const earliestOfDay = new Map<string, number>();
  locals.forEach((local, index) => {
    if (local === undefined) return;
    const key = formatLocalDate(local);
    const current = earliestOfDay.get(key);
    if (current === undefined || (points[index]?.time.getTime() ?? 0) < (points[current]?.time.getTime() ?? 0)) {
      earliestOfDay.set(key, index);
    }
  });

  return points.map((point, index): RetentionResult => {
    const local = locals[index];
    if (local === undefined) {
      const expiresAt = onDemandExpiry(point, timeZone);
      return { id: point.id, expiresAt, keep: expiresAt.getTime() > now.getTime(), rules: [] };
    }
    const rules: RuleName[] = retention.daily === undefined ? [] : ['daily'];
    if (earliestOfDay.get(formatLocalDate(local)) === index) rules.push(...matchingDayRules(retention, local));
    let expiresMs = point.time.getTime();
    for (const rule of rules) {
      expiresMs = Math.max(expiresMs, ruleExpiry(rule, ruleCount(retention, rule), local, timeZone).getTime());
    }
    return { id: point.id, expiresAt: new Date(expiresMs), keep: expiresMs > now.getTime(), rules };
  });
}

/**
 * Expiry of one point. For a scheduled point pass the other points of its item on the same
 * local day as `dayMates`: only the earliest of a day is kept by the weekly, monthly and
 * yearly rules. Without them the point is taken as the only one of its day.
 */
export function expiryOf(point: RetentionPoint, policy: Policy, dayMates: readonly RetentionPoint[] = []): Date {
  const [result] = evaluateRetention(policy, [point, ...dayMates.filter((mate) => mate.id !== point.id)], point.time);
  if (result === undefined) throw new CoffreError('Internal', 'retention evaluation returned no result');
  return result.expiresAt;
}

/**
 * What a policy change does to existing points, for a dry run: evaluate the same points
 * under the old and the new policy and compare at `now`. A point missing from `after`
 * counts as not kept.
 */
export function diffRetention(before: readonly RetentionResult[], after: readonly RetentionResult[], now: Date): RetentionDiff {
  const nowMs = now.getTime();
  const afterById = new Map(after.map((result) => [result.id, result]));
  const deleted: string[] = [];
  const changed: { id: string; from: Date; to: Date }[] = [];
  for (const old of before) {
    const next = afterById.get(old.id);
    const keptBefore = old.expiresAt.getTime() > nowMs;
    const keptAfter = next !== undefined && next.expiresAt.getTime() > nowMs;
    if (keptBefore && !keptAfter) deleted.push(old.id);
    else if (next !== undefined && (keptBefore || keptAfter) && next.expiresAt.getTime() !== old.expiresAt.getTime()) {
      changed.push({ id: old.id, from: old.expiresAt, to: next.expiresAt });
    }
  }
  return { deleted, changed };
}
