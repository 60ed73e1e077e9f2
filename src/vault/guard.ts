/**
 * Multi-user authorization: a vault may be guarded by a second principal (the security
 * administrator). A guarded operation then runs only on a request that the guard approved:
 *
 *   1. the operation is asked for without a request: the vault records a Pending request bound
 *      to the requester, the operation and a digest of its exact parameters, and refuses with
 *      GuardApprovalRequired naming the request;
 *   2. the guard approves it (`coffre guard approve ID`) before it expires; the requester can
 *      never approve their own request;
 *   3. the requester repeats the operation with the request (header x-coffre-guard-request):
 *      it runs, and the request is Used in the same step, so it cannot be replayed.
 *
 * Each refusal has its own code: pending, expired, used, for another operation, self-approval.
 */
import { createHash } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { Database, GuardRequestRow } from '../catalog/schema.js';
import type { GuardRequestInfo } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { principalName, type Principal } from './access.js';
import { visibleVaults } from './authorize.js';

export const GUARD_REQUEST_HEADER = 'x-coffre-guard-request';
export const DEFAULT_GUARD_WINDOW_MINUTES = 24 * 60;

export interface GuardContext { db: Kysely<Database>; clock: Clock }


/** The exact operation a request stands for: approving one change never authorises another. */
export function guardDigest(operation: string, target: string, params: unknown): string {
  return createHash('sha256').update(JSON.stringify([operation, target, params ?? null])).digest('hex');
}

async function describe(ctx: GuardContext, r: Selectable<GuardRequestRow>): Promise<GuardRequestInfo> {
  const names = await ctx.db.selectFrom('vaults').select('name').where('id', '=', r.vault_id).executeTakeFirst();
  const people = await ctx.db.selectFrom('principals').select(['id', 'name']).where('id', 'in', [r.requester_id, r.approved_by ?? r.requester_id]).execute();
  const nameOf = (id: string | null) => (id ? people.find((p) => p.id === id)?.name ?? id : null);
  const expired = r.status === 'Pending' || r.status === 'Approved' ? r.expires_at <= ctx.clock.now().toISOString() : false;
  return {
    id: r.id, vault: names?.name ?? r.vault_id, requester: nameOf(r.requester_id)!, operation: r.operation, target: r.target,
    status: expired ? 'Expired' : r.status as GuardRequestInfo['status'],
    createdAt: r.created_at, expiresAt: r.expires_at, approvedBy: nameOf(r.approved_by), approvedAt: r.approved_at, usedAt: r.used_at,
  };
}

/**
 * Lets a guarded operation through, or refuses it. Without a guard on the vault it does nothing.
 * With one, `requestId` must name an Approved, unexpired request of this principal for exactly
 * this operation; it is consumed here, atomically. Without a request id, a Pending request is
 * recorded and GuardApprovalRequired names it.
 */
