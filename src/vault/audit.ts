/**
 * The audit log: who did what to which target, when, and how it ended, for every mutating call
 * and for what the vault does on its own (purges). Append-only: nothing in the vault updates or
 * deletes a row, and the SQLite catalog refuses it outright (triggers in catalog/sqlite.ts).
 * An entry is written before the call's answer leaves, so a client never sees a success the
 * log does not hold.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { AuditEntry } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { principalName, type Principal } from './access.js';
import { visibleVaults, canViewScope, type Target } from './authorize.js';


function resultOf(status: number): AuditEntry['result'] {
  if (status < 400) return 'Succeeded';
  return status === 401 || status === 403 ? 'Refused' : 'Failed';
}

export async function recordAudit(ctx: { db: Kysely<Database>; clock: Clock }, e: {
  principal: Principal | undefined; operation: string; target: Target | null; resource: string; status: number; code: string | null;
  guardRequest?: string | string[] | undefined; details?: Record<string, unknown>;
}): Promise<void> {
  const details: Record<string, unknown> = { status: e.status, ...(e.details ?? {}) };
  if (typeof e.guardRequest === 'string') details.guardRequest = e.guardRequest;
  await ctx.db.insertInto('audit_log').values({
    time: ctx.clock.now().toISOString(),
    principal: principalName(e.principal),
    principal_id: e.principal?.kind === 'user' ? e.principal.id : e.principal?.kind === 'agent' ? e.principal.containerId : null,
    operation: e.operation,
    scope: e.target?.scope ?? '/',
    vault_id: e.target?.vaultId ?? null,
    target: e.resource,
    result: resultOf(e.status),
    code: e.code ?? (e.status < 400 ? null : `HTTP${e.status}`),
    details: JSON.stringify(details),
  }).execute();
}

/** Entries the principal may view (its vaults', and "/"-scoped ones for those who view "/"), oldest first. */
export async function listAudit(ctx: { db: Kysely<Database> }, p: Principal, filter: { since?: string; limit?: number }): Promise<AuditEntry[]> {
  if (p.kind === 'agent') return []; // a machine's key reads its own data, not who did what
  let q = ctx.db.selectFrom('audit_log').selectAll();
  if (filter.since) q = q.where('time', '>=', filter.since);
  const rows = await q.orderBy('seq', 'desc').limit(filter.limit ?? 10_000).execute();
  const vaults = await visibleVaults(ctx.db, p);
  const rootVisible = vaults === 'all' || await canViewScope(ctx.db, p, '/');
  const out: AuditEntry[] = [];
  for (const r of rows.reverse()) {
    const visible = r.vault_id ? vaults === 'all' || vaults.has(r.vault_id) : rootVisible || await canViewScope(ctx.db, p, r.scope);
    if (!visible) continue;
    out.push({
      seq: Number(r.seq), time: r.time, principal: r.principal, operation: r.operation, scope: r.scope, target: r.target,
      result: r.result as AuditEntry['result'], code: r.code, details: JSON.parse(r.details) as Record<string, unknown>,
    });
  }
  return out;
}
