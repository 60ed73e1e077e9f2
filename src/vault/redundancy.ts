/**
 * A vault's storage settings, as `coffre vault show` and `coffre vault set` see them:
 * redundancy (changeable until the first item is protected, then locked, as in the service
 * we model), cross-region restore (GRS only), and the state of the copies — what the paired
 * region and the zones still have to receive.
 */
import type { Redundancy, VaultDetails } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import { writeAllRecords, writeVaultRecord } from './records.js';
import { resolveVault, vaultInfo, type VaultContext } from './vaults.js';

export async function showVault(ctx: VaultContext, p: Principal, name: string): Promise<VaultDetails> {
  const v = await resolveVault(ctx, p, name);
  const storage = await ctx.db.selectFrom('vault_storage').select('cross_region_restore').where('vault_id', '=', v.id).executeTakeFirst();
  const items = await ctx.db.selectFrom('items').select((eb) => eb.fn.countAll<number>().as('n')).where('vault_id', '=', v.id).executeTakeFirstOrThrow();
  const copies = ctx.stores.forVault(v).copies();
  const secondary = ctx.stores.secondaryTargets(v.redundancy);
  const zones = v.redundancy === 'ZRS' ? copies.map((c) => c.name) : [];
  const repair = await ctx.stores.queue.stats(v.id, zones);
  return {
    ...vaultInfo({ ...v, cross_region_restore: storage?.cross_region_restore ?? 0 }),
    redundancyLocked: Number(items.n) > 0,
    replication: await ctx.stores.queue.stats(v.id, secondary),
    zoneRepair: { pendingObjects: repair.pendingObjects, pendingBytes: repair.pendingBytes },
    stores: copies.map((c) => ({ name: c.name, role: c.role })),
  };
}

export async function setVaultStorage(ctx: VaultContext, p: Principal, name: string, input: { redundancy?: Redundancy; crossRegionRestore?: boolean }): Promise<VaultDetails> {
  // The route has already checked redundancy.write on this vault.
  const v = await resolveVault(ctx, p, name);
  const storage = await ctx.db.selectFrom('vault_storage').select('cross_region_restore').where('vault_id', '=', v.id).executeTakeFirst();
  const redundancy = input.redundancy ?? (v.redundancy as Redundancy);
  const crr = input.crossRegionRestore ?? (storage?.cross_region_restore === 1);
  const changing = redundancy !== v.redundancy;
  if (changing) {
    const items = await ctx.db.selectFrom('items').select((eb) => eb.fn.countAll<number>().as('n')).where('vault_id', '=', v.id).executeTakeFirstOrThrow();
    if (Number(items.n) > 0) {
      throw new CoffreError('RedundancyLocked', `vault ${v.name} already protects ${Number(items.n)} item(s): its redundancy (${v.redundancy}) was locked by the first backup; create a new vault to use ${redundancy}`);
    }
    const unsupported = ctx.stores.topology.supports(redundancy);
    if (unsupported) throw new CoffreError('InvalidArgument', `this server cannot keep ${redundancy} vaults: ${unsupported}`);
  }
  if (crr && redundancy !== 'GRS') {
    throw new CoffreError('InvalidArgument', input.crossRegionRestore
      ? `cross-region restore needs a GRS vault; vault ${v.name} is ${redundancy}`
      : `vault ${v.name} has cross-region restore enabled, which needs GRS: add --no-cross-region-restore to change its redundancy to ${redundancy}`);
  }
  const before = ctx.stores.forVault(v).copies();
  await ctx.db.transaction().execute(async (tx) => {
    if (changing) await tx.updateTable('vaults').set({ redundancy }).where('id', '=', v.id).execute();
    await tx.insertInto('vault_storage').values({ vault_id: v.id, cross_region_restore: crr ? 1 : 0 })
      .onConflict((oc) => oc.column('vault_id').doUpdateSet({ cross_region_restore: crr ? 1 : 0 })).execute();
  });
  if (changing) {
    // Nothing is protected yet: the vault's store holds only its records. They are written
    // to the new composition, and taken out of the stores it no longer uses.
    const after = ctx.stores.forVault({ id: v.id, redundancy });
    await writeAllRecords(ctx, v.id, after);
    const kept = new Set(after.copies().map((c) => c.name));
    await ctx.stores.queue.dropVaultTasks(v.id, [...kept]);
    for (const old of before) {
      if (kept.has(old.name)) continue;
      try {
        for await (const key of old.store.list('')) await old.store.delete(key);
      } catch (e) {
        // Left behind, they only describe the vault as it was; `verify` does not look there.
        process.stderr.write(`${new Date().toISOString()} vault ${v.name}: could not remove its old records from store ${old.name}: ${(e as Error).message}\n`);
      }
    }
  } else {
    await writeVaultRecord(ctx, v.id);
  }
  return showVault(ctx, p, v.id);
}
