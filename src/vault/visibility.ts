/**
 * What the Backup center shows each principal: the vaults (and, for an agent key, the one
 * machine) it may view, for the listings of item health, alerts, reports and restore
 * requests. Which principal may call which route is decided at the door (route-auth.ts); the
 * listings then show only what the caller may view (authorize.ts, visibleVaults).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Principal } from './access.js';
import { visibleVaults } from './authorize.js';

/** The vaults (null: all of them) and, for an agent, the one machine a principal sees. */
export interface Visibility { vaultIds: Set<string> | null; containerId: string | null }

export async function visibilityOf(db: Kysely<Database>, p: Principal): Promise<Visibility> {
  if (p.kind === 'agent') return { vaultIds: new Set([p.vaultId]), containerId: p.containerId };
  const vaults = await visibleVaults(db, p);
  return { vaultIds: vaults === 'all' ? null : vaults, containerId: null };
}

/** Everything: the vault's own evaluations (alerts, metrics). */
export const ALL: Visibility = { vaultIds: null, containerId: null };

export function sees(v: Visibility, vaultId: string, containerId?: string | null): boolean {
  if (v.vaultIds && !v.vaultIds.has(vaultId)) return false;
  return !(v.containerId && containerId && containerId !== v.containerId);
}
