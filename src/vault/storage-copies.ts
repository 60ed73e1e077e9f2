/**
 * What the Backup center tells about a vault's copies, read through the vault's stores
 * (vault-stores.ts): which stores hold it (its redundancy's composition) and what its paired
 * region still lacks (the copy queue). Cheap by design — the composition is in memory and the
 * queue is one indexed query per vault — so the overview, the metrics and the alert rules can
 * ask at every page load, scrape and tick without listing any store.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { ReplicationState, VaultCopy } from '../core/monitor-api.js';
import type { VaultReplication } from './alert-rules.js';
import type { VaultStores } from './vault-stores.js';

export interface CopiesContext { db: Kysely<Database>; stores: VaultStores }

/** The stores holding a vault, primary ones first, and (GRS only) what its paired region still lacks. */
export async function vaultCopies(ctx: CopiesContext, v: { id: string; redundancy: string }): Promise<{ copies: VaultCopy[]; replication: ReplicationState | null }> {
  const copies = ctx.stores.copiesOf(v).map((c) => ({ name: c.name, role: c.role }));
  const secondary = ctx.stores.secondaryTargets(v.redundancy);
  return { copies, replication: secondary.length ? await ctx.stores.queue.stats(v.id, secondary) : null };
}

/** Every vault with a paired region, with what is still to copy there (for metrics and the ReplicationLag rule). */
export async function replicationNow(ctx: CopiesContext): Promise<VaultReplication[]> {
  const out: VaultReplication[] = [];
  for (const v of await ctx.db.selectFrom('vaults').select(['id', 'name', 'redundancy']).orderBy('name').execute()) {
    const { replication } = await vaultCopies(ctx, v);
    if (replication) out.push({ id: v.id, name: v.name, ...replication });
  }
  return out;
}
