/**
 * Wall-clock arithmetic in IANA time zones, built on Intl.DateTimeFormat only.
 *
 * Schedules and retention are defined in local time ("02:30 every Sunday in Paris", "keep
 * 12 months"), so the policy engine needs two conversions — instant → local fields and
 * local fields → instant — plus calendar arithmetic on local dates. Months are 1-12 and
 * weekdays 0 (Sunday) to 6 (Saturday) throughout.
 */

export interface LocalDate {
  readonly year: number;
  /** 1-12. */
  readonly month: number;
  /** 1-31. */
  readonly day: number;
}

export interface LocalTime {
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly millisecond: number;
}

export interface LocalDateTime extends LocalDate, LocalTime {
  /** 0 = Sunday ... 6 = Saturday. */
  readonly weekday: number;
}

const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    // h23 avoids the "24:00" some ICU versions print for midnight with hour12: false.
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      calendar: 'gregory',
      numberingSystem: 'latn',
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/**
 * True for a time zone Intl knows by name (e.g. "Europe/Paris", "UTC"). Numeric offsets
 * such as "+01:00" are refused: a policy names a zone so that DST follows the law there.
 */
export function isValidTimeZone(timeZone: string): boolean {
  if (timeZone.length === 0 || /^[+-]/.test(timeZone)) return false;
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    // Intl signals an unknown zone only by throwing RangeError; "not valid" is the answer.
    return false;
  }
}

/** Milliseconds since the epoch of a proleptic-Gregorian UTC wall time (years 0-99 included). */
function utcMs(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

/** Local wall time minus UTC at `instantMs`, in milliseconds. */
export function offsetAt(instantMs: number, timeZone: string): number {
  // Intl resolves to the second; dropping the milliseconds keeps the difference exact.
  const wholeSecond = Math.floor(instantMs / 1000) * 1000;
  const fields: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(wholeSecond)) {
    if (part.type !== 'literal') fields[part.type] = Number(part.value);
  }
  const wall = utcMs(fields.year ?? 0, fields.month ?? 1, fields.day ?? 1, fields.hour ?? 0, fields.minute ?? 0, fields.second ?? 0);
  return wall - wholeSecond;
}

/** Local calendar fields of `instant` in `timeZone`. */
export function toLocal(instant: Date, timeZone: string): LocalDateTime {
  const ms = instant.getTime();
  const shifted = new Date(ms + offsetAt(ms, timeZone));
  return {
    year: shifted.getUTCFullYear(),
    month: shifted.getUTCMonth() + 1,
    day: shifted.getUTCDate(),
    hour: shifted.getUTCHours(),
    minute: shifted.getUTCMinutes(),
    second: shifted.getUTCSeconds(),
    millisecond: shifted.getUTCMilliseconds(),
    weekday: shifted.getUTCDay(),
  };
}

/**
 * The instant at which the clocks of `timeZone` show `local`.
 *
 * A wall time that does not exist (in a DST gap) moves forward by the length of the gap
 * (Paris 02:30 on the spring-forward day → 03:30 CEST), so a run or an expiry is delayed,
 * never dropped. A wall time that occurs twice (fall-back) takes the earlier instant.
 */
export function fromLocal(local: LocalDate & Partial<LocalTime>, timeZone: string): Date {
  const wall = utcMs(local.year, local.month, local.day, local.hour ?? 0, local.minute ?? 0, local.second ?? 0, local.millisecond ?? 0);
  // Offsets a day either side are the ones in force on each side of any transition near
  // this wall time (real offsets stay within ±14 h and transitions are months apart).
  const before = offsetAt(wall - DAY_MS, timeZone);
  const after = offsetAt(wall + DAY_MS, timeZone);
  const valid = [wall - before, wall - after].filter((t) => t + offsetAt(t, timeZone) === wall);
  if (valid.length > 0) return new Date(Math.min(...valid));
  // In a gap: reading the wall time with the pre-transition offset lands `gap` later.
  return new Date(wall - before);
}

export function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

export function daysInMonth(year: number, month: number): number {
  return new Date(utcMs(year, month + 1, 0)).getUTCDate();
}

/** Days since 1970-01-01 of a calendar date; differences count calendar days. */
export function dayNumber(date: LocalDate): number {
  return Math.round(utcMs(date.year, date.month, date.day) / DAY_MS);
}

export function fromDayNumber(n: number): LocalDate {
  const date = new Date(n * DAY_MS);
  return { year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate() };
}

/** 0 = Sunday ... 6 = Saturday. */
export function weekdayOf(date: LocalDate): number {
  return new Date(utcMs(date.year, date.month, date.day)).getUTCDay();
}

export function addDays(date: LocalDate, days: number): LocalDate {
  return fromDayNumber(dayNumber(date) + days);
}

/** Calendar months; a day the target month lacks clamps to its last day (Jan 31 + 1 → Feb 28/29). */
export function addMonths(date: LocalDate, months: number): LocalDate {
  const index = date.year * 12 + (date.month - 1) + months;
  const year = Math.floor(index / 12);
  const month = index - year * 12 + 1;
  return { year, month, day: Math.min(date.day, daysInMonth(year, month)) };
}

/** Calendar years; Feb 29 + 1 year → Feb 28. */
export function addYears(date: LocalDate, years: number): LocalDate {
  return addMonths(date, years * 12);
}

/** "YYYY-MM-DD" key, also the format of an on-demand point's retain-until date. */
export function formatLocalDate(date: LocalDate): string {
  const pad = (n: number, width: number) => String(n).padStart(width, '0');
  return `${pad(date.year, 4)}-${pad(date.month, 2)}-${pad(date.day, 2)}`;
}

/** Parses "YYYY-MM-DD"; undefined unless it names a real calendar date. */
export function parseLocalDate(text: string): LocalDate | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (match === null) return undefined;
  const date = { year: Number(match[1]), month: Number(match[2]), day: Number(match[3]) };
  if (date.month < 1 || date.month > 12 || date.day < 1 || date.day > daysInMonth(date.year, date.month)) return undefined;
  return date;
}
