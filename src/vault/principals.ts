/**
 * Principals and their role assignments. A principal's API key is shown once, when it is made,
 * and stored only as a hash. The built-in principal "admin" (the data folder's admin token)
 * cannot be deleted nor lose its Owner role at "/": the vault always has a way in.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { AssignmentInfo, PrincipalInfo } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { newId, newSecret } from '../core/ids.js';
import { ADMIN_PRINCIPAL, hashSecret, type Principal } from './access.js';
import { assignmentsOf, canViewScope } from './authorize.js';
import { formatScope, isRoleName, parseScope, ROLE_NAMES } from './roles.js';
import { checkName } from './vaults.js';

export interface PrincipalContext { db: Kysely<Database>; clock: Clock }


async function principalRow(ctx: PrincipalContext, name: string) {
  const row = await ctx.db.selectFrom('principals').selectAll().where('name', '=', name).executeTakeFirst();
  if (!row) throw new CoffreError('PrincipalNotFound', `no principal named ${name}; list them with \`coffre principal list\``);
  return row;
}

export async function createPrincipal(ctx: PrincipalContext, name: string): Promise<PrincipalInfo & { key: string }> {
  checkName('principal', name);
  const exists = await ctx.db.selectFrom('principals').select('id').where('name', '=', name).executeTakeFirst();
  if (exists) throw new CoffreError('PrincipalExists', `principal ${name} already exists`);
  const key = newSecret('cpk');
  const row = { id: newId(), name, key_hash: hashSecret(key), builtin: 0, created_at: ctx.clock.now().toISOString() };
  await ctx.db.insertInto('principals').values(row).execute();
  return { id: row.id, name, builtin: false, createdAt: row.created_at, roles: [], key };
}

export async function listPrincipals(ctx: PrincipalContext): Promise<PrincipalInfo[]> {
  const rows = await ctx.db.selectFrom('principals').selectAll().orderBy('created_at').orderBy('name').execute();
  return Promise.all(rows.map(async (r) => ({ id: r.id, name: r.name, builtin: r.builtin === 1, createdAt: r.created_at, roles: await assignmentsOf(ctx.db, r.id) })));
}

export async function deletePrincipal(ctx: PrincipalContext, name: string): Promise<{ deleted: string }> {
  const row = await principalRow(ctx, name);
  if (row.builtin === 1) throw new CoffreError('InvalidArgument', `${name} is the built-in principal of the admin token; replace ${ADMIN_PRINCIPAL}.token in the data folder to change its key`);
  const guarding = await ctx.db.selectFrom('vault_security').innerJoin('vaults', 'vaults.id', 'vault_security.vault_id').select('vaults.name')
    .where('guard_principal_id', '=', row.id).execute();
  if (guarding.length) throw new CoffreError('InvalidArgument', `${name} guards vault(s) ${guarding.map((g) => g.name).join(', ')}; remove it as their guard first (with its approval)`);
  await ctx.db.transaction().execute(async (tx) => {
    await tx.deleteFrom('role_assignments').where('principal_id', '=', row.id).execute();
    await tx.deleteFrom('principals').where('id', '=', row.id).execute();
  });
  return { deleted: name };
}

function checkAssignment(role: string, scope: string): { role: typeof ROLE_NAMES[number]; scope: string } {
  if (!isRoleName(role)) throw new CoffreError('InvalidArgument', `role ${JSON.stringify(role)} does not exist; the built-in roles are ${ROLE_NAMES.join(', ')}`);
  return { role, scope: formatScope(parseScope(scope)) };
}

export async function assignRole(ctx: PrincipalContext, input: { principal: string; role: string; scope: string }): Promise<AssignmentInfo> {
  const { role, scope } = checkAssignment(input.role, input.scope);
  const p = await principalRow(ctx, input.principal);
  const now = ctx.clock.now().toISOString();
  await ctx.db.insertInto('role_assignments').values({ id: newId(), principal_id: p.id, role, scope, created_at: now })
    .onConflict((oc) => oc.columns(['principal_id', 'role', 'scope']).doNothing()).execute();
  const row = await ctx.db.selectFrom('role_assignments').select('created_at').where('principal_id', '=', p.id).where('role', '=', role).where('scope', '=', scope).executeTakeFirstOrThrow();
  return { principal: p.name, role, scope, createdAt: row.created_at };
}

export async function removeRole(ctx: PrincipalContext, input: { principal: string; role: string; scope: string }): Promise<{ removed: boolean }> {
  const { role, scope } = checkAssignment(input.role, input.scope);
  const p = await principalRow(ctx, input.principal);
  if (p.builtin === 1 && role === 'Owner' && scope === '/') throw new CoffreError('InvalidArgument', `${p.name} keeps Owner at /: the vault always has a way in`);
  const res = await ctx.db.deleteFrom('role_assignments').where('principal_id', '=', p.id).where('role', '=', role).where('scope', '=', scope).executeTakeFirst();
  return { removed: Number(res.numDeletedRows) > 0 };
}

/** Assignments whose scope the caller may view, optionally of one principal or under one scope. */
export async function listAssignments(ctx: PrincipalContext, caller: Principal, filter: { principal?: string; scope?: string }): Promise<AssignmentInfo[]> {
  let q = ctx.db.selectFrom('role_assignments').innerJoin('principals', 'principals.id', 'role_assignments.principal_id')
    .select(['principals.name as principal', 'role_assignments.role', 'role_assignments.scope', 'role_assignments.created_at as createdAt']);
  if (filter.principal) q = q.where('principals.name', '=', filter.principal);
  const rows = await q.orderBy('role_assignments.scope').orderBy('principals.name').orderBy('role_assignments.role').execute();
  const under = filter.scope ? formatScope(parseScope(filter.scope)) : null;
  const out: AssignmentInfo[] = [];
  for (const r of rows) {
    if (under && !(under === '/' || r.scope === under || r.scope.startsWith(under + '/'))) continue;
    // A principal always sees its own assignments.
    const own = caller.kind === 'user' && r.principal === caller.name;
    if (own || await canViewScope(ctx.db, caller, r.scope)) out.push(r);
  }
  return out;
}
