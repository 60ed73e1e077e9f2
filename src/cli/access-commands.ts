/**
 * `coffre principal|role|item|machine|guard|audit|job`, and `vault delete|security|set-security|
 * `policy delete`: access and protection from the command line. Parsing and
 * printing only; the vault decides. A guarded operation answers GuardApprovalRequired with a
 * request id: the same command with `--request ID` runs it once the guard approved.
 */
import { Option, type Command } from 'commander';
import type { AuditEntry, GuardRequestInfo, ItemStatus, SecurityInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { retainUntil } from './arguments.js';
import { adminClient, type GlobalOptions } from './context.js';
import { jobSummary, printJson, table } from './output.js';

const REQUEST_HELP = 'an approved request of the vault\'s guard (see `coffre guard requests`) for this exact operation';

function itemsTable(items: ItemStatus[]): string {
  return table(['item', 'vault', 'machine', 'kind', 'policy', 'state', 'since', 'purge at', 'points', 'last backup'],
    items.map((i) => [i.name, i.vault, i.machine, i.kind, i.policy, i.state, i.stateSince?.slice(0, 19).replace('T', ' ') ?? '', i.purgeAt?.slice(0, 19).replace('T', ' ') ?? '', i.points, i.lastBackup?.slice(0, 19).replace('T', ' ') ?? '']));
}

function securityText(s: SecurityInfo): string {
  return [
    `vault ${s.vault}`,
    `  soft delete    ${s.softDelete.state} (${s.softDelete.days} days)${s.softDeletedItems ? `, ${s.softDeletedItems} item(s) soft-deleted` : ''}`,
    `  immutability   ${s.immutability}`,
    `  guard          ${s.guard ?? 'none'}${s.guard ? ` (requests valid ${s.guardWindowMinutes} min)` : ''}`,
  ].join('\n');
}

function requestsTable(rs: GuardRequestInfo[]): string {
  return table(['id', 'vault', 'requester', 'operation', 'target', 'status', 'expires'], rs.map((r) => [r.id, r.vault, r.requester, r.operation, r.target, r.status, r.expiresAt.slice(0, 19).replace('T', ' ')]));
}

function auditTable(es: AuditEntry[]): string {
  return table(['time', 'principal', 'operation', 'target', 'result', 'code'], es.map((e) => [e.time.slice(0, 19).replace('T', ' '), e.principal, e.operation, e.target, e.result, e.code ?? '']));
}

/** `--since`: an ISO time, or a duration back from now such as 30m, 12h, 7d. */
export function sinceArgument(value: string): string {
  const m = /^(\d+)([mhd])$/.exec(value);
  if (m) return new Date(Date.now() - Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd']).toISOString();
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new CoffreError('InvalidArgument', '--since is an ISO time (2026-01-31T00:00:00Z) or a duration back from now (30m, 12h, 7d)');
  return new Date(t).toISOString();
}

export function registerAccessCommands(program: Command, g: () => GlobalOptions): void {
  const client = async (request?: string) => (await adminClient(g())).withGuardRequest(request);

  // ---- principals and roles ----
  const principal = program.command('principal').description('principals: people and programs that sign in with an API key');
  principal.command('create <name>')
    .description('create a principal; its API key is printed once (stored hashed)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const p = await (await client()).createPrincipal(name);
      if (o.json) printJson(p);
      else process.stdout.write(`created principal ${p.name}\nAPI key (shown once, keep it safe): ${p.key}\ngive it a role: coffre role assign --principal ${p.name} --role "Backup Operator" --scope /subscriptions/default/vaults/VAULT\n`);
    });
  principal.command('list')
    .description('list principals and their roles')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const ps = await (await client()).listPrincipals();
      if (o.json) printJson(ps);
      else process.stdout.write(table(['name', 'roles', 'created'], ps.map((p) => [p.name + (p.builtin ? ' (built-in)' : ''), p.roles.map((r) => `${r.role} at ${r.scope}`).join('\n') || '-', p.createdAt])) + '\n');
    });
  principal.command('delete <name>')
    .description('delete a principal and its role assignments; its key stops working')
    .action(async (name: string) => {
      await (await client()).deletePrincipal(name);
      process.stdout.write(`deleted principal ${name}\n`);
    });

  const role = program.command('role').description('built-in roles and their assignments');
  const assignmentOptions = (c: Command) => c
    .requiredOption('--principal <name>', 'the principal')
    .requiredOption('--role <role>', 'Owner, Contributor, Reader, Backup Contributor, Backup Operator or Backup Reader')
    .requiredOption('--scope <scope>', '/, /subscriptions/ID or /subscriptions/ID/vaults/NAME');
  assignmentOptions(role.command('assign').description('give a principal a role at a scope (and everything under it)'))
    .option('--json', 'print JSON')
    .action(async (o: { principal: string; role: string; scope: string; json?: boolean }) => {
      const a = await (await client()).assignRole(o);
      if (o.json) printJson(a);
      else process.stdout.write(`${a.principal} is ${a.role} at ${a.scope}\n`);
    });
  assignmentOptions(role.command('remove').description('take a role assignment away'))
    .action(async (o: { principal: string; role: string; scope: string }) => {
      const r = await (await client()).removeRole(o);
      process.stdout.write(r.removed ? `removed: ${o.principal} is no longer ${o.role} at ${o.scope}\n` : `${o.principal} was not ${o.role} at ${o.scope}\n`);
    });
  role.command('list')
    .description('list role assignments (those at scopes you may view)')
    .option('--principal <name>', 'only this principal\'s')
    .option('--scope <scope>', 'only assignments at or under this scope')
    .option('--definitions', 'list the built-in roles and the operations each permits instead')
    .option('--json', 'print JSON')
    .action(async (o: { principal?: string; scope?: string; definitions?: boolean; json?: boolean }) => {
      const c = await client();
      if (o.definitions) {
        const defs = await c.roleDefinitions();
        if (o.json) printJson(defs);
        else process.stdout.write(table(['role', 'operations'], defs.map((d) => [d.role, d.operations.join('\n')])) + '\n');
        return;
      }
      const list = await c.listAssignments({ ...(o.principal ? { principal: o.principal } : {}), ...(o.scope ? { scope: o.scope } : {}) });
      if (o.json) printJson(list);
      else process.stdout.write(list.length ? table(['principal', 'role', 'scope', 'since'], list.map((a) => [a.principal, a.role, a.scope, a.createdAt])) + '\n' : 'no role assignments\n');
    });

  // ---- protected items ----
  const item = program.command('item').description('protected items: list, stop and resume protection, undelete, back up now');
  item.command('list')
    .description('list protected items with their protection state')
    .option('--vault <name>', 'only this vault')
    .option('--json', 'print JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const items = await (await client()).listItems(o.vault);
      if (o.json) printJson(items);
      else process.stdout.write(items.length ? itemsTable(items) + '\n' : 'no protected items\n');
    });
  item.command('stop <name>')
    .description('stop protection: no more backups; keep the points (no expiry) or delete them (soft delete)')
    .option('--retain-data', 'keep every point, with no expiry, until protection resumes')
    .option('--delete-data', 'delete the item and its points (kept for the vault\'s soft delete period, then purged)')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--request <id>', REQUEST_HELP)
    .option('--json', 'print JSON')
    .action(async (name: string, o: { retainData?: boolean; deleteData?: boolean; vault?: string; request?: string; json?: boolean }) => {
      if (!o.retainData === !o.deleteData) throw new CoffreError('InvalidArgument', 'say what happens to the data: --retain-data or --delete-data');
      const r = await (await client(o.request)).stopItem(name, o.deleteData === true, o.vault);
      if (o.json) printJson(r);
      else if (r.purged) process.stdout.write(`deleted ${name} and its points for good (soft delete is Disabled on this vault)\n${r.gc ? jobSummary(r.gc) + '\n' : ''}`);
      else if (r.state === 'SoftDeleted') process.stdout.write(`${name} is deleted (soft delete): nothing of it is collected until ${r.purgeAt}; \`coffre item undelete ${name}\` brings it back\n`);
      else process.stdout.write(`protection of ${name} stopped; its ${r.points} point(s) are kept with no expiry until \`coffre item resume ${name}\`\n`);
    });
  item.command('resume <name>')
    .description('resume protection of a stopped item (retention applies again, from its policy)')
    .option('--policy <name>', 'protect it with this policy (default: the one it had)')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--request <id>', REQUEST_HELP)
    .option('--json', 'print JSON')
    .action(async (name: string, o: { policy?: string; vault?: string; request?: string; json?: boolean }) => {
      const r = await (await client(o.request)).resumeItem(name, o.policy, o.vault);
      if (o.json) printJson(r);
      else process.stdout.write(`${name} is protected again by policy ${r.policy}; ${r.points} point(s) kept\n`);
    });
  item.command('undelete <name>')
    .description('bring a soft-deleted item back, stopped with its data')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { vault?: string; json?: boolean }) => {
      const r = await (await client()).undeleteItem(name, o.vault);
      if (o.json) printJson(r);
      else process.stdout.write(`${name} is back, stopped with its ${r.points} point(s); restore from them, or \`coffre item resume ${name}\`\n`);
    });
  item.command('backup <name>')
    .description('ask for a backup now: the item\'s agent makes it on its next poll (`coffre agent run`)')
    .option('--retain-until <date>', 'keep the on-demand point until this day (YYYY-MM-DD; default: 30 days)', retainUntil)
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { retainUntil?: string; vault?: string; json?: boolean }) => {
      const r = await (await client()).backupItem(name, o.retainUntil, o.vault);
      if (o.json) printJson(r);
      else process.stdout.write(`backup of ${r.item} asked for at ${r.requestedAt}; kept until ${r.retainUntil}\n`);
    });

  // ---- machines ----
  const machine = program.command('machine').description('registered machines');
  machine.command('list')
    .description('list the machines registered with a vault')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const c = await client();
      const vault = o.vault ?? await onlyVault(c);
      const ms = await c.listMachines(vault);
      if (o.json) printJson(ms);
      else process.stdout.write(ms.length ? table(['machine', 'items', 'registered'], ms.map((m) => [m.name, m.items, m.registeredAt])) + '\n' : 'no machines registered\n');
    });
  machine.command('unregister <name>')
    .description('unregister a machine that has no items left: its key stops working and its data is deleted')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { vault?: string; json?: boolean }) => {
      const c = await client();
      const r = await c.unregisterMachine(o.vault ?? await onlyVault(c), name);
      if (o.json) printJson(r);
      else process.stdout.write(`unregistered ${r.machine} from vault ${r.vault}; ${r.packsDeleted} pack(s) deleted\n`);
    });

  // ---- vault: delete, security, redundancy ----
  const vault = program.commands.find((c) => c.name() === 'vault') ?? program.command('vault');
  vault.command('delete <name>')
    .description('delete a vault that holds no items (soft-deleted ones included) and no machines')
    .action(async (name: string) => {
      const r = await (await client()).deleteVault(name);
      process.stdout.write(`deleted vault ${r.deleted} of subscription ${r.subscription}\n`);
    });
  vault.command('security <name>')
    .description('show a vault\'s soft delete, immutability and guard')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const s = await (await client()).security(name);
      if (o.json) printJson(s);
      else process.stdout.write(securityText(s) + '\n');
    });
  vault.command('set-security <name>')
    .description('change soft delete, immutability or the guard (AlwaysOn and Locked are for good)')
    .addOption(new Option('--soft-delete <state>', 'soft delete').choices(['Enabled', 'Disabled', 'AlwaysOn']))
    .option('--soft-delete-days <n>', 'days a deleted item is kept, 14 to 180', (v) => Number.parseInt(v, 10))
    .addOption(new Option('--immutability <state>', 'Disabled → Unlocked → Locked').choices(['Disabled', 'Unlocked', 'Locked']))
    .option('--guard <principal>', 'guard the vault: this principal must approve critical operations')
    .option('--no-guard', 'remove the guard (itself guarded: needs the guard\'s approval)')
    .option('--guard-window <minutes>', 'how long a guard request stays valid (5 to 10080)', (v) => Number.parseInt(v, 10))
    .option('--request <id>', REQUEST_HELP)
    .option('--json', 'print JSON')
    .action(async (name: string, o: { softDelete?: string; softDeleteDays?: number; immutability?: string; guard?: string | false; guardWindow?: number; request?: string; json?: boolean }) => {
      const change = {
        ...(o.softDelete ? { softDelete: o.softDelete } : {}), ...(o.softDeleteDays !== undefined ? { softDeleteDays: o.softDeleteDays } : {}),
        ...(o.immutability ? { immutability: o.immutability } : {}), ...(o.guard === false ? { guard: null } : typeof o.guard === 'string' ? { guard: o.guard } : {}),
        ...(o.guardWindow !== undefined ? { guardWindowMinutes: o.guardWindow } : {}),
      };
      if (Object.keys(change).length === 0) throw new CoffreError('InvalidArgument', 'nothing to change: give --soft-delete, --soft-delete-days, --immutability, --guard, --no-guard or --guard-window');
      const s = await (await client(o.request)).setSecurity(name, change);
      if (o.json) printJson(s);
      else process.stdout.write(securityText(s) + (s.purged.length ? `\n  purged (soft delete disabled): ${s.purged.join(', ')}` : '') + '\n');
    });
  const policy = program.commands.find((c) => c.name() === 'policy') ?? program.command('policy');
  policy.command('delete <name>')
    .description('delete a policy no item uses')
    .option('--vault <name>', 'the vault (default: the only one)')
    .action(async (name: string, o: { vault?: string }) => {
      const r = await (await client()).deletePolicy(name, o.vault);
      process.stdout.write(`deleted policy ${r.deleted} of vault ${r.vault}\n`);
    });

  const job = program.command('job').description('one job');
  job.command('cancel <id>')
    .description('cancel a job in progress; its agent stops at its next report')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const j = await (await client()).cancelJob(id);
      if (o.json) printJson(j);
      else process.stdout.write(jobSummary(j) + '\n');
    });

  // ---- the guard and the audit log ----
  const guard = program.command('guard').description('multi-user authorization: requests for critical operations and their approval');
  guard.command('requests')
    .description('list the requests you made, guard, or may view')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const rs = await (await client()).guardRequests();
      if (o.json) printJson(rs);
      else process.stdout.write(rs.length ? requestsTable(rs) + '\n' : 'no guard requests\n');
    });
  guard.command('approve <request>')
    .description('approve a request as the vault\'s guard (never your own); the requester then runs it once')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await (await client()).approveGuardRequest(id);
      if (o.json) printJson(r);
      else process.stdout.write(`approved request ${r.id} of ${r.requester}: "${r.operation}" on ${r.target}, valid until ${r.expiresAt}\n`);
    });

  program.command('audit')
    .description('the audit log: every mutating call (who, operation, target, result, time), oldest first')
    .option('--since <time>', 'only entries from this time (ISO, or 30m, 12h, 7d back from now)', sinceArgument)
    .option('--json', 'print JSON')
    .action(async (o: { since?: string; json?: boolean }) => {
      const es = await (await client()).audit(o.since ? { since: o.since } : {});
      if (o.json) printJson(es);
      else process.stdout.write(es.length ? auditTable(es) + '\n' : 'no audit entries\n');
    });
}

/** The caller's only vault, for commands whose API names one. */
async function onlyVault(c: Awaited<ReturnType<typeof adminClient>>): Promise<string> {
  const vs = await c.listVaults();
  if (vs.length === 1) return vs[0]!.name;
  throw new CoffreError(vs.length ? 'InvalidArgument' : 'VaultNotFound', vs.length ? 'several vaults exist: name one with --vault' : 'no vault exists yet');
}
