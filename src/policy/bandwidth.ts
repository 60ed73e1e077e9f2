/**
 * Bandwidth limits by the hours of the day, as backup agents offer them (MARS/MABS: work days,
 * a work-hours window, one limit inside it and another outside): e.g. 20 Mbit/s from 08:00 to
 * 18:00 Monday to Friday, unlimited otherwise. Pure: the caller passes the instant, and the
 * throttle that paces an upload (src/agent/throttle.ts) asks again before every slice it sends,
 * so a limit changes on time even in the middle of a long copy.
 *
 * Rates are bytes per second; null is "unlimited". Limits are read on the schedule's time
 * zone's clocks, so a DST change moves the window with the office's clocks.
 */
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { parseClockTime, WEEK_DAYS, type ClockTime, type WeekDay } from './policy.js';
import { addDays, fromLocal, isValidTimeZone, toLocal, weekdayOf } from './zoned-time.js';

export interface BandwidthSchedule {
  readonly timeZone: string;
  readonly workDays: readonly WeekDay[];
  /** Start of work hours, inclusive ("HH:MM"). */
  readonly workStart: ClockTime;
  /** End of work hours, exclusive ("HH:MM", after workStart). */
  readonly workEnd: ClockTime;
  readonly workBytesPerSecond: number | null;
  readonly otherBytesPerSecond: number | null;
}

/** What applies at an instant, and until when (null: the limit never changes). */
export interface BandwidthNow { bytesPerSecond: number | null; workHours: boolean; until: Date | null }

/** The range MARS accepts, 512 Kbit/s to 1,023 Mbit/s, in bytes per second. */
export const RATE_LIMITS = { min: 64_000, max: 127_875_000 } as const;

export const DEFAULT_WORK_DAYS: readonly WeekDay[] = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday'];

/** No limit at any hour: what a backup server does until told otherwise. */
export const UNLIMITED: BandwidthSchedule = {
  timeZone: 'UTC', workDays: DEFAULT_WORK_DAYS, workStart: '08:00', workEnd: '18:00', workBytesPerSecond: null, otherBytesPerSecond: null,
};

const rateMessage = `must be null (unlimited) or a whole number of bytes per second from ${RATE_LIMITS.min} (512 Kbit/s) to ${RATE_LIMITS.max} (1023 Mbit/s)`;
const rateSchema = z.number({ error: rateMessage }).int(rateMessage).min(RATE_LIMITS.min, rateMessage).max(RATE_LIMITS.max, rateMessage).nullable();
const clockTime = z.string({ error: 'must be "HH:MM" from 00:00 to 23:59' }).regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be "HH:MM" from 00:00 to 23:59');

const scheduleSchema = z.strictObject({
  timeZone: z.string().refine(isValidTimeZone, 'must be an IANA time zone name such as "Europe/Paris"').default('UTC'),
  workDays: z.array(z.enum(WEEK_DAYS, { error: `must be one of ${WEEK_DAYS.join(', ')}` }))
    .refine((l) => new Set(l).size === l.length, 'must not repeat a day').default([...DEFAULT_WORK_DAYS]),
  workStart: clockTime.default('08:00'),
  workEnd: clockTime.default('18:00'),
  workBytesPerSecond: rateSchema,
  otherBytesPerSecond: rateSchema.default(null),
});

/** Checks untrusted input; throws InvalidArgument naming the field. */
export function validateBandwidthSchedule(input: unknown): BandwidthSchedule {
  const r = scheduleSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CoffreError('InvalidArgument', `bandwidth schedule: ${issue ? `${issue.path.join('.') || 'schedule'} ${issue.message}` : 'invalid'}`);
  }
  const s = r.data;
  if (s.workEnd <= s.workStart) throw new CoffreError('InvalidArgument', `bandwidth schedule: workEnd (${s.workEnd}) must come after workStart (${s.workStart}) on the same day`);
  return { timeZone: s.timeZone, workDays: s.workDays, workStart: s.workStart, workEnd: s.workEnd, workBytesPerSecond: s.workBytesPerSecond, otherBytesPerSecond: s.otherBytesPerSecond };
}

const minutesOf = (t: ClockTime) => { const { hour, minute } = parseClockTime(t); return hour * 60 + minute; };

/** The limit in force at `instant`, and when it next may change. */
export function bandwidthAt(s: BandwidthSchedule, instant: Date): BandwidthNow {
  const local = toLocal(instant, s.timeZone);
  const minute = local.hour * 60 + local.minute;
  const workDay = s.workDays.includes(WEEK_DAYS[local.weekday]!);
  const start = minutesOf(s.workStart);
  const end = minutesOf(s.workEnd);
  const workHours = workDay && minute >= start && minute < end;
  const boundary = (days: number, at: ClockTime) => fromLocal({ ...addDays(local, days), ...parseClockTime(at) }, s.timeZone);
  let until: Date | null = null;
  if (workHours) until = boundary(0, s.workEnd);
  else if (s.workDays.length > 0) {
    // The next start of work hours: today's if still ahead, else that of the next work day.
    for (let d = workDay && minute < start ? 0 : 1; d <= 7 && until === null; d++) {
      const day = addDays(local, d);
      if (s.workDays.includes(WEEK_DAYS[weekdayOf(day)]!)) until = boundary(d, s.workStart);
    }
  }
  return { bytesPerSecond: workHours ? s.workBytesPerSecond : s.otherBytesPerSecond, workHours, until };
}

const UNITS: Record<string, number> = {
  'kbit': 1000 / 8, 'mbit': 1_000_000 / 8, 'gbit': 1_000_000_000 / 8, 'kbps': 1000 / 8, 'mbps': 1_000_000 / 8, 'gbps': 1_000_000_000 / 8,
  'kib': 1024, 'mib': 1024 * 1024, 'gib': 1024 ** 3, 'kb': 1000, 'mb': 1_000_000, 'gb': 1_000_000_000,
};

/**
 * A rate as people write it: "20Mbit" (per second implied, "/s" allowed), "2MiB", "512Kbit",
 * "750000" (bytes per second), or "unlimited" (null).
 */
export function parseRate(text: string): number | null {
  const t = text.trim().toLowerCase().replace(/\/s$/, '');
  if (t === 'unlimited' || t === 'none') return null;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z/]*)$/.exec(t);
  const factor = m ? (m[2] === '' || m[2] === 'b' ? 1 : UNITS[m[2]!]) : undefined;
  if (!m || factor === undefined) {
    throw new CoffreError('InvalidArgument', `${JSON.stringify(text)} is not a rate: write e.g. 20Mbit, 2MiB, 512Kbit, 750000 (bytes per second) or unlimited`);
  }
  const bytes = Math.round(Number(m[1]) * factor);
  if (bytes < RATE_LIMITS.min || bytes > RATE_LIMITS.max) {
    throw new CoffreError('InvalidArgument', `${text} is outside the range a limit may take: 512Kbit to 1023Mbit`);
  }
  return bytes;
}

/** A rate for people: "2.50 MB/s (20 Mbit/s)" or "unlimited". */
export function formatRate(bytesPerSecond: number | null): string {
  if (bytesPerSecond === null) return 'unlimited';
  const mbit = (bytesPerSecond * 8) / 1_000_000;
  return `${(bytesPerSecond / 1_000_000).toFixed(2)} MB/s (${mbit >= 10 ? mbit.toFixed(0) : mbit.toFixed(1)} Mbit/s)`;
}
