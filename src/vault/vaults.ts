/** Vaults, their credentials, machine registration and protected items. */
import type { Kysely, Selectable } from 'kysely';
import { lockKey } from '../catalog/engine.js';
import type { Database, ItemRow, VaultRow } from '../catalog/schema.js';
import type { ItemInfo, Redundancy, RegisterResult, VaultInfo } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { newId, newSecret } from '../core/ids.js';
import { defaultPolicy } from '../policy/policy.js';
import { hashSecret, requireContainer, requireVault, type Principal } from './access.js';
import { visibleVaults } from './authorize.js';
import { itemState } from './item-state.js';
import { writeAllRecords, writeContainerRecord, writeItemRecord } from './records.js';
import type { VaultStores } from './vault-stores.js';

export const MAX_VAULTS_PER_SUBSCRIPTION = 500;
export const DEFAULT_CREDENTIAL_DAYS = 10;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface VaultContext { db: Kysely<Database>; clock: Clock; stores: VaultStores }

export function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) {
    throw new CoffreError('InvalidArgument', `${kind} name ${JSON.stringify(name)} is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

export function vaultInfo(v: Selectable<VaultRow> & { cross_region_restore?: number | null }): VaultInfo {
  return { id: v.id, name: v.name, subscription: v.subscription, redundancy: v.redundancy as Redundancy, crossRegionRestore: v.cross_region_restore === 1, createdAt: v.created_at };
}

/** Vault rows with their storage settings. */
function vaultRows(ctx: VaultContext) {
  return ctx.db.selectFrom('vaults').leftJoin('vault_storage', 'vault_storage.vault_id', 'vaults.id').selectAll('vaults').select('vault_storage.cross_region_restore');
}

export async function createVault(ctx: VaultContext, _p: Principal, input: { name: string; subscription?: string; redundancy?: Redundancy; crossRegionRestore?: boolean }): Promise<VaultInfo> {
  checkName('vault', input.name);
  const subscription = input.subscription ?? 'default';
  checkName('subscription', subscription);
  const redundancy = input.redundancy ?? 'GRS';
  const unsupported = ctx.stores.topology.supports(redundancy);
  if (unsupported) throw new CoffreError('InvalidArgument', `this server cannot keep ${redundancy} vaults: ${unsupported}`);
  if (input.crossRegionRestore && redundancy !== 'GRS') throw new CoffreError('InvalidArgument', `cross-region restore needs a GRS vault (this one would be ${redundancy})`);
  const now = ctx.clock.now().toISOString();
  const id = newId();
  await ctx.db.transaction().execute(async (tx) => {
    // Two nodes creating the 500th vault at once must not both see 499 (PostgreSQL).
    await lockKey(tx, `vaults:${subscription}`);
    const existing = await tx.selectFrom('vaults').select('id').where('subscription', '=', subscription).where('name', '=', input.name).executeTakeFirst();
    if (existing) throw new CoffreError('VaultExists', `vault ${input.name} already exists in subscription ${subscription}`);
    const { count } = await tx.selectFrom('vaults').select((eb) => eb.fn.countAll<number>().as('count')).where('subscription', '=', subscription).executeTakeFirstOrThrow();
    if (Number(count) >= MAX_VAULTS_PER_SUBSCRIPTION) {
      throw new CoffreError('VaultLimitReached', `subscription ${subscription} already holds ${MAX_VAULTS_PER_SUBSCRIPTION} vaults, the most it may; delete one or use another subscription`);
    }
    await tx.insertInto('vaults').values({ id, name: input.name, subscription, redundancy, created_at: now }).execute();
    await tx.insertInto('vault_storage').values({ vault_id: id, cross_region_restore: input.crossRegionRestore ? 1 : 0 }).execute();
    const policy = defaultPolicy();
    await tx.insertInto('policies').values({ id: newId(), vault_id: id, name: policy.name, body: JSON.stringify(policy), updated_at: now }).execute();
  });
  await writeAllRecords(ctx, id);
  return vaultInfo(await vaultRows(ctx).where('vaults.id', '=', id).executeTakeFirstOrThrow());
}

export async function listVaults(ctx: VaultContext, p: Principal): Promise<VaultInfo[]> {
  const visible = await visibleVaults(ctx.db, p);
  const rows = await vaultRows(ctx).orderBy('vaults.created_at').orderBy('vaults.name').execute();
  return rows.filter((v) => visible === 'all' || visible.has(v.id)).map(vaultInfo);
}

/** Finds a vault by id or name; with no name, the caller's only vault (an agent's, or the single one it may view). */
export async function resolveVault(ctx: VaultContext, p: Principal, nameOrId?: string): Promise<Selectable<VaultRow>> {
  if (!nameOrId) {
    if (p.kind === 'agent') return ctx.db.selectFrom('vaults').selectAll().where('id', '=', p.vaultId).executeTakeFirstOrThrow();
    const visible = await visibleVaults(ctx.db, p);
    let q = ctx.db.selectFrom('vaults').selectAll();
    if (visible !== 'all') q = q.where('id', 'in', visible.size ? [...visible] : ['']); // '' matches no vault
    const all = await q.limit(2).execute();
    if (all.length === 1) return all[0]!;
    throw new CoffreError(all.length ? 'InvalidArgument' : 'VaultNotFound', all.length ? 'several vaults exist: name one with --vault' : 'no vault exists yet: create one with `coffre vault create NAME`');
  }
  const rows = await ctx.db.selectFrom('vaults').selectAll().where((eb) => eb.or([eb('id', '=', nameOrId), eb('name', '=', nameOrId)])).execute();
  if (rows.length === 0) throw new CoffreError('VaultNotFound', `no vault named ${nameOrId}; list them with \`coffre vault list\``);
  if (rows.length > 1) throw new CoffreError('InvalidArgument', `several subscriptions have a vault named ${nameOrId}: give its id`);
  requireVault(p, rows[0]!.id);
  return rows[0]!;
}

