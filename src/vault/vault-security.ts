/**
 * Changing a vault's security settings: soft delete (state and period), immutability and the
 * guard. The one-way doors are enforced here: soft delete AlwaysOn and immutability Locked are
 * irreversible, immutability moves Disabled → Unlocked → Locked. Disabling soft delete and
 * removing (or replacing) the guard are critical operations (protection-rules.ts); disabling
 * soft delete also purges what is soft-deleted, as its name promises.
 */
import type { Selectable } from 'kysely';
import type { VaultRow } from '../catalog/schema.js';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import type { DataContext } from './data.js';
import { purgeSoftDeleted } from './lifecycle.js';
import { checkCritical } from './protection-rules.js';
import {
  describeSecurity, IMMUTABILITY_STATES, MAX_SOFT_DELETE_DAYS, MIN_SOFT_DELETE_DAYS, saveSecurity, SOFT_DELETE_STATES, vaultSecurity,
  type Immutability, type SecurityInfo, type SoftDeleteState,
} from './security-settings.js';

export interface SecurityChange {
  softDelete?: SoftDeleteState;
  softDeleteDays?: number;
  immutability?: Immutability;
  /** A principal's name; null removes the guard. */
  guard?: string | null;
  guardWindowMinutes?: number;
}

export async function setSecurity(ctx: DataContext, p: Principal, vault: Selectable<VaultRow>, change: SecurityChange, requestId?: string): Promise<SecurityInfo & { purged: string[] }> {
  const old = await vaultSecurity(ctx.db, vault.id);
  const next = { ...old };
  // Input first: what cannot be asked for at all.
  if (change.softDelete !== undefined) {
    if (!SOFT_DELETE_STATES.includes(change.softDelete)) throw new CoffreError('InvalidArgument', `soft delete is one of ${SOFT_DELETE_STATES.join(', ')}`);
    next.softDeleteState = change.softDelete;
  }
  if (change.softDeleteDays !== undefined) {
    if (!Number.isInteger(change.softDeleteDays) || change.softDeleteDays < MIN_SOFT_DELETE_DAYS || change.softDeleteDays > MAX_SOFT_DELETE_DAYS) {
      throw new CoffreError('InvalidArgument', `the soft delete period is ${MIN_SOFT_DELETE_DAYS} to ${MAX_SOFT_DELETE_DAYS} days`);
    }
    next.softDeleteDays = change.softDeleteDays;
  }
  if (change.immutability !== undefined) {
    if (!IMMUTABILITY_STATES.includes(change.immutability)) throw new CoffreError('InvalidArgument', `immutability is one of ${IMMUTABILITY_STATES.join(', ')}`);
    if (old.immutability === 'Locked' && change.immutability !== 'Locked') {
      throw new CoffreError('ImmutabilityLocked', `vault ${vault.name} is immutable and Locked: that cannot be undone`);
    }
    if (old.immutability === 'Disabled' && change.immutability === 'Locked') {
      throw new CoffreError('InvalidArgument', 'immutability goes Disabled → Unlocked → Locked: set it Unlocked first, check that backups still work, then lock it');
    }
    next.immutability = change.immutability;
  }
  if (change.guardWindowMinutes !== undefined) {
    if (!Number.isInteger(change.guardWindowMinutes) || change.guardWindowMinutes < 5 || change.guardWindowMinutes > 7 * 24 * 60) {
      throw new CoffreError('InvalidArgument', 'the guard\'s approval window is 5 minutes to 7 days (given in minutes)');
    }
    next.guardWindowMinutes = change.guardWindowMinutes;
  }
  if (change.guard !== undefined) {
    if (change.guard === null) next.guardPrincipalId = null;
    else {
      const guard = await ctx.db.selectFrom('principals').select(['id', 'name']).where('name', '=', change.guard).executeTakeFirst();
      if (!guard) throw new CoffreError('PrincipalNotFound', `no principal named ${change.guard}; create it with \`coffre principal create ${change.guard}\``);
      if (p.kind === 'user' && guard.id === p.id) throw new CoffreError('InvalidArgument', 'the guard must be another principal than the one setting it: a guard guards against its own setter');
      next.guardPrincipalId = guard.id;
    }
  }

  // Critical changes pass immutability and the guard; the request covers the whole change.
  const disablesSoftDelete = old.softDeleteState !== 'Disabled' && next.softDeleteState === 'Disabled';
  const dropsGuard = old.guardPrincipalId !== null && next.guardPrincipalId !== old.guardPrincipalId;
  if (disablesSoftDelete || dropsGuard) {
    await checkCritical(ctx, p, vault, {
      kind: disablesSoftDelete ? 'disableSoftDelete' : 'disableGuard', target: `security settings of vault ${vault.name}`, params: change, requestId,
    });
  }
  // Soft delete, last: AlwaysOn is for good.
  if (old.softDeleteState === 'AlwaysOn' && next.softDeleteState !== 'AlwaysOn') {
    throw new CoffreError('SoftDeleteAlwaysOn', `soft delete of vault ${vault.name} is AlwaysOn: that cannot be undone`);
  }
  await saveSecurity(ctx.db, vault.id, next, ctx.clock.now().toISOString());
  const purged = disablesSoftDelete ? (await purgeSoftDeleted(ctx, { vaultId: vault.id })).map((x) => x.item) : [];
  return { ...(await describeSecurity(ctx.db, vault)), purged };
}
