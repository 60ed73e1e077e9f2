/**
 * Protection groups of a backup server: machines' items grouped under one short-term policy (a
 * policy of the backup server's own vault: how often backups land on its disk and how long they
 * stay) and one online policy (a policy of the upstream vault, by name: when points are copied
 * there and how long the vault keeps them). An item belongs to one group at most. Items are of
 * any kind a copy keeps whole as it is: files and VMs. Database items are refused for now: a
 * database point is part of a chain (a differential needs its full, log points their base and
 * each other) and its chain facts live beside the point in the catalog, which a copy does not
 * carry yet; a lone copy would look restorable in the vault and not be.
 *
 * Adding an item assigns it the short-term policy through the vault's own assignPolicy, so the
 * caller's roles and the vault's protection rules (immutability, the guard) apply as they would
 * to `coffre policy assign`.
 */
import type { Selectable } from 'kysely';
import type { ItemRow, VaultRow } from '../catalog/schema.js';
import type { ProtectionGroupRow } from '../catalog/schema-backup-server.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Principal } from '../vault/access.js';
import type { DataContext } from '../vault/data.js';
import { DB_ITEM_KIND } from '../vault/db-points.js';
import { assignPolicy } from '../vault/policies.js';
import { checkName } from '../vault/vaults.js';

export async function findGroup(ctx: DataContext, vaultId: string, name: string): Promise<Selectable<ProtectionGroupRow>> {
  const row = await ctx.db.selectFrom('protection_groups').selectAll().where('vault_id', '=', vaultId).where('name', '=', name).executeTakeFirst();
  if (!row) throw new CoffreError('GroupNotFound', `no protection group ${name}; list them with \`coffre group list\``);
  return row;
}

export async function createGroup(ctx: DataContext, vault: Selectable<VaultRow>, input: { name: string; shortTermPolicy: string; onlinePolicy: string }): Promise<Selectable<ProtectionGroupRow>> {
  checkName('group', input.name);
  const policy = await ctx.db.selectFrom('policies').select('id').where('vault_id', '=', vault.id).where('name', '=', input.shortTermPolicy).executeTakeFirst();
  if (!policy) throw new CoffreError('PolicyNotFound', `the backup server has no policy ${input.shortTermPolicy}; create the short-term policy on it with \`coffre policy create\``);
  const exists = await ctx.db.selectFrom('protection_groups').select('id').where('vault_id', '=', vault.id).where('name', '=', input.name).executeTakeFirst();
  if (exists) throw new CoffreError('GroupExists', `protection group ${input.name} already exists`);
  const row = { id: newId(), vault_id: vault.id, name: input.name, short_term_policy_id: policy.id, online_policy: input.onlinePolicy, created_at: ctx.clock.now().toISOString() };
  await ctx.db.insertInto('protection_groups').values(row).execute();
  return row;
}

/** The item of a machine on this backup server, by their names. */
async function machineItem(ctx: DataContext, vaultId: string, machine: string, item: string): Promise<Selectable<ItemRow>> {
  const row = await ctx.db.selectFrom('items').innerJoin('containers', 'containers.id', 'items.container_id').selectAll('items')
    .where('items.vault_id', '=', vaultId).where('containers.name', '=', machine).where('items.name', '=', item).executeTakeFirst();
  if (!row) {
    const known = await ctx.db.selectFrom('containers').select('id').where('vault_id', '=', vaultId).where('name', '=', machine).executeTakeFirst();
    throw new CoffreError(known ? 'ItemNotFound' : 'MachineNotFound', known
      ? `machine ${machine} has no item ${item} on this backup server yet: back it up once (e.g. \`coffre backup PATH --item ${item}\` on ${machine}), then add it`
      : `no machine ${machine} is registered with this backup server; register it with \`coffre agent register\` and credentials of this server`);
  }
  return row;
}

