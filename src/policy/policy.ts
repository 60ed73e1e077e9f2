/**
 * Backup policy: when to back up (schedule) and how long each point is kept (retention),
 * both in the policy's time zone. `validatePolicy` is the only way in from JSON: it checks
 * the input with zod and returns plain, fully-defaulted types the rest of the engine trusts.
 */
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { isValidTimeZone } from './zoned-time.js';

export const WEEK_DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;
export const MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
] as const;
export const WEEKS_OF_MONTH = ['First', 'Second', 'Third', 'Fourth', 'Last'] as const;

/** Index in WEEK_DAYS equals the JavaScript weekday number (0 = Sunday). */
export type WeekDay = (typeof WEEK_DAYS)[number];
/** Index in MONTHS plus one equals the month number. */
export type MonthName = (typeof MONTHS)[number];
export type WeekOfMonth = (typeof WEEKS_OF_MONTH)[number];
/** 1-31, or the last day of the month whatever its length. */
export type DayOfMonth = number | 'Last';

/** "HH:MM", 24-hour clock, local to the policy's time zone. */
export type ClockTime = string;

export type Schedule =
  | { readonly frequency: 'Daily'; readonly times: readonly ClockTime[] }
  | { readonly frequency: 'Weekly'; readonly weekDays: readonly WeekDay[]; readonly times: readonly ClockTime[] }
  | HourlySchedule;

/**
 * Several runs a day, every `intervalHours` from `windowStart` for `windowHours` (local wall
 * clock, every day): a backup server's short-term schedule, e.g. every 4 hours round the
 * clock, or every 2 hours from 08:00 for 12 hours. Runs of a window that crosses midnight
 * belong to the day the window starts. The interval divides 24, so the pattern is the same
 * every day.
 */
export interface HourlySchedule {
  readonly frequency: 'Hourly';
  readonly intervalHours: number;
  readonly windowStart: ClockTime;
  readonly windowHours: number;
}

/** Intervals an hourly schedule may use: the divisors of a day. */
export const HOURLY_INTERVALS = [1, 2, 3, 4, 6, 8, 12] as const;

/** Which days of a month a monthly or yearly rule keeps: fixed days, or e.g. the first Sunday. */
export type MonthDays =
  | { readonly days: readonly DayOfMonth[] }
  | { readonly weeks: readonly WeekOfMonth[]; readonly weekDays: readonly WeekDay[] };

export interface DailyRule { readonly count: number }
export interface WeeklyRule { readonly count: number; readonly weekDays: readonly WeekDay[] }
export type MonthlyRule = { readonly count: number } & MonthDays;
export type YearlyRule = { readonly count: number; readonly months: readonly MonthName[] } & MonthDays;

export interface Retention {
  readonly daily?: DailyRule;
  readonly weekly?: WeeklyRule;
  readonly monthly?: MonthlyRule;
  readonly yearly?: YearlyRule;
}

export interface Policy {
  readonly name: string;
  /** IANA zone; schedules and retention days are read on its clocks. */
  readonly timeZone: string;
  readonly schedule: Schedule;
  readonly retention: Retention;
  /** Days a VM's local snapshot stays for fast restores. */
  readonly instantRestoreDays: number;
}

export const LIMITS = {
  daily: { min: 7, max: 9999 },
  weekly: { min: 1, max: 5163 },
  monthly: { min: 1, max: 1188 },
  yearly: { min: 1, max: 99 },
  instantRestoreDays: { min: 1, max: 5 },
  timesPerDay: { min: 1, max: 3 },
  windowHours: { min: 1, max: 24 },
} as const;

/** A zod integer in [min, max], with the message a policy error shows. */
export function integerIn(min: number, max: number) {
  const message = `must be an integer from ${min} to ${max}`;
  return z.number({ error: message }).int(message).min(min, message).max(max, message);
}

function nonEmptyUnique<T extends z.ZodType>(item: T, what: string) {
  return z
    .array(item, { error: `must be a list of ${what}` })
    .min(1, `must list at least one of ${what}`)
    .refine((list) => new Set(list).size === list.length, `must not repeat any of ${what}`);
}

const weekDaysSchema = nonEmptyUnique(z.enum(WEEK_DAYS, { error: `must be one of ${WEEK_DAYS.join(', ')}` }), 'week days');
const clockTimeSchema = z.string({ error: 'must be "HH:MM" from 00:00 to 23:59' })
  .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be "HH:MM" from 00:00 to 23:59');
