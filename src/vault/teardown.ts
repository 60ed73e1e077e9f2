/**
 * Taking things apart, each only once nothing depends on it: a machine is unregistered when it
 * has no items left (soft-deleted ones included: they wait for their purge), a vault is deleted
 * when it holds no items and no machines. Also the storage redundancy, which may change only
 * until the first item is protected (the data would otherwise be in the wrong place).
 */
import type { Selectable } from 'kysely';
import type { VaultRow } from '../catalog/schema.js';
import type { MachineInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import { packKey, type DataContext } from './data.js';
import { vaultScope } from './roles.js';
import { containerRecordKey } from './records.js';


export async function listMachines(ctx: DataContext, _p: Principal, vault: Selectable<VaultRow>): Promise<MachineInfo[]> {
  const rows = await ctx.db.selectFrom('containers').selectAll().where('vault_id', '=', vault.id).orderBy('name').execute();
  return Promise.all(rows.map(async (c) => {
    const n = await ctx.db.selectFrom('items').select((eb) => eb.fn.countAll<number>().as('n')).where('container_id', '=', c.id).executeTakeFirstOrThrow();
    return { id: c.id, name: c.name, vault: vault.name, items: Number(n.n), registeredAt: c.created_at, hasKeys: c.wrapped_keys !== null };
  }));
}

export async function unregisterMachine(ctx: DataContext, _p: Principal, vault: Selectable<VaultRow>, machine: string): Promise<{ machine: string; vault: string; packsDeleted: number }> {
  const c = await ctx.db.selectFrom('containers').selectAll().where('vault_id', '=', vault.id).where((eb) => eb.or([eb('name', '=', machine), eb('id', '=', machine)])).executeTakeFirst();
  if (!c) throw new CoffreError('MachineNotFound', `no machine ${machine} in vault ${vault.name}; list them with \`coffre machine list\``);
  const items = await ctx.db.selectFrom('items').leftJoin('item_protection', 'item_protection.item_id', 'items.id')
    .select(['items.name', 'item_protection.state']).where('items.container_id', '=', c.id).orderBy('items.name').execute();
  if (items.length) {
    throw new CoffreError('MachineHasItems', `machine ${c.name} still has items (${items.map((i) => `${i.name}: ${i.state ?? 'Protected'}`).join(', ')}); stop their protection with --delete-data and wait for soft-deleted ones to be purged`);
  }
  const running = await ctx.db.selectFrom('jobs').select('id').where('container_id', '=', c.id).where('status', '=', 'InProgress').executeTakeFirst();
  if (running) throw new CoffreError('MachineHasItems', `machine ${c.name} has job ${running.id} running; wait for it or cancel it`);
  const packs = await ctx.db.selectFrom('packs').select('id').where('container_id', '=', c.id).execute();
  // The key stops working first; then the index, then the objects (a crash leaves only orphans).
  await ctx.db.transaction().execute(async (tx) => {
    await tx.deleteFrom('agent_keys').where('container_id', '=', c.id).execute();
    await tx.deleteFrom('trees').where('container_id', '=', c.id).execute();
    await tx.deleteFrom('blobs').where('container_id', '=', c.id).execute();
    await tx.deleteFrom('packs').where('container_id', '=', c.id).execute();
    await tx.deleteFrom('containers').where('id', '=', c.id).execute();
  });
  const store = ctx.stores.forVault(vault);
  await store.delete(containerRecordKey(c.id));
  for (const pk of packs) await store.delete(packKey(c.id, pk.id));
  for await (const key of store.list(`packs/${c.id}`)) await store.delete(key);
  return { machine: c.name, vault: vault.name, packsDeleted: packs.length };
}

export async function deleteVault(ctx: DataContext, _p: Principal, vault: Selectable<VaultRow>): Promise<{ deleted: string; subscription: string }> {
  const items = await ctx.db.selectFrom('items').select((eb) => eb.fn.countAll<number>().as('n')).where('vault_id', '=', vault.id).executeTakeFirstOrThrow();
  const machines = await ctx.db.selectFrom('containers').select((eb) => eb.fn.countAll<number>().as('n')).where('vault_id', '=', vault.id).executeTakeFirstOrThrow();
  if (Number(items.n) > 0 || Number(machines.n) > 0) {
    throw new CoffreError('VaultNotEmpty', `vault ${vault.name} still holds ${Number(items.n)} item(s) (soft-deleted ones included) and ${Number(machines.n)} machine(s): stop protection with --delete-data, wait for the purge, unregister the machines, then delete it`);
  }
  await ctx.db.transaction().execute(async (tx) => {
    for (const table of ['credentials', 'policies', 'maintenance', 'vault_security', 'guard_requests', 'jobs', 'vault_storage'] as const) {
      await tx.deleteFrom(table).where('vault_id', '=', vault.id).execute();
    }
    // A vault created later under the same name must not inherit this one's grants.
    await tx.deleteFrom('role_assignments').where('scope', '=', vaultScope(vault.subscription, vault.name)).execute();
    await tx.deleteFrom('vaults').where('id', '=', vault.id).execute();
  });
  // The catalog forgot the vault first; its records go after so a recovery cannot revive it.
  const store = ctx.stores.forVault(vault);
  const keys: string[] = [];
  for await (const key of store.list('')) keys.push(key);
  for (const key of keys) await store.delete(key);
  return { deleted: vault.name, subscription: vault.subscription };
}

