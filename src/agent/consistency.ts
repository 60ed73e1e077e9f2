/**
 * Taking a snapshot (a VM's disks, a file backup's volumes) as consistently as the machine
 * allows, and saying which it got:
 *
 *   pre-script (quiesce) → freeze (fsfreeze of --freeze PATH, and/or a VM guest's file systems
 *   through the QEMU guest agent) → snapshot → thaw → post-script (resume)
 *
 * - `app`: a pre-script ran and succeeded, and the post-script (if any) succeeded.
 * - `filesystem`: otherwise, if every freeze asked for succeeded during the snapshot.
 * - `crash`: otherwise (the disks as they were at one instant, like after a power cut).
 *
 * A failing or hanging script never fails the backup: it lowers the consistency and adds a
 * warning. Once the pre-script ran, the post-script always runs, even when the snapshot
 * fails, so an application is never left quiesced; a frozen file system is always thawed.
 * The labels above are the VM's; a file backup, whose volume snapshot is filesystem-consistent
 * by itself, uses `quiesce` and labels its point itself (src/agent/snapshot/snapshot-backup.ts).
 */
import type { Consistency, JobProblem } from '../core/api.js';
import { describeEnd, runCommand, type CommandResult } from './scripts.js';

export interface QuiescePlan {
  preScript?: string;
  postScript?: string;
  freezePath?: string;
  /** A VM's QEMU guest agent socket: guest-fsfreeze-freeze / thaw of the guest's file systems. */
  guestAgent?: string;
  /** Limit for each script, and for each freeze and thaw. */
  timeoutMs: number;
  /** Given to the scripts as environment variables (COFFRE_VM, COFFRE_POINT, ...). */
  env?: Record<string, string>;
}

/** The side effects, so tests can run the sequence without root or a mounted file system. */
export interface Quiescer {
  script(file: string, timeoutMs: number, env: Record<string, string>): Promise<CommandResult>;
  freeze(path: string, timeoutMs: number): Promise<CommandResult>;
  thaw(path: string, timeoutMs: number): Promise<CommandResult>;
  /** Through the QEMU guest agent at `socket` (default: the real one). */
  guestFreeze?(socket: string, action: 'freeze' | 'thaw', timeoutMs: number): Promise<CommandResult>;
}

/** A guest-agent request as a CommandResult, so the sequence treats it like fsfreeze. */
async function viaGuestAgent(socket: string, action: 'freeze' | 'thaw', timeoutMs: number): Promise<CommandResult> {
  const started = Date.now();
  const { guestFreeze } = await import('./vm/guest-agent.js');
  try {
    const n = await guestFreeze(socket, action, timeoutMs);
    return { ok: true, exitCode: 0, signal: null, timedOut: false, output: `${n} file system(s) ${action === 'freeze' ? 'frozen' : 'thawed'}`, durationMs: Date.now() - started };
  } catch (e) {
    return { ok: false, exitCode: 1, signal: null, timedOut: false, output: (e as Error).message, durationMs: Date.now() - started };
  }
}

export const systemQuiescer: Quiescer = {
  script: (file, timeoutMs, env) => runCommand(file, [], { timeoutMs, env }),
  freeze: (path, timeoutMs) => runCommand('fsfreeze', ['--freeze', path], { timeoutMs }),
  thaw: (path, timeoutMs) => runCommand('fsfreeze', ['--unfreeze', path], { timeoutMs }),
  guestFreeze: viaGuestAgent,
};

export type StepName = 'pre-script' | 'freeze' | 'guest-freeze' | 'snapshot' | 'thaw' | 'guest-thaw' | 'post-script';
export interface StepRecord { step: StepName; ok: boolean; durationMs: number; detail?: string }

export type QuiesceOutcome<T> =
  | { ok: true; result: T; consistency: Consistency; warnings: JobProblem[]; steps: StepRecord[] }
  | { ok: false; error: unknown; warnings: JobProblem[]; steps: StepRecord[] };

/** The first half of the sequence: the application is quiesced (as far as the pre-script went). */
export interface Quiesced {
  /** The pre-script ran and succeeded (false when there is none). */
  preOk: boolean;
  frozen: boolean;
  /** Every freeze asked for (--freeze, the guest agent) succeeded, and at least one was asked for. */
  allFrozen: boolean;
  /** What went wrong so far and later; `resume` adds to them. */
  warnings: JobProblem[];
  steps: StepRecord[];
  /**
   * Thaws and runs the post-script: once, whatever happened in between (call it from a
   * `finally`). Says whether the post-script succeeded (true when there is none).
   */
  resume(snapshotOk: boolean): Promise<{ postOk: boolean }>;
}

/**
 * pre-script, then fsfreeze: the half before the snapshot. Split from the half after it so a
 * caller can keep the application quiesced for longer than one snapshot (a file backup read
 * live, with no snapshot, runs the post-script after its read).
 */