export async function createCredentials(ctx: VaultContext, p: Principal, vaultName: string, days = DEFAULT_CREDENTIAL_DAYS): Promise<{ vault: VaultInfo; secret: string; expiresAt: string }> {
  if (!Number.isInteger(days) || days < 1 || days > 365) throw new CoffreError('InvalidArgument', 'credentials must be valid for 1 to 365 days');
  const vault = await resolveVault(ctx, p, vaultName);
  const secret = newSecret('cvc');
  const now = ctx.clock.now();
  const expiresAt = new Date(now.getTime() + days * 86_400_000).toISOString();
  await ctx.db.insertInto('credentials').values({ id: newId(), vault_id: vault.id, secret_hash: hashSecret(secret), expires_at: expiresAt, created_at: now.toISOString() }).execute();
  return { vault: vaultInfo(vault), secret, expiresAt };
}

/**
 * Registers a machine (a container). A name seen before re-attaches the machine, e.g. on a
 * new computer after a loss: it gets a new key, and the stored wrapped keys, which only the
 * passphrase opens.
 */
export async function register(ctx: VaultContext, secret: string, machine: string): Promise<RegisterResult> {
  checkName('machine', machine);
  const cred = await ctx.db.selectFrom('credentials').selectAll().where('secret_hash', '=', hashSecret(secret)).executeTakeFirst();
  if (!cred) throw new CoffreError('CredentialsInvalid', 'these vault credentials are not known to this server; download new ones with `coffre vault credentials VAULT`');
  if (cred.expires_at <= ctx.clock.now().toISOString()) {
    throw new CoffreError('CredentialsExpired', `these vault credentials expired on ${cred.expires_at}; download new ones with \`coffre vault credentials VAULT\``);
  }
  const vault = await ctx.db.selectFrom('vaults').selectAll().where('id', '=', cred.vault_id).executeTakeFirstOrThrow();
  const token = newSecret('cak');
  const now = ctx.clock.now().toISOString();
  const container = await ctx.db.transaction().execute(async (tx) => {
    let row = await tx.selectFrom('containers').selectAll().where('vault_id', '=', vault.id).where('name', '=', machine).executeTakeFirst();
    if (!row) {
      row = { id: newId(), vault_id: vault.id, name: machine, wrapped_keys: null, created_at: now };
      await tx.insertInto('containers').values(row).execute();
    }
    await tx.insertInto('agent_keys').values({ token_hash: hashSecret(token), container_id: row.id, created_at: now }).execute();
    return row;
  });
  if (container.created_at === now) await writeContainerRecord(ctx, container.id);
  return {
    containerId: container.id, machine, vaultId: vault.id, vault: vault.name, token,
    wrappedKeys: container.wrapped_keys ? JSON.parse(container.wrapped_keys) as unknown : null,
  };
}

