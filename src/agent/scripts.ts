/**
 * Running the user's pre- and post-scripts (and fsfreeze) with an enforced time limit. A
 * script runs in its own process group, so a timeout kills it and everything it started
 * (a `sleep` it waits on, a database client), not only the shell.
 */
import { spawn } from 'node:child_process';

/** Limit for each pre/post script unless the item or the run gives one. */
export const DEFAULT_SCRIPT_TIMEOUT_SECONDS = 300;

export interface CommandResult {
  ok: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The end of what it printed (stdout and stderr), for the job's warnings. */
  output: string;
  durationMs: number;
}

const OUTPUT_KEPT = 2000;
/** After SIGTERM, how long a timed-out script gets to exit before SIGKILL. */
const KILL_GRACE_MS = 2000;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone (the script exited between the timer and the kill): nothing to stop.
  }
}

/**
 * Runs `file` with `args`, without a shell. Resolves (never rejects) with how it ended:
 * a command that cannot be started reports ok=false with the reason as output.
 */
export function runCommand(file: string, args: string[], opts: { timeoutMs: number; env?: Record<string, string>; cwd?: string }): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let settled = false;
    const keep = (d: Buffer) => { output = (output + d.toString('utf8')).slice(-OUTPUT_KEPT); };
    const child = spawn(file, args, {
      cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let grace: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) {
        killGroup(child.pid, 'SIGTERM');
        grace = setTimeout(() => killGroup(child.pid!, 'SIGKILL'), KILL_GRACE_MS);
      }
    }, opts.timeoutMs);
    const finish = (r: Omit<CommandResult, 'durationMs' | 'output' | 'timedOut'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (grace) clearTimeout(grace);
      // Whatever the script left running in its group goes with it.
      if (timedOut && child.pid) killGroup(child.pid, 'SIGKILL');
      resolve({ ...r, ok: r.ok && !timedOut, timedOut, output: output.trim(), durationMs: Date.now() - started });
    };
    child.on('error', (e) => { output = e.message; finish({ ok: false, exitCode: null, signal: null }); });
    child.on('close', (exitCode, signal) => finish({ ok: exitCode === 0, exitCode, signal }));
  });
}

/** One line saying how a command ended, for warnings. */
export function describeEnd(what: string, r: CommandResult, timeoutMs: number): string {
  const tail = r.output ? `: ${r.output.split('\n').slice(-3).join(' | ')}` : '';
  if (r.timedOut) return `${what} did not finish within ${timeoutMs / 1000} s and was killed${tail}`;
  if (r.signal) return `${what} was killed by ${r.signal}${tail}`;
  if (r.exitCode === null) return `${what} could not be started${tail}`;
  return `${what} exited with status ${r.exitCode}${tail}`;
}