export async function quiesce(plan: QuiescePlan, q: Quiescer): Promise<Quiesced> {
  const warnings: JobProblem[] = [];
  const steps: StepRecord[] = [];
  const env = plan.env ?? {};
  const record = (step: StepName, r: CommandResult, what: string) => {
    steps.push({ step, ok: r.ok, durationMs: r.durationMs, ...(r.ok ? {} : { detail: describeEnd(what, r, plan.timeoutMs) }) });
    return r.ok;
  };

  let preOk = false;
  if (plan.preScript) {
    const r = await q.script(plan.preScript, plan.timeoutMs, { ...env, COFFRE_PHASE: 'pre' });
    preOk = record('pre-script', r, `pre-script ${plan.preScript}`);
    if (!preOk) {
      warnings.push({ code: r.timedOut ? 'PreScriptTimeout' : 'PreScriptFailed',
        message: `${describeEnd(`pre-script ${plan.preScript}`, r, plan.timeoutMs)}; the point is not application-consistent` });
    }
  }

  let frozen = false;
  if (plan.freezePath) {
    const r = await q.freeze(plan.freezePath, plan.timeoutMs);
    frozen = record('freeze', r, `fsfreeze --freeze ${plan.freezePath}`);
    if (!frozen) warnings.push({ code: 'FreezeFailed', message: `${describeEnd(`fsfreeze --freeze ${plan.freezePath}`, r, plan.timeoutMs)}; the file system was not frozen` });
  }
  const guest = q.guestFreeze ?? viaGuestAgent;
  let guestFrozen = false;
  if (plan.guestAgent) {
    const r = await guest(plan.guestAgent, 'freeze', plan.timeoutMs);
    guestFrozen = record('guest-freeze', r, `guest-fsfreeze-freeze through ${plan.guestAgent}`);
    if (!guestFrozen) {
      warnings.push({ code: 'FreezeFailed', message: `guest-fsfreeze-freeze through ${plan.guestAgent} failed (${r.output}); the guest's file systems were not frozen` });
      // A freeze that failed half-way may have frozen some file systems: thaw them all.
      await guest(plan.guestAgent, 'thaw', plan.timeoutMs);
    }
  }
  const allFrozen = Boolean(plan.freezePath || plan.guestAgent) && (!plan.freezePath || frozen) && (!plan.guestAgent || guestFrozen);

  let resumed: Promise<{ postOk: boolean }> | null = null;
  const resume = async (snapshotOk: boolean): Promise<{ postOk: boolean }> => {
    if (guestFrozen) {
      const r = await guest(plan.guestAgent!, 'thaw', plan.timeoutMs);
      if (!record('guest-thaw', r, `guest-fsfreeze-thaw through ${plan.guestAgent}`)) {
        warnings.push({ code: 'ThawFailed', message: `guest-fsfreeze-thaw through ${plan.guestAgent} failed (${r.output}); thaw the guest now (qemu-ga: guest-fsfreeze-thaw)` });
      }
    }
    if (frozen) {
      const r = await q.thaw(plan.freezePath!, plan.timeoutMs);
      if (!record('thaw', r, `fsfreeze --unfreeze ${plan.freezePath}`)) {
        warnings.push({ code: 'ThawFailed', message: `${describeEnd(`fsfreeze --unfreeze ${plan.freezePath}`, r, plan.timeoutMs)}; run \`fsfreeze --unfreeze ${plan.freezePath}\` now` });
      }
    }
    let postOk = true;
    if (plan.postScript) {
      const r = await q.script(plan.postScript, plan.timeoutMs, {
        ...env, COFFRE_PHASE: 'post', COFFRE_PRE_SCRIPT: plan.preScript ? (preOk ? 'ok' : 'failed') : 'none', COFFRE_SNAPSHOT: snapshotOk ? 'ok' : 'failed',
      });
      postOk = record('post-script', r, `post-script ${plan.postScript}`);
      if (!postOk) {
        warnings.push({ code: r.timedOut ? 'PostScriptTimeout' : 'PostScriptFailed',
          message: `${describeEnd(`post-script ${plan.postScript}`, r, plan.timeoutMs)}; the point is not application-consistent and the application may still be quiesced` });
      }
    }
    return { postOk };
  };
  return {
    preOk, frozen, allFrozen, warnings, steps,
    resume: (snapshotOk) => (resumed ??= resume(snapshotOk)),
  };
}

export async function snapshotConsistently<T>(plan: QuiescePlan, q: Quiescer, take: () => Promise<T>): Promise<QuiesceOutcome<T>> {
  const quiesced = await quiesce(plan, q);
  const { warnings, steps } = quiesced;

  let result: T | undefined;
  let error: unknown = null;
  let snapshotOk = false;
  const started = Date.now();
  try {
    result = await take();
    snapshotOk = true;
    steps.push({ step: 'snapshot', ok: true, durationMs: Date.now() - started });
  } catch (e) {
    error = e;
    steps.push({ step: 'snapshot', ok: false, durationMs: Date.now() - started, detail: (e as Error).message });
  }

  const { postOk } = await quiesced.resume(snapshotOk);
  if (!snapshotOk) return { ok: false, error, warnings, steps };
  const consistency: Consistency = plan.preScript && quiesced.preOk && postOk ? 'app' : quiesced.allFrozen ? 'filesystem' : 'crash';
  return { ok: true, result: result as T, consistency, warnings, steps };
}
