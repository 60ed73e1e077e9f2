/**
 * A vault's security settings as stored, with their defaults: soft delete Enabled for 14 days,
 * immutability Disabled, no guard. A vault without a row has exactly these.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { SecurityInfo } from '../core/api.js';
import { DEFAULT_GUARD_WINDOW_MINUTES } from './guard.js';

export type { SecurityInfo };

export type SoftDeleteState = 'Enabled' | 'Disabled' | 'AlwaysOn';
export type Immutability = 'Disabled' | 'Unlocked' | 'Locked';
export const SOFT_DELETE_STATES: readonly SoftDeleteState[] = ['Enabled', 'Disabled', 'AlwaysOn'];
export const IMMUTABILITY_STATES: readonly Immutability[] = ['Disabled', 'Unlocked', 'Locked'];
export const DEFAULT_SOFT_DELETE_DAYS = 14;
export const MIN_SOFT_DELETE_DAYS = 14;
export const MAX_SOFT_DELETE_DAYS = 180;

export interface SecuritySettings {
  softDeleteState: SoftDeleteState;
  softDeleteDays: number;
  immutability: Immutability;
  guardPrincipalId: string | null;
  guardWindowMinutes: number;
}


export async function vaultSecurity(db: Kysely<Database>, vaultId: string): Promise<SecuritySettings> {
  const row = await db.selectFrom('vault_security').selectAll().where('vault_id', '=', vaultId).executeTakeFirst();
  return {
    softDeleteState: (row?.soft_delete_state ?? 'Enabled') as SoftDeleteState,
    softDeleteDays: row?.soft_delete_days ?? DEFAULT_SOFT_DELETE_DAYS,
    immutability: (row?.immutability ?? 'Disabled') as Immutability,
    guardPrincipalId: row?.guard_principal_id ?? null,
    guardWindowMinutes: row?.guard_window_minutes ?? DEFAULT_GUARD_WINDOW_MINUTES,
  };
}

export async function describeSecurity(db: Kysely<Database>, vault: { id: string; name: string }): Promise<SecurityInfo> {
  const s = await vaultSecurity(db, vault.id);
  const guard = s.guardPrincipalId ? await db.selectFrom('principals').select('name').where('id', '=', s.guardPrincipalId).executeTakeFirst() : undefined;
  const deleted = await db.selectFrom('items').innerJoin('item_protection', 'item_protection.item_id', 'items.id')
    .select((eb) => eb.fn.countAll<number>().as('n')).where('items.vault_id', '=', vault.id).where('item_protection.state', '=', 'SoftDeleted').executeTakeFirstOrThrow();
  return {
    vault: vault.name, softDelete: { state: s.softDeleteState, days: s.softDeleteDays }, immutability: s.immutability,
    guard: guard?.name ?? null, guardWindowMinutes: s.guardWindowMinutes, softDeletedItems: Number(deleted.n),
  };
}

export async function saveSecurity(db: Kysely<Database>, vaultId: string, s: SecuritySettings, now: string): Promise<void> {
  const row = {
    soft_delete_state: s.softDeleteState, soft_delete_days: s.softDeleteDays, immutability: s.immutability,
    guard_principal_id: s.guardPrincipalId, guard_window_minutes: s.guardWindowMinutes, updated_at: now,
  };
  await db.insertInto('vault_security').values({ vault_id: vaultId, ...row })
    .onConflict((oc) => oc.column('vault_id').doUpdateSet(row)).execute();
}