/** Keys are set once: an agent key cannot replace them and lock the owner out of old points. */
export async function setWrappedKeys(ctx: VaultContext, p: Principal, containerId: string, wrapped: unknown): Promise<void> {
  requireContainer(p, containerId);
  const res = await ctx.db.updateTable('containers').set({ wrapped_keys: JSON.stringify(wrapped) })
    .where('id', '=', containerId).where('wrapped_keys', 'is', null).executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw new CoffreError('Forbidden', 'this machine already has keys; they cannot be replaced');
  await writeContainerRecord(ctx, containerId);
}

export async function getWrappedKeys(ctx: VaultContext, p: Principal, containerId: string): Promise<unknown> {
  requireContainer(p, containerId);
  const row = await ctx.db.selectFrom('containers').select('wrapped_keys').where('id', '=', containerId).executeTakeFirst();
  if (!row?.wrapped_keys) throw new CoffreError('NotFound', 'this machine has no keys yet; register it with a passphrase');
  return JSON.parse(row.wrapped_keys);
}

export async function itemInfo(ctx: VaultContext, item: Selectable<ItemRow>): Promise<ItemInfo> {
  const r = await ctx.db.selectFrom('vaults').innerJoin('containers', 'containers.vault_id', 'vaults.id').innerJoin('policies', 'policies.vault_id', 'vaults.id')
    .select(['vaults.name as vault', 'containers.name as machine', 'policies.name as policy'])
    .where('vaults.id', '=', item.vault_id).where('containers.id', '=', item.container_id).where('policies.id', '=', item.policy_id)
    .executeTakeFirstOrThrow();
  return { id: item.id, name: item.name, vault: r.vault, machine: r.machine, kind: item.kind, policy: r.policy, createdAt: item.created_at };
}

export async function findItem(ctx: VaultContext, p: Principal, name: string, vaultId?: string): Promise<Selectable<ItemRow>> {
  let q = ctx.db.selectFrom('items').selectAll().where((eb) => eb.or([eb('name', '=', name), eb('id', '=', name)]));
  if (vaultId) q = q.where('vault_id', '=', vaultId);
  if (p.kind === 'agent') q = q.where('container_id', '=', p.containerId);
  const rows = await q.execute();
  if (rows.length === 0) throw new CoffreError('ItemNotFound', `no protected item named ${name}${p.kind === 'agent' ? ' on this machine' : ''}; list points with \`coffre points\``);
  if (rows.length > 1) throw new CoffreError('InvalidArgument', `several vaults have an item named ${name}: name the vault with --vault`);
  return rows[0]!;
}

/** The item a backup writes to; created on first use with the vault's DefaultPolicy. */
export async function itemForBackup(ctx: VaultContext, p: Principal, name: string, kind: string): Promise<Selectable<ItemRow>> {
  if (p.kind !== 'agent') throw new CoffreError('Forbidden', 'backups are made by a registered agent: run `coffre agent register` on the machine first');
  checkName('item', name);
  const { row, created } = await ctx.db.transaction().execute(async (tx) => {
    const existing = await tx.selectFrom('items').selectAll().where('vault_id', '=', p.vaultId).where('name', '=', name).executeTakeFirst();
    if (existing) {
      if (existing.container_id !== p.containerId) throw new CoffreError('ItemOwnedElsewhere', `item ${name} belongs to another machine of this vault; choose another --item name`);
      const { state } = await itemState(tx, existing.id);
      if (state === 'ProtectionStopped') throw new CoffreError('ProtectionStopped', `protection of ${name} is stopped: no backups until it is resumed (\`coffre item resume ${name}\`)`);
      if (state === 'SoftDeleted') throw new CoffreError('ItemSoftDeleted', `${name} is deleted (soft delete): undelete it with \`coffre item undelete ${name}\`, then resume it`);
      return { row: existing, created: false };
    }
    const policy = await tx.selectFrom('policies').select('id').where('vault_id', '=', p.vaultId).where('name', '=', 'DefaultPolicy').executeTakeFirstOrThrow();
    const row = { id: newId(), vault_id: p.vaultId, container_id: p.containerId, name, kind, policy_id: policy.id, created_at: ctx.clock.now().toISOString() };
    await tx.insertInto('items').values(row).execute();
    return { row, created: true };
  });
  if (created) await writeItemRecord(ctx, row.id);
  return row;
}
