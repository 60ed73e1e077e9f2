/** `coffre policy ...`: pure evaluation commands that need no server. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CoffreError } from '../core/errors.js';
import type { RetentionPoint } from '../policy/retention.js';
import { adminClient, type GlobalOptions } from './context.js';
import type { RetentionChange } from '../core/api.js';
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

function changeText(change: RetentionChange): string {
  const lines = [`${change.deleted.length} point(s) would be deleted, ${change.changed.length} expiry(ies) would change`];
  for (const d of change.deleted) lines.push(`  delete ${d.id}  ${d.item}  ${d.time}`);
  for (const c of change.changed) {
    lines.push(`  keep   ${c.id}  ${c.item}  ${c.time}  until ${c.from} -> ${c.to}${c.keptFor?.length ? `  (needed by ${c.keptFor.length} kept point(s): ${c.keptFor.slice(0, 3).join(', ')}${c.keptFor.length > 3 ? ', …' : ''})` : ''}`);
  }
  return lines.join('\n');
}

/** The policy engine (and zod) load only for policy commands, keeping other commands quick to start. */
async function engine() {
  const [{ validatePolicy }, { evaluateRetention }, { nextRuns }, { validateAnyPolicy }] = await Promise.all([
    import('../policy/policy.js'), import('../policy/retention.js'), import('../policy/schedule.js'), import('../policy/db-policy.js')]);
  return { validatePolicy, evaluateRetention, nextRuns, validateAnyPolicy };
}

export function registerPolicyCommands(program: Command, g: () => GlobalOptions): Command {
  const policy = program.command('policy').description('backup policies: schedules and retention');
  policy.command('create <name>')
    .description('create a policy in a vault from a JSON file')
    .requiredOption('--file <policy.json>', 'the policy')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { file: string; vault?: string; json?: boolean }) => {
      const body = readJson(o.file, 'policy');
      (await engine()).validateAnyPolicy({ ...(body as object), name }); // refuse bad input before contacting the server
      const info = await (await adminClient(g())).createPolicy(name, body, o.vault);
      if (o.json) printJson(info);
      else process.stdout.write(`created policy ${info.name} in vault ${info.vault}\n`);
    });
  policy.command('set <name>')
    .description('change a policy; retention applies retroactively to existing points (see --dry-run)')
    .requiredOption('--file <policy.json>', 'the new policy')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--dry-run', 'only list the points the change would delete and the expiries it would change')
    .option('--request <id>', 'an approved request of the vault\'s guard, when the change shortens a retention on a guarded vault')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { file: string; vault?: string; dryRun?: boolean; request?: string; json?: boolean }) => {
      const body = readJson(o.file, 'policy');
      (await engine()).validateAnyPolicy({ ...(body as object), name });
      const r = await (await adminClient(g())).withGuardRequest(o.request).setPolicy(name, body, o.dryRun ?? false, o.vault);
      if (o.json) printJson(o.dryRun ? r.change : r);
      else process.stdout.write(`${o.dryRun ? 'dry run: ' : `changed policy ${name}: `}${changeText(r.change)}\n`);
    });
  policy.command('show <name>')
    .description('show a policy and the items it protects')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { vault?: string; json?: boolean }) => {
      const info = await (await adminClient(g())).showPolicy(name, o.vault);
      if (o.json) printJson(info);
      else process.stdout.write(`policy ${info.name} (vault ${info.vault}), items: ${info.items.join(', ') || 'none'}\n${JSON.stringify(info.policy, null, 2)}\n`);
    });
  policy.command('list')
    .description('list the policies of a vault')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const list = await (await adminClient(g())).listPolicies(o.vault);
      if (o.json) printJson(list);
      else process.stdout.write(table(['name', 'items', 'updated'], list.map((p) => [p.name, p.items.join(', '), p.updatedAt])) + '\n');
    });
  policy.command('assign <name>')
    .description('protect an item with this policy (each item has exactly one)')
    .requiredOption('--item <item>', 'the protected item')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--request <id>', 'an approved request of the vault\'s guard, when the new policy shortens a retention on a guarded vault')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { item: string; vault?: string; request?: string; json?: boolean }) => {
      const r = await (await adminClient(g())).withGuardRequest(o.request).assignPolicy(name, o.item, o.vault);
      if (o.json) printJson(r);
      else process.stdout.write(`item ${o.item} now follows policy ${name}: ${changeText(r.change)}\n`);
    });
  policy.command('preview')
    .description('evaluate retention of a policy over a list of points (no server needed)')
    .requiredOption('--file <policy.json>', 'the policy')
    .requiredOption('--points <points.json>', 'array of { id, time, kind: Scheduled|OnDemand, retainUntil? }')
    .option('--now <iso>', 'evaluate as of this instant (default: now)')
    .option('--json', 'print JSON')
    .action(async (o: { file: string; points: string; now?: string; json?: boolean }) => {
      const { validatePolicy, evaluateRetention } = await engine();
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
    .action(async (o: { file: string; from?: string; count: string; json?: boolean }) => {
      const { validatePolicy, nextRuns } = await engine();
      const p = validatePolicy(readJson(o.file, 'policy'));
      const count = Number(o.count);
      if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new CoffreError('InvalidArgument', '--count must be an integer from 1 to 10000');
      const runs = nextRuns(p, o.from ? instant(o.from, '--from') : new Date(), count).map((d) => d.toISOString());
      if (o.json) printJson(runs);
      else process.stdout.write(runs.join('\n') + '\n');
    });
  return policy;
}
