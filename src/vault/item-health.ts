/**
 * The health of a protected item, as the Backup center shows it and the alert rules see it.
 * Pure: the facts about the item (its policy, its latest backups) and the time come in, the
 * verdict goes out, so the dashboard, `coffre alerts` and /metrics can never disagree.
 *
 * - critical: the recovery point objective is breached (the last successful backup is older
 *   than the latest scheduled run whose start window has closed), or a scheduled run was
 *   missed since the last success;
 * - warning: a backup failed since the last success but the objective still holds (the next
 *   run may repair it), or the last backup completed with warnings;
 * - healthy: otherwise, including an item whose first scheduled run is not due yet.
 */
import type { JobProblem, JobStatus } from '../core/api.js';
import type { Health, RpoStatus } from '../core/monitor-api.js';
import type { Policy } from '../policy/policy.js';
import { nextRuns, previousRun } from '../policy/schedule.js';

export interface BackupFailure { jobId: string; endTime: string; error: JobProblem | null }

export interface ItemFacts {
  createdAt: string;
  /** The item's policy, when the vault schedules it (an item with no stored source is not scheduled). */
  schedule: Policy | null;
  /** End of the latest backup that made a point. */
  lastSuccess: string | null;
  /** The latest backup job, running or ended. */
  lastBackup: { jobId: string; status: JobStatus; startTime: string; endTime: string | null; warnings: number } | null;
  /** Failed backups that ended after the last success, oldest first. */
  failuresSinceSuccess: BackupFailure[];
}

/** A reason for the item's health, and the alert rule it raises (if any). */
export interface Condition { rule: 'RpoBreach' | 'MissedSchedule' | 'JobFailed' | null; severity: Health; reason: string; occurrences: number }

export const MISSED_SCHEDULE = 'MissedSchedule';

export function rpoStatus(f: ItemFacts, now: Date, runWindowMs: number): RpoStatus {
  if (!f.schedule) return { state: 'unscheduled', dueBy: null, lastSuccess: f.lastSuccess, lagSeconds: 0 };
  // The latest run R with R + window <= now: by then a backup must have started.
  const dueBy = previousRun(f.schedule, new Date(now.getTime() - runWindowMs + 1));
  const iso = dueBy.toISOString();
  if (iso < f.createdAt) return { state: 'not-due', dueBy: iso, lastSuccess: f.lastSuccess, lagSeconds: 0 };
  if (f.lastSuccess !== null && f.lastSuccess >= iso) return { state: 'compliant', dueBy: iso, lastSuccess: f.lastSuccess, lagSeconds: 0 };
  // A backup that started for this run and is still going (a large VM) is not a breach yet.
  const running = f.lastBackup && f.lastBackup.status === 'InProgress' && f.lastBackup.startTime >= iso;
  if (running) return { state: 'compliant', dueBy: iso, lastSuccess: f.lastSuccess, lagSeconds: 0 };
  return { state: 'breached', dueBy: iso, lastSuccess: f.lastSuccess, lagSeconds: Math.max(0, Math.round((now.getTime() - dueBy.getTime()) / 1000)) };
}

export function nextRun(f: ItemFacts, now: Date): string | null {
  return f.schedule ? nextRuns(f.schedule, now, 1)[0]?.toISOString() ?? null : null;
}

export function conditionsOf(f: ItemFacts, now: Date, runWindowMs: number): { rpo: RpoStatus; conditions: Condition[] } {
  const rpo = rpoStatus(f, now, runWindowMs);
  const conditions: Condition[] = [];
  if (rpo.state === 'breached') {
    conditions.push({ rule: 'RpoBreach', severity: 'critical', reason: `no successful backup since the run due at ${rpo.dueBy}${rpo.lastSuccess ? ` (last success ${rpo.lastSuccess})` : ' (never backed up)'}`, occurrences: 1 });
  }
  const missed = f.failuresSinceSuccess.filter((x) => x.error?.code === MISSED_SCHEDULE);
  const failed = f.failuresSinceSuccess.filter((x) => x.error?.code !== MISSED_SCHEDULE);
  if (missed.length) conditions.push({ rule: 'MissedSchedule', severity: 'critical', reason: `${missed.length} scheduled run(s) missed since the last success: ${missed[missed.length - 1]!.error!.message}`, occurrences: missed.length });
  if (failed.length) {
    const last = failed[failed.length - 1]!;
    conditions.push({ rule: 'JobFailed', severity: 'warning', reason: `${failed.length} backup(s) failed since the last success, latest: ${last.error ? `[${last.error.code}] ${last.error.message}` : 'no error recorded'}`, occurrences: failed.length });
  }
  if (f.lastBackup?.status === 'CompletedWithWarnings') {
    conditions.push({ rule: null, severity: 'warning', reason: `the last backup completed with ${f.lastBackup.warnings} warning(s)`, occurrences: 1 });
  }
  return { rpo, conditions };
}

export function worst(conditions: readonly { severity: Health }[]): Health {
  if (conditions.some((c) => c.severity === 'critical')) return 'critical';
  return conditions.some((c) => c.severity === 'warning') ? 'warning' : 'healthy';
}
