/**
 * The one place where the vault decides whether a principal may perform an operation on a
 * target. Every route names its operation and how to find its target (route-auth.ts); this
 * module answers yes, or throws Forbidden naming the permission that is missing.
 *
 * - user principals: their role assignments, through the pure table in roles.ts;
 * - agents: the agent operations and viewing/restoring, on their own vault and machine only;
 * - the vault's guard: `guard.approve` on the vault it guards, and nothing else by that title;
 * - system: everything (the vault's own maintenance).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { CoffreError } from '../core/errors.js';
import { principalName, type Principal } from './access.js';
import {
  isRoleName, operationLabel, permitted, rolesGranting, scopeCovers, vaultScope,
  type Assignment, type Operation,
} from './roles.js';

/**
 * What an operation acts on. `scope` is null for listings: the service then shows only what
 * the principal may view (visibleVaults).
 */
export interface Target { scope: string | null; vaultId?: string; containerId?: string }

/** What an agent key may do, on its own vault, and within it on its own machine only. */
const AGENT_OPERATIONS: ReadonlySet<Operation> = new Set<Operation>(['view', 'restore', 'backup.upload', 'job.report', 'schedule.poll', 'machine.keys']);

export async function assignmentsOf(db: Kysely<Database>, principalId: string): Promise<Assignment[]> {
  const rows = await db.selectFrom('role_assignments').select(['role', 'scope']).where('principal_id', '=', principalId).execute();
  return rows.flatMap((r) => (isRoleName(r.role) ? [{ role: r.role, scope: r.scope }] : []));
}

function forbidden(p: Principal, op: Operation, target: Target, why: string): CoffreError {
  return new CoffreError('Forbidden', `${principalName(p)} may not ${operationLabel(op)}${target.scope ? ` at ${target.scope}` : ''}: ${why}`, {
    operation: op, permission: operationLabel(op), scope: target.scope, grantedBy: rolesGranting(op),
  });
}

export async function authorize(db: Kysely<Database>, p: Principal, op: Operation, target: Target): Promise<void> {
  if (op === 'public' || p.kind === 'system') return;
  if (p.kind === 'agent') {
    const own = target.vaultId === p.vaultId && (target.containerId === undefined || target.containerId === p.containerId);
    if (AGENT_OPERATIONS.has(op) && (target.scope === null || own)) return;
    throw forbidden(p, op, target, AGENT_OPERATIONS.has(op)
      ? 'an agent key reaches only its own machine\'s data'
      : `an agent key only adds backups and reads its own machine's data; "${operationLabel(op)}" needs a principal's key with a role that grants it (${rolesGranting(op).join(', ') || 'none'})`);
  }
  if (op === 'guard.approve') {
    const row = target.vaultId ? await db.selectFrom('vault_security').select('guard_principal_id').where('vault_id', '=', target.vaultId).executeTakeFirst() : undefined;
    if (row?.guard_principal_id === p.id) return;
    throw forbidden(p, op, target, 'only the principal set as the vault\'s guard approves its requests');
  }
  if (target.scope === null) return; // a listing: the service filters by visibleVaults
  const assignments = await assignmentsOf(db, p.id);
  if (permitted(assignments, op, target.scope)) return;
  const granting = rolesGranting(op);
  const held = assignments.map((a) => `${a.role} at ${a.scope}`).join(', ') || 'no role';
  throw forbidden(p, op, target, `that needs the permission "${operationLabel(op)}" (${op}), which ${granting.length ? `only ${granting.join(', ')} grant${granting.length === 1 ? 's' : ''}` : 'no role grants (it is a machine\'s own work)'}; ${principalName(p)} holds ${held}`);
}

/** The vaults a principal may `op` (view by default): 'all', or a set of vault ids. */
export async function visibleVaults(db: Kysely<Database>, p: Principal, op: Operation = 'view'): Promise<'all' | Set<string>> {
  if (p.kind === 'system') return 'all';
  if (p.kind === 'agent') return new Set(AGENT_OPERATIONS.has(op) ? [p.vaultId] : []);
  const assignments = await assignmentsOf(db, p.id);
  if (permitted(assignments, op, '/')) return 'all';
  const relevant = assignments.filter((a) => permitted([a], op, a.scope));
  if (relevant.length === 0) return new Set();
  const vaults = await db.selectFrom('vaults').select(['id', 'name', 'subscription']).execute();
  return new Set(vaults.filter((v) => relevant.some((a) => scopeCovers(a.scope, vaultScope(v.subscription, v.name)))).map((v) => v.id));
}

/** Whether a scope (e.g. of an audit entry or a role assignment) lies within what the principal may view. */
export async function canViewScope(db: Kysely<Database>, p: Principal, scope: string): Promise<boolean> {
  if (p.kind === 'system') return true;
  if (p.kind !== 'user') return false;
  return permitted(await assignmentsOf(db, p.id), 'view', scope);
}
