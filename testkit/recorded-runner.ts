/**
 * A CommandRunner that plays back recorded outputs of real tools (test/fixtures/snapshot/) and
 * checks that the code under test runs exactly the expected commands, in order. For the LVM and
 * ZFS sequences, which this kernel cannot run (no device-mapper, no ZFS).
 */
import assert from 'node:assert/strict';
import type { CommandOutput, CommandRunner } from '../src/agent/snapshot/runner.js';

export interface Step {
  argv: string[];
  out: CommandOutput;
  /** What the real command would have done to the machine (e.g. a mount), done by the test. */
  effect?: () => Promise<void>;
}

export const ok = (stdout = '', stderr = ''): CommandOutput => ({ code: 0, stdout, stderr });
export const failed = (code: number | null, stderr: string, stdout = ''): CommandOutput => ({ code, stdout, stderr });

export class RecordedRunner implements CommandRunner {
  readonly ran: string[][] = [];
  constructor(private readonly steps: Step[]) {}

  async run(file: string, args: string[]): Promise<CommandOutput> {
    const argv = [file, ...args];
    this.ran.push(argv);
    const next = this.steps.shift();
    assert.ok(next, `unexpected command after the recorded sequence: ${argv.join(' ')}`);
    assert.deepEqual(argv, next.argv, `command ${this.ran.length} of the sequence`);
    await next.effect?.();
    return next.out;
  }

  /** Every recorded command ran. */
  assertDone(): void {
    assert.deepEqual(this.steps.map((s) => s.argv.join(' ')), [], 'recorded commands that never ran');
  }
}