export async function requireGuardApproval(ctx: GuardContext, p: Principal, vault: { id: string; name: string }, op: { operation: string; target: string; params: unknown }, requestId: string | undefined): Promise<void> {
  const sec = await ctx.db.selectFrom('vault_security').select(['guard_principal_id', 'guard_window_minutes']).where('vault_id', '=', vault.id).executeTakeFirst();
  if (!sec?.guard_principal_id || p.kind === 'system') return;
  if (p.kind !== 'user') throw new CoffreError('Forbidden', 'a guarded operation needs a principal\'s key');
  const guard = await ctx.db.selectFrom('principals').select('name').where('id', '=', sec.guard_principal_id).executeTakeFirst();
  const digest = guardDigest(op.operation, op.target, op.params);
  const now = ctx.clock.now();
  if (!requestId) {
    const id = newId();
    const expiresAt = new Date(now.getTime() + sec.guard_window_minutes * 60_000).toISOString();
    await ctx.db.insertInto('guard_requests').values({
      id, vault_id: vault.id, requester_id: p.id, operation: op.operation, target: op.target, digest, status: 'Pending',
      created_at: now.toISOString(), expires_at: expiresAt, approved_by: null, approved_at: null, used_at: null,
    }).execute();
    throw new CoffreError('GuardApprovalRequired',
      `vault ${vault.name} is guarded by ${guard?.name ?? 'its guard'}: request ${id} for "${op.operation}" on ${op.target} awaits their approval (\`coffre guard approve ${id}\`) until ${expiresAt}; then repeat this command with --request ${id}`,
      { requestId: id, guard: guard?.name ?? null, expiresAt, operation: op.operation });
  }
  const r = await ctx.db.selectFrom('guard_requests').selectAll().where('id', '=', requestId).executeTakeFirst();
  if (!r || r.vault_id !== vault.id) throw new CoffreError('GuardRequestNotFound', `no guard request ${requestId} for vault ${vault.name}; list them with \`coffre guard requests\``);
  if (r.requester_id !== p.id) throw new CoffreError('GuardRequestMismatch', `request ${requestId} was made by another principal; ${principalName(p)} must make its own`);
  if (r.digest !== digest) throw new CoffreError('GuardRequestMismatch', `request ${requestId} approves "${r.operation}" on ${r.target} with other parameters, not this operation; repeat exactly the approved command, or run it without --request for a new request`);
  if (r.status === 'Used') throw new CoffreError('GuardRequestUsed', `request ${requestId} was already used on ${r.used_at}; an approval serves once: make a new request`);
  if (r.expires_at <= now.toISOString()) throw new CoffreError('GuardRequestExpired', `request ${requestId} expired on ${r.expires_at}; make a new request`);
  if (r.status !== 'Approved') throw new CoffreError('GuardRequestPending', `request ${requestId} is not approved yet: ${guard?.name ?? 'the guard'} approves it with \`coffre guard approve ${requestId}\``);
  const used = await ctx.db.updateTable('guard_requests').set({ status: 'Used', used_at: now.toISOString() })
    .where('id', '=', requestId).where('status', '=', 'Approved').executeTakeFirst();
  if (Number(used.numUpdatedRows) !== 1) throw new CoffreError('GuardRequestUsed', `request ${requestId} was used by another call at the same time; an approval serves once`);
}

export async function approveRequest(ctx: GuardContext, p: Principal, requestId: string): Promise<GuardRequestInfo> {
  const r = await ctx.db.selectFrom('guard_requests').selectAll().where('id', '=', requestId).executeTakeFirst();
  if (!r) throw new CoffreError('GuardRequestNotFound', `no guard request ${requestId}; list them with \`coffre guard requests\``);
  if (p.kind !== 'user') throw new CoffreError('Forbidden', 'only the vault\'s guard approves its requests');
  if (r.requester_id === p.id) throw new CoffreError('GuardSelfApproval', `${p.name} made request ${requestId} and so cannot approve it: another principal, the vault's guard, must`);
  const now = ctx.clock.now().toISOString();
  if (r.status === 'Used') throw new CoffreError('GuardRequestUsed', `request ${requestId} was already used`);
  if (r.expires_at <= now) throw new CoffreError('GuardRequestExpired', `request ${requestId} expired on ${r.expires_at}; the requester must make a new one`);
  if (r.status === 'Pending') {
    await ctx.db.updateTable('guard_requests').set({ status: 'Approved', approved_by: p.id, approved_at: now })
      .where('id', '=', requestId).where('status', '=', 'Pending').execute();
  }
  return describe(ctx, (await ctx.db.selectFrom('guard_requests').selectAll().where('id', '=', requestId).executeTakeFirstOrThrow()));
}

/** The vault a request belongs to (for the route's authorisation: only its guard approves). */
export async function requestVault(ctx: GuardContext, requestId: string): Promise<string | undefined> {
  return (await ctx.db.selectFrom('guard_requests').select('vault_id').where('id', '=', requestId).executeTakeFirst())?.vault_id;
}

/** Requests the principal made, guards, or may view, newest last. */
export async function listRequests(ctx: GuardContext, p: Principal): Promise<GuardRequestInfo[]> {
  if (p.kind !== 'user' && p.kind !== 'system') return [];
  const visible = await visibleVaults(ctx.db, p);
  const guarded = p.kind === 'user'
    ? new Set((await ctx.db.selectFrom('vault_security').select('vault_id').where('guard_principal_id', '=', p.id).execute()).map((r) => r.vault_id))
    : new Set<string>();
  const rows = await ctx.db.selectFrom('guard_requests').selectAll().orderBy('created_at').orderBy('id').execute();
  const mine = rows.filter((r) => visible === 'all' || visible.has(r.vault_id) || guarded.has(r.vault_id) || (p.kind === 'user' && r.requester_id === p.id));
  return Promise.all(mine.map((r) => describe(ctx, r)));
}