export async function addToGroup(ctx: DataContext, p: Principal, vault: Selectable<VaultRow>, groupName: string, machine: string, itemName: string): Promise<void> {
  const group = await findGroup(ctx, vault.id, groupName);
  const item = await machineItem(ctx, vault.id, machine, itemName);
  if (item.kind === DB_ITEM_KIND) {
    throw new CoffreError('InvalidArgument', `${itemName} of ${machine} is a database: online protection of databases is not built yet (a copy would lose its chain); protect it in the vault directly with \`coffre db protect\` on a machine registered there`);
  }
  const member = await ctx.db.selectFrom('group_members').innerJoin('protection_groups', 'protection_groups.id', 'group_members.group_id')
    .select(['protection_groups.name']).where('group_members.item_id', '=', item.id).executeTakeFirst();
  if (member && member.name !== groupName) throw new CoffreError('ItemInGroup', `${itemName} of ${machine} is in protection group ${member.name}; an item belongs to one group (remove it there first)`);
  const policy = await ctx.db.selectFrom('policies').select('name').where('id', '=', group.short_term_policy_id).executeTakeFirst();
  if (!policy) throw new CoffreError('PolicyNotFound', `the short-term policy of group ${groupName} was deleted; create the group again`);
  if (item.policy_id !== group.short_term_policy_id) await assignPolicy(ctx, p, vault.id, policy.name, item.id);
  // The first online copy comes at the group's next online run (or with `coffre online copy`).
  if (!member) await ctx.db.insertInto('group_members').values({ item_id: item.id, group_id: group.id, added_at: ctx.clock.now().toISOString(), last_online_run: null }).execute();
}

/** Takes an item out of its group: no more online copies; its short-term policy stays. */
export async function removeFromGroup(ctx: DataContext, vault: Selectable<VaultRow>, groupName: string, itemName: string): Promise<void> {
  const group = await findGroup(ctx, vault.id, groupName);
  const rows = await ctx.db.selectFrom('group_members').innerJoin('items', 'items.id', 'group_members.item_id')
    .select('items.id').where('group_members.group_id', '=', group.id).where('items.name', '=', itemName).execute();
  if (rows.length === 0) throw new CoffreError('ItemNotFound', `${itemName} is not in protection group ${groupName}`);
  await ctx.db.deleteFrom('group_members').where('item_id', '=', rows[0]!.id).execute();
}

export async function deleteGroup(ctx: DataContext, vault: Selectable<VaultRow>, groupName: string): Promise<void> {
  const group = await findGroup(ctx, vault.id, groupName);
  const members = await ctx.db.selectFrom('group_members').innerJoin('items', 'items.id', 'group_members.item_id').select('items.name').where('group_members.group_id', '=', group.id).execute();
  if (members.length) throw new CoffreError('GroupNotEmpty', `protection group ${groupName} still holds ${members.map((m) => m.name).join(', ')}; remove them first (\`coffre group remove\`)`);
  await ctx.db.deleteFrom('protection_groups').where('id', '=', group.id).execute();
}

/** The members of every group (items that still exist), with their group. */
export async function members(ctx: DataContext, vaultId: string) {
  return ctx.db.selectFrom('group_members')
    .innerJoin('protection_groups', 'protection_groups.id', 'group_members.group_id')
    .innerJoin('items', 'items.id', 'group_members.item_id')
    .innerJoin('containers', 'containers.id', 'items.container_id')
    .select([
      'items.id as itemId', 'items.name as item', 'items.kind as kind', 'containers.name as machine', 'containers.id as containerId',
      'protection_groups.id as groupId', 'protection_groups.name as group', 'protection_groups.online_policy as onlinePolicy',
      'group_members.added_at as addedAt', 'group_members.last_online_run as lastOnlineRun',
    ])
    .where('protection_groups.vault_id', '=', vaultId)
    .orderBy('protection_groups.name').orderBy('containers.name').orderBy('items.name')
    .execute();
}
