/**
 * "Back up now" from the dashboard or the API: the vault cannot reach an agent (agents connect
 * outward only), so it records the request and the item's agent runs it on its next poll of
 * /v1/agent/due, as an on-demand point kept until the date given (30 days by default). One
 * pending request per item: asking again replaces the date. The daemon claims a request once
 * (scheduler.ts), so two agent processes never both run it.
 */
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import type { DataContext } from './data.js';
import { findItem, resolveVault } from './vaults.js';
import { principalLabel, requireAgentRequest } from './visibility.js';

/** As for `coffre backup` without --retain-until (src/agent/job-report.ts). */
export const ON_DEMAND_DEFAULT_DAYS = 30;

export async function requestBackup(ctx: DataContext, p: Principal, input: { vault?: string; item: string; retainUntil?: string }): Promise<{ item: string; requestedAt: string; retainUntil: string }> {
  const vault = input.vault ? await resolveVault(ctx, p, input.vault) : undefined;
  const item = await findItem(ctx, p, input.item, vault?.id);
  requireAgentRequest(p, 'backup', item.vault_id);
  const source = await ctx.db.selectFrom('schedules').select('item_id').where('item_id', '=', item.id).executeTakeFirst();
  if (!source) throw new CoffreError('InvalidArgument', `${item.name} has no backup its agent could repeat yet: back it up once on its machine (\`coffre backup ... --item ${item.name}\`)`);
  const now = ctx.clock.now();
  const today = now.toISOString().slice(0, 10);
  const retainUntil = input.retainUntil ?? new Date(now.getTime() + ON_DEMAND_DEFAULT_DAYS * 86_400_000).toISOString().slice(0, 10);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(retainUntil) || retainUntil <= today) throw new CoffreError('InvalidArgument', 'retainUntil must be a future date as YYYY-MM-DD');
  const row = { item_id: item.id, requested_at: now.toISOString(), retain_until: retainUntil, requested_by: principalLabel(p) };
  await ctx.db.insertInto('backup_requests').values(row)
    .onConflict((oc) => oc.column('item_id').doUpdateSet({ requested_at: row.requested_at, retain_until: row.retain_until, requested_by: row.requested_by })).execute();
  return { item: item.name, requestedAt: row.requested_at, retainUntil };
}
