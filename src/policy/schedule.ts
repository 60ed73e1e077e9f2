/**
 * When a policy's backups run. Pure: the caller passes the current time.
 */
import { CoffreError } from '../core/errors.js';
import { parseClockTime, WEEK_DAYS, type HourlySchedule, type Policy } from './policy.js';
import { addDays, fromLocal, toLocal, weekdayOf, type LocalDate } from './zoned-time.js';

/** True when the schedule runs on this local date. */
export function isScheduledDay(policy: Policy, date: LocalDate): boolean {
  const { schedule } = policy;
  if (schedule.frequency === 'Daily' || schedule.frequency === 'Hourly') return true;
  const weekday = WEEK_DAYS[weekdayOf(date)];
  return weekday !== undefined && schedule.weekDays.includes(weekday);
}

/**
 * The local wall times an hourly schedule runs at, from the start of its window on `date`:
 * every interval while inside the window; a time past midnight falls on the next date.
 */
function hourlyWallTimes(schedule: HourlySchedule, date: LocalDate): (LocalDate & { hour: number; minute: number })[] {
  const { hour, minute } = parseClockTime(schedule.windowStart);
  const out: (LocalDate & { hour: number; minute: number })[] = [];
  for (let offset = 0; offset < schedule.windowHours; offset += schedule.intervalHours) {
    const h = hour + offset;
    out.push({ ...addDays(date, Math.floor(h / 24)), hour: h % 24, minute });
  }
  return out;
}

/** The run instants of the windows that start on one local date, in time order, without duplicates. */
export function runsOnDay(policy: Policy, date: LocalDate): Date[] {
  if (!isScheduledDay(policy, date)) return [];
  const { schedule } = policy;
  const walls = schedule.frequency === 'Hourly' ? hourlyWallTimes(schedule, date) : schedule.times.map((time) => ({ ...date, ...parseClockTime(time) }));
  const instants = walls.map((wall) => fromLocal(wall, policy.timeZone).getTime());
  // Two times inside one DST gap both move to the gap's end: they are one run, not two.
  return [...new Set(instants)].sort((a, b) => a - b).map((ms) => new Date(ms));
}

/**
 * The next `count` run instants strictly after `from`, in time order.
 *
 * A time inside a spring-forward gap runs when the gap ends (02:30 → 03:30 in Paris); a
 * time that occurs twice at fall-back runs once, at the first occurrence.
 */
export function nextRuns(policy: Policy, from: Date, count: number): Date[] {
  if (!Number.isInteger(count) || count < 0) {
    throw new CoffreError('InvalidArgument', `count must be a non-negative integer (got ${count})`);
  }
  if (Number.isNaN(from.getTime())) throw new CoffreError('InvalidArgument', 'from must be a valid date');
  if (count === 0) return [];

  const after = from.getTime();
  const found = new Set<number>();
  // Start a day early: a time in a gap at midnight pushes the previous day's run past `from`.
  let date = addDays(toLocal(from, policy.timeZone), -1);
  let extraDays = -1;
  // A weekly schedule has at least one day a week, so 8 days always yield a run.
  const maxDays = 8 * count + 8;
  for (let i = 0; i < maxDays && extraDays !== 0; i += 1, date = addDays(date, 1)) {
    for (const run of runsOnDay(policy, date)) {
      if (run.getTime() > after) found.add(run.getTime());
    }
    if (extraDays > 0) extraDays -= 1;
    // Gap shifts can move a run past the next day's first runs; two more days settle the order.
    else if (extraDays < 0 && found.size >= count) extraDays = 2;
  }
  return [...found].sort((a, b) => a - b).slice(0, count).map((ms) => new Date(ms));
}

/**
 * The latest run instant strictly before `before`: the run a backup should have answered by
 * then (recovery point objectives are measured against it). The mirror of nextRuns: for every
 * instant t, nextRuns(policy, previousRun(policy, t), 1)[0] >= t.
 */
export function previousRun(policy: Policy, before: Date): Date {
  if (Number.isNaN(before.getTime())) throw new CoffreError('InvalidArgument', 'before must be a valid date');
  const limit = before.getTime();
  let best = -Infinity;
  // A day ahead (gap shifts move runs across midnight) down to 9 days back: a weekly schedule
  // runs at least once in any 8 consecutive days.
  let date = addDays(toLocal(before, policy.timeZone), 1);
  for (let i = 0; i < 11; i += 1, date = addDays(date, -1)) {
    for (const run of runsOnDay(policy, date)) {
      if (run.getTime() < limit && run.getTime() > best) best = run.getTime();
    }
    if (best > -Infinity && i >= 2) break;
  }
  return new Date(best);
}

/** Scheduled runs after `after` up to `until`, in order. */
export function runsBetween(policy: Policy, after: Date, until: Date): Date[] {
  const out: Date[] = [];
  let from = after;
  for (;;) {
    const batch = nextRuns(policy, from, 64);
    for (const r of batch) {
      if (r > until) return out;
      out.push(r);
    }
    if (batch.length === 0) return out;
    from = batch[batch.length - 1]!;
  }
}
