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

/**
 * In an expected argument, `@SNAP0@`, `@SNAP1@`... stand for the names the run gives its
 * snapshots (they hold its pid): the first use binds the name, later ones must repeat it, and
 * outputs get the bound names put in.
 */
const TOKEN = /@SNAP\d+@/g;

export class RecordedRunner implements CommandRunner {
  readonly ran: string[][] = [];
  readonly names = new Map<string, string>();
  constructor(private readonly steps: Step[]) {}

  private fill(text: string): string {
    return text.replace(TOKEN, (t) => this.names.get(t) ?? t);
  }

  async run(file: string, args: string[]): Promise<CommandOutput> {
    const argv = [file, ...args];
    this.ran.push(argv);
    const next = this.steps.shift();
    assert.ok(next, `unexpected command after the recorded sequence: ${argv.join(' ')}`);
    assert.equal(argv.length, next.argv.length, `command ${this.ran.length}: ${argv.join(' ')} for ${next.argv.join(' ')}`);
    next.argv.forEach((want, i) => {
      const pattern = new RegExp(`^${want.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(TOKEN, (t) => this.names.get(t) ?? `(?<${t.slice(1, -1)}>coffre-\\d+-\\d+-\\d+-\\d+)`)}$`);
      const m = pattern.exec(argv[i]!);
      assert.ok(m, `command ${this.ran.length}: ${argv.join(' ')} for ${this.fill(next.argv.join(' '))}`);
      for (const [k, v] of Object.entries(m.groups ?? {})) this.names.set(`@${k}@`, v);
    });
    await next.effect?.();
    return { ...next.out, stdout: this.fill(next.out.stdout), stderr: this.fill(next.out.stderr) };
  }

  /** Every recorded command ran. */
  assertDone(): void {
    assert.deepEqual(this.steps.map((s) => s.argv.join(' ')), [], 'recorded commands that never ran');
  }
}
