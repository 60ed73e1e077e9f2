/**
 * What the Backup center shows and lets each principal do, in one place: which vaults and
 * machines a principal sees (listings of item health, alerts, reports, requests) and who may
 * change alert settings or ask an agent for a backup or a restore.
 *
 * This is the only file of the Backup center that knows how principals are modelled
 * (src/vault/access.ts): an administrator sees and does everything, an agent key sees only its
 * own machine and asks for nothing. When roles arrive, these functions ask the role engine
 * instead, and the monitoring modules stay as they are.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { requireAdmin, type Principal } from './access.js';

/** The vaults (null: all of them) and, for an agent, the one machine a principal sees. */
export interface Visibility { vaultIds: Set<string> | null; containerId: string | null }

export async function visibilityOf(_db: Kysely<Database>, p: Principal): Promise<Visibility> {
  if (p.kind === 'agent') return { vaultIds: new Set([p.vaultId]), containerId: p.containerId };
  return { vaultIds: null, containerId: null };
}

export const ALL: Visibility = { vaultIds: null, containerId: null };

export function sees(v: Visibility, vaultId: string, containerId?: string | null): boolean {
  if (v.vaultIds && !v.vaultIds.has(vaultId)) return false;
  return !(v.containerId && containerId && containerId !== v.containerId);
}

/** How a principal is named in requests it makes and in the dashboard. */
export function principalLabel(p: Principal): string {
  if (p.kind === 'agent') return `agent:${p.containerId}`;
  return 'name' in p && typeof p.name === 'string' ? p.name : p.kind;
}

/** Changing alert settings (webhooks, thresholds, rules). */
export function requireAlertSettings(p: Principal): void {
  requireAdmin(p);
}

/** Asking an item's agent for an on-demand backup or a restore. */
export function requireAgentRequest(p: Principal, _op: 'backup' | 'restore', _vaultId: string): void {
  requireAdmin(p);
}
