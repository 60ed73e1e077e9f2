/**
 * Database (PostgreSQL) backup policy: three backup types, each with its schedule and
 * retention, in one JSON document told apart from a file/VM policy by `"workload":
 * "PostgreSQL"`. The rules the service we model enforces are enforced here, with messages
 * that name the field and say what is allowed:
 * - a Full runs at most once a day, daily or weekly, kept by daily/weekly/monthly/yearly rules;
 * - a Differential runs at most once a day, on chosen weekdays, only with weekly Fulls and
 *   never on a Full's day, kept 7 to 180 days;
 * - a Log backup runs every 15 minutes to 24 hours, kept 7 to 35 days.
 * `validateAnyPolicy` is the one way in for a policy of either kind.
 */
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { describeIssue, integerIn, invalid, validatePolicy, WEEK_DAYS, type ClockTime, type Policy, type Retention, type WeekDay } from './policy.js';
import { isValidTimeZone } from './zoned-time.js';

export const DB_WORKLOAD = 'PostgreSQL';

export const DB_LIMITS = {
  differentialDays: { min: 7, max: 180 },
  logDays: { min: 7, max: 35 },
  logMinutes: { min: 15, max: 1440 },
} as const;

export interface DbPolicy {
  readonly name: string;
  readonly workload: typeof DB_WORKLOAD;
  readonly timeZone: string;
  readonly full: {
    readonly frequency: 'Daily' | 'Weekly';
    /** Weekly fulls only. */
    readonly weekDays?: readonly WeekDay[];
    readonly time: ClockTime;
    readonly retention: Retention;
  };
  readonly differential?: { readonly weekDays: readonly WeekDay[]; readonly time: ClockTime; readonly retentionDays: number };
  readonly log?: { readonly everyMinutes: number; readonly retentionDays: number };
}

export type AnyPolicy = Policy | DbPolicy;

export function isDbPolicy(p: AnyPolicy): p is DbPolicy {
  return (p as DbPolicy).workload === DB_WORKLOAD;
}

/** Whether untrusted input claims to be a database policy (it is validated as one). */
export function looksLikeDbPolicy(input: unknown): boolean {
  return typeof input === 'object' && input !== null && (input as { workload?: unknown }).workload !== undefined;
}

const clockTime = z.string({ error: 'must be "HH:MM" from 00:00 to 23:59' }).regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be "HH:MM" from 00:00 to 23:59');
const weekDays = z.array(z.enum(WEEK_DAYS, { error: `must be one of ${WEEK_DAYS.join(', ')}` }), { error: 'must be a list of week days' })
  .min(1, 'must list at least one week day').refine((l) => new Set(l).size === l.length, 'must not repeat a week day');

const schema = z.strictObject({
  name: z.string({ error: 'must be a string of 1 to 128 characters' }).trim().min(1, 'must be a string of 1 to 128 characters').max(128, 'must be a string of 1 to 128 characters'),
  workload: z.literal(DB_WORKLOAD, { error: `must be "${DB_WORKLOAD}" (the only database Coffre protects)` }),
  timeZone: z.string({ error: 'must be an IANA time zone name such as "Europe/Paris"' })
    .refine(isValidTimeZone, 'must be an IANA time zone name such as "Europe/Paris"').default('UTC'),
  full: z.strictObject({
    frequency: z.enum(['Daily', 'Weekly'], { error: 'must be "Daily" or "Weekly"' }),
    weekDays: weekDays.optional(),
    time: clockTime.optional(),
    // Accepted only to refuse more than one a day with a message that says so.
    times: z.array(clockTime, { error: 'must be a list of one "HH:MM" time' }).optional(),
    retention: z.record(z.string(), z.unknown(), { error: 'must be an object of daily, weekly, monthly and yearly rules' }),
  }, { error: 'must describe the full backup: frequency, time, retention' }),
  differential: z.strictObject({
    weekDays,
    time: clockTime,
    retentionDays: integerIn(DB_LIMITS.differentialDays.min, DB_LIMITS.differentialDays.max),
  }).optional(),
  log: z.strictObject({
    everyMinutes: z.number({ error: 'must be a whole number of minutes from 15 to 1440' }).int('must be a whole number of minutes from 15 to 1440')
      .min(DB_LIMITS.logMinutes.min, 'must be at least 15: a log backup runs at most every 15 minutes')
      .max(DB_LIMITS.logMinutes.max, 'must be at most 1440: a log backup runs at least once a day'),
    retentionDays: integerIn(DB_LIMITS.logDays.min, DB_LIMITS.logDays.max),
  }).optional(),
});

