/**
 * The checks every critical operation passes, always in this order (azure-backup-spec.md §3.3):
 *
 *   RBAC → immutability → multi-user authorization → soft delete
 *
 * The route's own operation was authorised at the door; a critical operation may need one
 * more (shortening a retention is also "modify policy"), checked first here. An immutable vault
 * (Unlocked or Locked) then refuses stop-with-delete, shortening a retention and disabling soft
 * delete; a guarded vault then wants an approved request. Soft delete comes last because it is
 * what the operation does once allowed: a deleted item is kept for the vault's period.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import { authorize } from './authorize.js';
import { requireGuardApproval } from './guard.js';
import { vaultScope, type Operation } from './roles.js';
import { vaultSecurity } from './security-settings.js';

/** The operations immutability and the guard protect. */
export type CriticalOperation = 'stopDelete' | 'shortenRetention' | 'disableSoftDelete' | 'disableGuard';

const WHAT: Record<CriticalOperation, string> = {
  stopDelete: 'stop protection and delete its data',
  shortenRetention: 'shorten a retention',
  disableSoftDelete: 'disable soft delete',
  disableGuard: 'remove the guard',
};

/** Immutability protects all but the guard itself (which is multi-user authorization's own business). */
const IMMUTABLE_REFUSES: ReadonlySet<CriticalOperation> = new Set(['stopDelete', 'shortenRetention', 'disableSoftDelete']);

export interface CriticalContext { db: Kysely<Database>; clock: Clock }

export async function checkCritical(ctx: CriticalContext, p: Principal, vault: { id: string; name: string; subscription: string }, op: {
  kind: CriticalOperation; target: string; params: unknown; alsoRequires?: Operation; requestId: string | undefined;
}): Promise<void> {
  // 1. RBAC: the extra permission this operation needs beyond the route's own.
  if (op.alsoRequires) await authorize(ctx.db, p, op.alsoRequires, { scope: vaultScope(vault.subscription, vault.name), vaultId: vault.id });
  // 2. Immutability.
  const sec = await vaultSecurity(ctx.db, vault.id);
  if (sec.immutability !== 'Disabled' && IMMUTABLE_REFUSES.has(op.kind)) {
    throw new CoffreError('VaultImmutable', `vault ${vault.name} is immutable (${sec.immutability}): it refuses to ${WHAT[op.kind]} (${op.target}); lengthening retention stays allowed`, { operation: op.kind, immutability: sec.immutability });
  }
  // 3. Multi-user authorization.
  await requireGuardApproval(ctx, p, vault, { operation: op.kind, target: op.target, params: op.params }, op.requestId);
  // 4. Soft delete: applied by the operation itself.
}
