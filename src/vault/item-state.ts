/**
 * An item's protection state, as the lifecycle leaves it:
 *   Protected ──stop --retain-data──► ProtectionStopped ──resume──► Protected
 *   Protected / ProtectionStopped ──stop --delete-data──► SoftDeleted ──undelete──► ProtectionStopped
 *   SoftDeleted ──period over (or soft delete Disabled)──► purged (the item is gone)
 * Only a Protected item takes backups and follows its policy's retention; the points of the
 * other states never expire (NEVER) until the item is resumed or purged.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';

export type ProtectionState = 'Protected' | 'ProtectionStopped' | 'SoftDeleted';

/** The expiry of a point that is kept until someone decides otherwise. */
export const NEVER = '9999-12-31T23:59:59.999Z';

export interface ItemState { state: ProtectionState; changedAt: string | null; purgeAt: string | null }

export async function itemState(db: Kysely<Database>, itemId: string): Promise<ItemState> {
  const row = await db.selectFrom('item_protection').selectAll().where('item_id', '=', itemId).executeTakeFirst();
  if (!row) return { state: 'Protected', changedAt: null, purgeAt: null };
  return { state: row.state as ProtectionState, changedAt: row.changed_at, purgeAt: row.purge_at };
}

export async function setItemState(db: Kysely<Database>, itemId: string, state: ProtectionState, now: string, purgeAt: string | null = null): Promise<void> {
  await db.insertInto('item_protection').values({ item_id: itemId, state, changed_at: now, purge_at: purgeAt })
    .onConflict((oc) => oc.column('item_id').doUpdateSet({ state, changed_at: now, purge_at: purgeAt })).execute();
}

/** Ids of the items that are not Protected (stopped or soft-deleted), for filters. */
export async function unprotectedItemIds(db: Kysely<Database>): Promise<Set<string>> {
  const rows = await db.selectFrom('item_protection').select('item_id').where('state', '!=', 'Protected').execute();
  return new Set(rows.map((r) => r.item_id));
}