/** Checks untrusted input and returns a complete database policy; throws CoffreError('InvalidPolicy'). */
export function validateDbPolicy(input: unknown): DbPolicy {
  const parsed = schema.safeParse(input, { reportInput: true });
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new CoffreError('InvalidPolicy', first === undefined ? 'policy is invalid' : describeIssue(first), { issues: parsed.error.issues.map(describeIssue) });
  }
  const raw = parsed.data;
  const full = raw.full;
  if (full.times !== undefined && full.times.length > 1) {
    throw invalid('full.times', `lists ${full.times.length} times: a full backup runs at most once a day; give one "time"`);
  }
  const time = full.time ?? full.times?.[0];
  if (time === undefined) throw invalid('full.time', 'must give the time of day the full backup runs ("HH:MM")');
  if (full.time !== undefined && full.times !== undefined && full.times[0] !== full.time) {
    throw invalid('full.times', 'disagrees with full.time: a full backup runs at most once a day');
  }
  if (full.frequency === 'Weekly' && full.weekDays === undefined) throw invalid('full.weekDays', 'must list the days a weekly full runs on');
  if (full.frequency === 'Daily' && full.weekDays !== undefined) throw invalid('full.weekDays', 'is only allowed with frequency "Weekly"');

  // The full's schedule and retention follow the rules of any policy (one run a day here).
  let asPolicy: Policy;
  try {
    asPolicy = validatePolicy({
      name: raw.name, timeZone: raw.timeZone, retention: full.retention,
      schedule: full.frequency === 'Weekly' ? { frequency: 'Weekly', weekDays: full.weekDays, times: [time] } : { frequency: 'Daily', times: [time] },
    });
  } catch (e) {
    if (!(e instanceof CoffreError)) throw e;
    throw new CoffreError('InvalidPolicy', e.message.replace(/^retention/, 'full.retention').replace(/^schedule\./, 'full.'), e.details);
  }

  if (raw.differential) {
    if (full.frequency === 'Daily') {
      throw invalid('differential', 'needs weekly full backups: with a full every day there is nothing for a differential to save; make full.frequency "Weekly"');
    }
    const clash = raw.differential.weekDays.filter((d) => full.weekDays!.includes(d));
    if (clash.length > 0) {
      throw invalid('differential.weekDays', `includes ${clash.join(', ')}, a day with a full backup: a differential never runs on a full's day`);
    }
  }
  return {
    name: raw.name, workload: DB_WORKLOAD, timeZone: raw.timeZone,
    full: { frequency: full.frequency, ...(full.weekDays ? { weekDays: full.weekDays } : {}), time, retention: asPolicy.retention },
    ...(raw.differential ? { differential: { weekDays: raw.differential.weekDays, time: raw.differential.time, retentionDays: raw.differential.retentionDays } } : {}),
    ...(raw.log ? { log: { everyMinutes: raw.log.everyMinutes, retentionDays: raw.log.retentionDays } } : {}),
  };
}

/** A file/VM policy or a database policy, told apart by `workload`. */
export function validateAnyPolicy(input: unknown): AnyPolicy {
  return looksLikeDbPolicy(input) ? validateDbPolicy(input) : validatePolicy(input);
}

/** The full backups' schedule and retention as a plain policy, for the shared schedule and retention code. */
export function fullAsPolicy(p: DbPolicy): Policy {
  const times = [p.full.time];
  return {
    name: p.name, timeZone: p.timeZone, retention: p.full.retention, instantRestoreDays: 2,
    schedule: p.full.frequency === 'Weekly' ? { frequency: 'Weekly', weekDays: p.full.weekDays ?? [], times } : { frequency: 'Daily', times },
  };
}

/** The differentials' schedule as a plain weekly policy (its retention is unused). */
export function differentialAsPolicy(p: DbPolicy): Policy | null {
  if (!p.differential) return null;
  return {
    name: p.name, timeZone: p.timeZone, retention: { daily: { count: 7 } }, instantRestoreDays: 2,
    schedule: { frequency: 'Weekly', weekDays: p.differential.weekDays, times: [p.differential.time] },
  };
}

/** The policy a database gets when none is chosen: a full every night at 22:00 UTC kept 30 days, logs every hour kept 15 days. */
export function defaultDbPolicy(): DbPolicy {
  return {
    name: 'DefaultDatabasePolicy', workload: DB_WORKLOAD, timeZone: 'UTC',
    full: { frequency: 'Daily', time: '22:00', retention: { daily: { count: 30 } } },
    log: { everyMinutes: 60, retentionDays: 15 },
  };
}
