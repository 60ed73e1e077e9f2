/**
 * When a database policy's backups run. Pure: the caller passes the times.
 * Fulls and Differentials run at their time of day on their days (the shared schedule code);
 * Log backups run every `everyMinutes` from local midnight (every 60 minutes: 00:00, 01:00, …).
 */
import type { DbBackupType } from '../core/api.js';
import { differentialAsPolicy, fullAsPolicy, type DbPolicy } from './db-policy.js';
import { runsBetween } from './schedule.js';
import { addDays, dayNumber, fromLocal, toLocal, type LocalDate } from './zoned-time.js';

export const DB_BACKUP_TYPES: readonly DbBackupType[] = ['Full', 'Differential', 'Log'];

function logRunsBetween(policy: DbPolicy, every: number, after: Date, until: Date): Date[] {
  const found = new Set<number>();
  // A day early: a run at local midnight may fall before `after`'s local day in UTC terms.
  const first = addDays(toLocal(after, policy.timeZone), -1);
  const last = toLocal(until, policy.timeZone);
  for (let d: LocalDate = first; dayNumber(d) <= dayNumber(last) + 1; d = addDays(d, 1)) {
    for (let minute = 0; minute < 1440; minute += every) {
      const at = fromLocal({ year: d.year, month: d.month, day: d.day, hour: Math.floor(minute / 60), minute: minute % 60 }, policy.timeZone).getTime();
      if (at > after.getTime() && at <= until.getTime()) found.add(at);
    }
  }
  return [...found].sort((a, b) => a - b).map((t) => new Date(t));
}

/** The scheduled runs of one backup type in (after, until], in order; none for a type the policy does not schedule. */
export function dbRunsBetween(policy: DbPolicy, type: DbBackupType, after: Date, until: Date): Date[] {
  if (!(after < until)) return [];
  if (type === 'Full') return runsBetween(fullAsPolicy(policy), after, until);
  if (type === 'Differential') {
    const p = differentialAsPolicy(policy);
    return p ? runsBetween(p, after, until) : [];
  }
  return policy.log ? logRunsBetween(policy, policy.log.everyMinutes, after, until) : [];
}
