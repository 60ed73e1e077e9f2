/**
 * Backup servers registered with a vault: the second tier of the DPM/MABS architecture. A backup
 * server protects machines on its own disk (short-term) and copies chosen points into this vault
 * (online protection, src/backup-server/). It registers with vault credentials, as a machine
 * does, and gets a key of its own: a principal of kind "server" (access.ts).
 *
 * Encryption domains stay per machine. Each machine the server protects is a container here,
 * under the machine's own name and with the machine's wrapped keys copied as they are: its
 * points are copied into it encrypted, and the machine, registered with this vault using its
 * passphrase, restores them without the backup server. The server may write to the containers
 * it attached (server_containers) and nowhere else; it reads nothing back and deletes nothing.
 */
import type { Selectable } from 'kysely';
import { z } from 'zod';
import type { VaultRow } from '../catalog/schema.js';
import type { GroupInfo, ServerInfo, ServerRegistration, ThrottleInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { newId, newSecret } from '../core/ids.js';
import { hashSecret, type Principal } from './access.js';
import type { DataContext } from './data.js';
import { writeContainerRecord } from './records.js';
import { itemState } from './item-state.js';
import { checkName } from './vaults.js';

export type ServerPrincipal = Extract<Principal, { kind: 'server' }>;

export function requireServer(p: Principal): ServerPrincipal {
  if (p.kind !== 'server') throw new CoffreError('Forbidden', 'only a registered backup server does this: run `coffre backup-server run --vault-credentials FILE`');
  return p;
}

/** The vault that vault credentials open, or the error a user can act on. */
async function vaultOfCredentials(ctx: DataContext, secret: string): Promise<Selectable<VaultRow>> {
  const cred = await ctx.db.selectFrom('credentials').selectAll().where('secret_hash', '=', hashSecret(secret)).executeTakeFirst();
  if (!cred) throw new CoffreError('CredentialsInvalid', 'these vault credentials are not known to this vault; download new ones with `coffre vault credentials VAULT`');
  if (cred.expires_at <= ctx.clock.now().toISOString()) {
    throw new CoffreError('CredentialsExpired', `these vault credentials expired on ${cred.expires_at}; download new ones with \`coffre vault credentials VAULT\``);
  }
  return ctx.db.selectFrom('vaults').selectAll().where('id', '=', cred.vault_id).executeTakeFirstOrThrow();
}

/**
 * Registers a backup server. A name seen before re-attaches it (a rebuilt server): it gets a new
 * key and the machines it copied, whose wrapped keys it can fetch again (serverMachines).
 */
export async function registerServer(ctx: DataContext, secret: string, name: string): Promise<ServerRegistration> {
  checkName('backup server', name);
  const vault = await vaultOfCredentials(ctx, secret);
  const token = newSecret('csk');
  const now = ctx.clock.now().toISOString();
  const server = await ctx.db.transaction().execute(async (tx) => {
    let row = await tx.selectFrom('servers').select(['id', 'name']).where('vault_id', '=', vault.id).where('name', '=', name).executeTakeFirst();
    if (!row) {
      row = { id: newId(), name };
      await tx.insertInto('servers').values({ id: row.id, vault_id: vault.id, name, created_at: now, report: null, reported_at: null }).execute();
    }
    await tx.insertInto('server_keys').values({ token_hash: hashSecret(token), server_id: row.id, created_at: now }).execute();
    return row;
  });
  return { serverId: server.id, name: server.name, vaultId: vault.id, vault: vault.name, token };
}

/** Wrapped keys as canonical JSON (sorted keys), to tell the same keys from others. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export const wrappedKeysSchema = z.object({ version: z.literal(1), kdf: z.object({}).passthrough(), sealed: z.string().min(1) }).passthrough();

/**
 * Makes (or finds) the container of a machine the server protects, with the machine's wrapped
 * keys as the server holds them. A container of that name with other keys is another machine's
 * domain (or the same machine registered directly, before, with other keys): refused, since its
 * points could not be restored with one passphrase.
 */
export async function attachMachine(ctx: DataContext, p: Principal, input: { machine: string; wrappedKeys: unknown }): Promise<{ containerId: string; machine: string; created: boolean }> {
  const server = requireServer(p);
  checkName('machine', input.machine);
  const keys = canonical(input.wrappedKeys);
  const now = ctx.clock.now().toISOString();
  let wroteKeys = false;
  const attached = await ctx.db.transaction().execute(async (tx) => {
    const row = await tx.selectFrom('containers').selectAll().where('vault_id', '=', server.vaultId).where('name', '=', input.machine).executeTakeFirst();
    if (!row) {
      const id = newId();
      await tx.insertInto('containers').values({ id, vault_id: server.vaultId, name: input.machine, wrapped_keys: JSON.stringify(input.wrappedKeys), created_at: now }).execute();
      await tx.insertInto('server_containers').values({ container_id: id, server_id: server.serverId, attached_at: now }).execute();
      wroteKeys = true;
      return { containerId: id, machine: input.machine, created: true };
    }
    const owner = await tx.selectFrom('server_containers').innerJoin('servers', 'servers.id', 'server_containers.server_id')
      .select(['servers.id', 'servers.name']).where('server_containers.container_id', '=', row.id).executeTakeFirst();
    if (owner && owner.id !== server.serverId) {
      throw new CoffreError('ServerContainerConflict', `machine ${input.machine} is already copied into this vault by backup server ${owner.name}; a machine is protected by one backup server (unregister the other with \`coffre vault unregister-server\`)`);
    }
    if (row.wrapped_keys === null) {
      await tx.updateTable('containers').set({ wrapped_keys: JSON.stringify(input.wrappedKeys) }).where('id', '=', row.id).execute();
      wroteKeys = true;
    } else if (canonical(JSON.parse(row.wrapped_keys)) !== keys) {
      throw new CoffreError('ServerContainerConflict', `machine ${input.machine} is registered with this vault with other keys (registered directly, or another machine of that name): its online copies would not open with one passphrase; register the machine with the backup server under another name`);
    }
    if (!owner) await tx.insertInto('server_containers').values({ container_id: row.id, server_id: server.serverId, attached_at: now }).execute();
    return { containerId: row.id, machine: input.machine, created: false };
  });
  // The machine and its wrapped keys in the vault's store too: a catalog rebuilt from the stores
  // (`--recover-from`) keeps what lets the machine restore its online copies with its passphrase.
  if (wroteKeys) await writeContainerRecord(ctx, attached.containerId);
  return attached;
}

/** The machines a server copies, with their wrapped keys: what a rebuilt server takes back. */
export async function serverMachines(ctx: DataContext, p: Principal): Promise<{ machine: string; containerId: string; wrappedKeys: unknown }[]> {
  const server = requireServer(p);
  const rows = await ctx.db.selectFrom('server_containers').innerJoin('containers', 'containers.id', 'server_containers.container_id')
    .select(['containers.id', 'containers.name', 'containers.wrapped_keys']).where('server_containers.server_id', '=', server.serverId).orderBy('containers.name').execute();
  return rows.map((r) => ({ machine: r.name, containerId: r.id, wrappedKeys: r.wrapped_keys ? JSON.parse(r.wrapped_keys) as unknown : null }));
}

/** The most a report may weigh: state, not logs. */
export const MAX_REPORT_BYTES = 1024 * 1024;

const copySchema = z.object({ jobId: z.string(), point: z.string(), status: z.string() }).passthrough();
export const reportSchema = z.object({
  groups: z.array(z.object({
    name: z.string(), shortTermPolicy: z.string(), onlinePolicy: z.string(), createdAt: z.string(),
    items: z.array(z.object({ machine: z.string(), item: z.string(), kind: z.string(), lastCopy: copySchema.nullable() }).passthrough()).max(10_000),
  }).passthrough()).max(1000),
  throttle: z.object({ schedule: z.object({}).passthrough(), now: z.object({}).passthrough() }),
  copiesInProgress: z.number().int().nonnegative(),
});

/** Keeps the server's last report of its groups, items and online copies, for `vault servers`. */
export async function saveReport(ctx: DataContext, p: Principal, report: z.infer<typeof reportSchema>): Promise<{ reportedAt: string }> {
  const server = requireServer(p);
  const text = JSON.stringify(report);
  if (text.length > MAX_REPORT_BYTES) throw new CoffreError('BadRequest', `a server report is at most ${MAX_REPORT_BYTES} bytes`);
  const reportedAt = ctx.clock.now().toISOString();
  await ctx.db.updateTable('servers').set({ report: text, reported_at: reportedAt }).where('id', '=', server.serverId).execute();
  return { reportedAt };
}

/** The backup servers of a vault, with what they reported and what the vault holds of their machines. */
export async function listServers(ctx: DataContext, vault: Selectable<VaultRow>): Promise<ServerInfo[]> {
  const servers = await ctx.db.selectFrom('servers').selectAll().where('vault_id', '=', vault.id).orderBy('name').execute();
  const out: ServerInfo[] = [];
  for (const s of servers) {
    const report = s.report ? JSON.parse(s.report) as { groups?: GroupInfo[]; throttle?: ThrottleInfo; copiesInProgress?: number } : null;
    const containers = await ctx.db.selectFrom('server_containers').innerJoin('containers', 'containers.id', 'server_containers.container_id')
      .select(['containers.id', 'containers.name']).where('server_containers.server_id', '=', s.id).orderBy('containers.name').execute();
    const machines: ServerInfo['machines'] = [];
    for (const c of containers) {
      const items = await ctx.db.selectFrom('items').innerJoin('policies', 'policies.id', 'items.policy_id')
        .select(['items.id', 'items.name', 'items.kind', 'policies.name as policy']).where('items.container_id', '=', c.id).orderBy('items.name').execute();
      machines.push({
        machine: c.name, containerId: c.id,
        items: await Promise.all(items.map(async (i) => {
          const pts = await ctx.db.selectFrom('points').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('time').as('last')]).where('item_id', '=', i.id).executeTakeFirstOrThrow();
          return { item: i.name, kind: i.kind, policy: i.policy, state: (await itemState(ctx.db, i.id)).state, onlinePoints: Number(pts.n), lastOnlinePoint: (pts.last as string | null) ?? null };
        })),
      });
    }
    out.push({
      id: s.id, name: s.name, vault: vault.name, registeredAt: s.created_at, reportedAt: s.reported_at,
      groups: report?.groups ?? [], throttle: report?.throttle ?? null, copiesInProgress: report?.copiesInProgress ?? null, machines,
    });
  }
  return out;
}

/**
 * Forgets a backup server: its keys stop working. The machines it copied stay, with their
 * points: each can register with the vault and restore them with its passphrase.
 */
export async function unregisterServer(ctx: DataContext, vault: Selectable<VaultRow>, name: string): Promise<{ server: string; vault: string; machines: number }> {
  const s = await ctx.db.selectFrom('servers').select(['id', 'name']).where('vault_id', '=', vault.id).where((eb) => eb.or([eb('name', '=', name), eb('id', '=', name)])).executeTakeFirst();
  if (!s) throw new CoffreError('ServerNotFound', `no backup server ${name} in vault ${vault.name}; list them with \`coffre vault servers\``);
  const machines = await ctx.db.transaction().execute(async (tx) => {
    await tx.deleteFrom('server_keys').where('server_id', '=', s.id).execute();
    const res = await tx.deleteFrom('server_containers').where('server_id', '=', s.id).executeTakeFirst();
    await tx.deleteFrom('servers').where('id', '=', s.id).execute();
    return Number(res.numDeletedRows);
  });
  return { server: s.name, vault: vault.name, machines };
}
