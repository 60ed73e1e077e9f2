/** `coffre policy ...`: pure evaluation commands that need no server. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CoffreError } from '../core/errors.js';
import { validatePolicy } from '../policy/policy.js';
import { evaluateRetention, type RetentionPoint } from '../policy/retention.js';
import { nextRuns } from '../policy/schedule.js';
import type { GlobalOptions } from './context.js';
import { printJson, table } from './output.js';

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CoffreError('InvalidArgument', `cannot read the ${what} file ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CoffreError('InvalidArgument', `the ${what} file ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function instant(value: string, flag: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(value)) throw new CoffreError('InvalidArgument', `${flag} must be an ISO 8601 instant, e.g. 2026-01-31T02:30:00Z`);
  return d;
}

function parsePoints(input: unknown): RetentionPoint[] {
  if (!Array.isArray(input)) throw new CoffreError('InvalidArgument', 'the points file must hold a JSON array');
  return input.map((raw, i) => {
    const p = raw as Record<string, unknown>;
    if (typeof p?.id !== 'string' || typeof p.time !== 'string' || (p.kind !== 'Scheduled' && p.kind !== 'OnDemand')) {
      throw new CoffreError('InvalidArgument', `point ${i}: needs "id", "time" (ISO) and "kind" ("Scheduled" or "OnDemand")`);
    }
    if (p.retainUntil !== undefined && typeof p.retainUntil !== 'string') throw new CoffreError('InvalidArgument', `point ${i}: "retainUntil" must be YYYY-MM-DD`);
    return { id: p.id, time: instant(p.time, `point ${i} time`), kind: p.kind, ...(typeof p.retainUntil === 'string' ? { retainUntil: p.retainUntil } : {}) };
  });
}

export function registerPolicyCommands(program: Command, _g: () => GlobalOptions): Command {
  const policy = program.command('policy').description('backup policies: schedules and retention');
  policy.command('preview')
    .description('evaluate retention of a policy over a list of points (no server needed)')
    .requiredOption('--file <policy.json>', 'the policy')
    .requiredOption('--points <points.json>', 'array of { id, time, kind: Scheduled|OnDemand, retainUntil? }')
    .option('--now <iso>', 'evaluate as of this instant (default: now)')
    .option('--json', 'print JSON')
    .action((o: { file: string; points: string; now?: string; json?: boolean }) => {
      const p = validatePolicy(readJson(o.file, 'policy'));
      const now = o.now ? instant(o.now, '--now') : new Date();
      const results = evaluateRetention(p, parsePoints(readJson(o.points, 'points')), now)
        .map((r) => ({ id: r.id, expiresAt: r.expiresAt.toISOString(), keep: r.keep, rules: r.rules }));
      if (o.json) printJson(results);
      else process.stdout.write(table(['id', 'expires', 'keep', 'rules'], results.map((r) => [r.id, r.expiresAt, r.keep ? 'yes' : 'no', r.rules.join(',')])) + '\n');
    });
  policy.command('schedule')
    .description('list the next run times of a policy (no server needed)')
    .requiredOption('--file <policy.json>', 'the policy')
    .option('--from <iso>', 'start after this instant (default: now)')
    .option('--count <n>', 'how many runs', '10')
    .option('--json', 'print JSON')
    .action((o: { file: string; from?: string; count: string; json?: boolean }) => {
      const p = validatePolicy(readJson(o.file, 'policy'));
      const count = Number(o.count);
      if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new CoffreError('InvalidArgument', '--count must be an integer from 1 to 10000');
      const runs = nextRuns(p, o.from ? instant(o.from, '--from') : new Date(), count).map((d) => d.toISOString());
      if (o.json) printJson(runs);
      else process.stdout.write(runs.join('\n') + '\n');
    });
  return policy;
}