const dayOfMonthSchema = z.union([integerIn(1, 31), z.literal('Last')], { error: 'must be an integer from 1 to 31 or "Last"' });

/** Both month-day forms are optional here; which one is present is checked after parsing. */
const monthDaysShape = {
  days: nonEmptyUnique(dayOfMonthSchema, 'days of the month (1 to 31 or "Last")').optional(),
  weeks: nonEmptyUnique(z.enum(WEEKS_OF_MONTH, { error: `must be one of ${WEEKS_OF_MONTH.join(', ')}` }), 'weeks of the month').optional(),
  weekDays: weekDaysSchema.optional(),
};

const policySchema = z.strictObject({
  name: z.string({ error: 'must be a string of 1 to 128 characters' }).trim()
    .min(1, 'must be a string of 1 to 128 characters').max(128, 'must be a string of 1 to 128 characters'),
  timeZone: z.string({ error: 'must be an IANA time zone name such as "Europe/Paris"' })
    .refine(isValidTimeZone, 'must be an IANA time zone name such as "Europe/Paris"').default('UTC'),
  schedule: z.strictObject({
    frequency: z.enum(['Daily', 'Weekly', 'Hourly'], { error: 'must be "Daily", "Weekly" or "Hourly"' }),
    // Required for Daily and Weekly, refused for Hourly: checked after parsing.
    times: z.array(clockTimeSchema, { error: 'must be a list of 1 to 3 "HH:MM" times' })
      .min(LIMITS.timesPerDay.min, 'must list 1 to 3 times a day').max(LIMITS.timesPerDay.max, 'must list 1 to 3 times a day')
      .refine((list) => new Set(list).size === list.length, 'must not repeat a time').optional(),
    weekDays: weekDaysSchema.optional(),
    intervalHours: z.number({ error: `must be one of ${HOURLY_INTERVALS.join(', ')} (hours)` })
      .refine((n) => (HOURLY_INTERVALS as readonly number[]).includes(n), `must be one of ${HOURLY_INTERVALS.join(', ')} (hours)`).optional(),
    windowStart: clockTimeSchema.optional(),
    windowHours: integerIn(LIMITS.windowHours.min, LIMITS.windowHours.max).optional(),
  }),
  retention: z.strictObject({
    daily: z.strictObject({ count: integerIn(LIMITS.daily.min, LIMITS.daily.max) }).optional(),
    weekly: z.strictObject({ count: integerIn(LIMITS.weekly.min, LIMITS.weekly.max), weekDays: weekDaysSchema }).optional(),
    monthly: z.strictObject({ count: integerIn(LIMITS.monthly.min, LIMITS.monthly.max), ...monthDaysShape }).optional(),
    yearly: z.strictObject({
      count: integerIn(LIMITS.yearly.min, LIMITS.yearly.max),
      months: nonEmptyUnique(z.enum(MONTHS, { error: `must be one of ${MONTHS.join(', ')}` }), 'months'),
      ...monthDaysShape,
    }).optional(),
  }),
  instantRestoreDays: integerIn(LIMITS.instantRestoreDays.min, LIMITS.instantRestoreDays.max).default(2),
});

type ParsedMonthDays = { days?: DayOfMonth[]; weeks?: WeekOfMonth[]; weekDays?: WeekDay[] };

export function invalid(field: string, message: string): CoffreError {
  return new CoffreError('InvalidPolicy', `${field} ${message}`);
}

