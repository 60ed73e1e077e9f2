/**
 * The one door through which the snapshot code runs the system's tools (btrfs, lvs, lvcreate,
 * mount, zfs...). It is an interface so that the LVM and ZFS sequences, which this project's
 * machines cannot run (no device-mapper, no ZFS module), are tested against recorded outputs of
 * the real tools; btrfs goes through the same door and is tested for real.
 */
import { execFile } from 'node:child_process';

export interface CommandOutput {
  /** The exit status; null when the tool could not be started or was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  /**
   * Runs `file` with `args` (no shell) and resolves with how it ended; never rejects. A tool
   * that is not installed resolves with code null and the reason in stderr.
   */
  run(file: string, args: string[]): Promise<CommandOutput>;
}

/** How long one tool may take: a snapshot is seconds, a hung tool must not hang a backup forever. */
const TOOL_TIMEOUT_MS = 5 * 60_000;

export const systemRunner: CommandRunner = {
  run(file, args) {
    return new Promise((resolve) => {
      // LC_ALL=C: the tools' messages in the job are then the ones users can search for.
      execFile(file, args, { timeout: TOOL_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C', LVM_SUPPRESS_FD_WARNINGS: '1' } },
        (error, stdout, stderr) => {
          if (!error) return resolve({ code: 0, stdout, stderr });
          const e = error as NodeJS.ErrnoException & { code?: number | string };
          resolve({ code: typeof e.code === 'number' ? e.code : null, stdout, stderr: stderr || e.message });
        });
    });
  },
};

/** One line naming a failed command and what it said, for errors and warnings. */
export function describeFailure(file: string, args: string[], out: CommandOutput): string {
  const said = (out.stderr.trim() || out.stdout.trim()).split('\n').map((l) => l.trim()).filter(Boolean).slice(-3).join(' | ');
  const how = out.code === null ? 'could not run' : `exited with status ${out.code}`;
  return `\`${[file, ...args].join(' ')}\` ${how}${said ? `: ${said}` : ''}`;
}
