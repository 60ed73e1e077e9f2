/**
 * What the vault does on its own: close missed schedule windows, purge the soft-deleted items
 * whose period is over (and reclaim their space), and once a day per vault delete expired
 * points and collect garbage.
 */
import type { JobInfo } from '../core/api.js';
import { SYSTEM } from './access.js';
import type { DataContext } from './data.js';
import { purgeSoftDeleted } from './lifecycle.js';
import { collectGarbage } from './gc.js';
import { pruneVault } from './policies.js';
import { reconcile } from './scheduler.js';

export async function pruneAndCollect(ctx: DataContext, vault: string): Promise<{ prune: JobInfo; gc: JobInfo }> {
  const prune = await pruneVault(ctx, SYSTEM, vault);
  const gc = await collectGarbage(ctx, SYSTEM, vault);
  return { prune, gc };
}

export async function runMaintenance(ctx: DataContext): Promise<void> {
  await reconcile(ctx);
  await purgeSoftDeleted(ctx, { due: true });
  const today = ctx.clock.now().toISOString().slice(0, 10);
  const vaults = await ctx.db.selectFrom('vaults').leftJoin('maintenance', 'maintenance.vault_id', 'vaults.id').select(['vaults.id', 'maintenance.last_daily']).execute();
  for (const v of vaults) {
    if (v.last_daily === today) continue;
    await pruneAndCollect(ctx, v.id);
    await ctx.db.insertInto('maintenance').values({ vault_id: v.id, last_daily: today })
      .onConflict((oc) => oc.column('vault_id').doUpdateSet({ last_daily: today })).execute();
  }
}