/** One schema issue as a line that names the field, what is wrong and what was given. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const field = issue.path.length === 0 ? 'policy' : issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return `${field} has unknown field(s): ${issue.keys.join(', ')}`;
  const got = issue.input === undefined ? 'nothing' : JSON.stringify(issue.input);
  return `${field} ${issue.message} (got ${got})`;
}

function monthDays(field: string, parsed: ParsedMonthDays): MonthDays {
  if (parsed.days !== undefined) {
    if (parsed.weeks !== undefined || parsed.weekDays !== undefined) {
      throw invalid(field, 'must give either "days" or "weeks" with "weekDays", not both');
    }
    return { days: parsed.days };
  }
  if (parsed.weeks !== undefined && parsed.weekDays !== undefined) return { weeks: parsed.weeks, weekDays: parsed.weekDays };
  throw invalid(field, 'must give "days" (1 to 31 or "Last"), or "weeks" (First to Fourth or Last) with "weekDays"');
}

interface ParsedSchedule {
  frequency: 'Daily' | 'Weekly' | 'Hourly'; times?: ClockTime[] | undefined; weekDays?: WeekDay[] | undefined;
  intervalHours?: number | undefined; windowStart?: ClockTime | undefined; windowHours?: number | undefined;
}

/** The fields each frequency takes, and only those. */
function scheduleOf(raw: ParsedSchedule): Schedule {
  if (raw.frequency === 'Hourly') {
    if (raw.times !== undefined) throw invalid('schedule.times', 'is not used by an hourly schedule: give "intervalHours", "windowStart" and "windowHours"');
    if (raw.weekDays !== undefined) throw invalid('schedule.weekDays', 'is only allowed with frequency "Weekly" (an hourly schedule runs every day)');
    if (raw.intervalHours === undefined) throw invalid('schedule.intervalHours', `must be given for an hourly schedule: one of ${HOURLY_INTERVALS.join(', ')} (hours)`);
    return { frequency: 'Hourly', intervalHours: raw.intervalHours, windowStart: raw.windowStart ?? '00:00', windowHours: raw.windowHours ?? 24 };
  }
  for (const field of ['intervalHours', 'windowStart', 'windowHours'] as const) {
    if (raw[field] !== undefined) throw invalid(`schedule.${field}`, 'is only allowed with frequency "Hourly"');
  }
  if (raw.times === undefined) throw invalid('schedule.times', 'must be a list of 1 to 3 "HH:MM" times (got nothing)');
  if (raw.frequency === 'Weekly') {
    if (raw.weekDays === undefined) throw invalid('schedule.weekDays', 'must list the days a weekly schedule runs on');
    return { frequency: 'Weekly', weekDays: raw.weekDays, times: raw.times };
  }
  if (raw.weekDays !== undefined) throw invalid('schedule.weekDays', 'is only allowed with frequency "Weekly"');
  return { frequency: 'Daily', times: raw.times };
}

/** Checks untrusted input (e.g. parsed JSON) and returns a complete policy; throws CoffreError('InvalidPolicy'). */
export function validatePolicy(input: unknown): Policy {
  const parsed = policySchema.safeParse(input, { reportInput: true });
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new CoffreError('InvalidPolicy', first === undefined ? 'policy is invalid' : describeIssue(first), {
      issues: parsed.error.issues.map(describeIssue),
    });
  }
  const raw = parsed.data;

  const schedule = scheduleOf(raw.schedule);

  const { daily, weekly, monthly, yearly } = raw.retention;
  const retention: Retention = {
    ...(daily === undefined ? {} : { daily: { count: daily.count } }),
    ...(weekly === undefined ? {} : { weekly: { count: weekly.count, weekDays: weekly.weekDays } }),
    ...(monthly === undefined ? {} : { monthly: { count: monthly.count, ...monthDays('retention.monthly', monthly) } }),
    ...(yearly === undefined ? {} : {
      yearly: { count: yearly.count, months: yearly.months, ...monthDays('retention.yearly', yearly) },
    }),
  };
  if (Object.keys(retention).length === 0) {
    throw invalid('retention', 'must have at least one rule (daily, weekly, monthly or yearly)');
  }

  if (schedule.frequency === 'Weekly') {
    // A daily rule promises a point every day, which a weekly schedule cannot deliver.
    if (retention.daily !== undefined) throw invalid('retention.daily', 'is not allowed with a weekly schedule');
    const scheduled = new Set(schedule.weekDays);
    const missing = retention.weekly?.weekDays.filter((day) => !scheduled.has(day)) ?? [];
    if (missing.length > 0) {
      throw invalid('retention.weekly.weekDays', `must be among the scheduled days (${schedule.weekDays.join(', ')}); not scheduled: ${missing.join(', ')}`);
    }
  }

  return { name: raw.name, timeZone: raw.timeZone, schedule, retention, instantRestoreDays: raw.instantRestoreDays };
}

/** The policy an item gets when none is chosen: every night at 22:00 UTC, kept 30 days. */
export function defaultPolicy(): Policy {
  return {
    name: 'DefaultPolicy',
    timeZone: 'UTC',
    schedule: { frequency: 'Daily', times: ['22:00'] },
    retention: { daily: { count: 30 } },
    instantRestoreDays: 2,
  };
}

/** Hours and minutes of a validated "HH:MM". */
export function parseClockTime(time: ClockTime): { hour: number; minute: number } {
  const [hour = 0, minute = 0] = time.split(':').map(Number);
  return { hour, minute };
}
