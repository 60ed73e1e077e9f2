/**
 * Who is calling: the one function from a bearer token to a principal, used by the HTTP API
 * and reusable by any other door (the dashboard signs in the same way).
 *
 * Four kinds of principal exist. A *user* principal holds an API key made by `coffre principal
 * create` (the admin token of the embedded default is the built-in one, the first Owner) and
 * acts through its role assignments. An *agent* holds the key its machine received at
 * registration: it writes backups and reads its own machine's data, and never deletes, so a
 * stolen machine cannot destroy its own backups. A *server* is a backup server registered with
 * the vault: it copies the points of the machines it protects into their containers, and, like
 * an agent, never deletes. *system* is the vault itself (daily prune, GC,
 * purge of soft-deleted items). Keys are stored as SHA-256 hashes, never in clear.
 */
import { createHash } from 'node:crypto';
import { lockKey } from '../catalog/engine.js';
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';

export type Principal =
  | { kind: 'user'; id: string; name: string; builtin: boolean }
  | { kind: 'agent'; containerId: string; vaultId: string; machine: string }
  /** A backup server registered with the vault: it copies its machines' points in (servers.ts). */
  | { kind: 'server'; serverId: string; vaultId: string; name: string }
  | { kind: 'system' };

export const SYSTEM: Principal = { kind: 'system' };
/** The name of the principal the admin token signs in as. */
export const ADMIN_PRINCIPAL = 'admin';

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** How a principal is named in messages and in the audit log. */
export function principalName(p: Principal | undefined): string {
  if (!p) return 'anonymous';
  if (p.kind === 'user') return p.name;
  if (p.kind === 'agent') return `agent:${p.machine}`;
  if (p.kind === 'server') return `server:${p.name}`;
  return 'system';
}

export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() || undefined : undefined;
}

/** A principal from its key: a user principal's, or a machine's agent key. */
export async function authenticateToken(db: Kysely<Database>, token: string | undefined): Promise<Principal> {
  if (!token) throw new CoffreError('Unauthorized', 'no token given: pass --token or set COFFRE_TOKEN (or register this machine with `coffre agent register`)');
  const hash = hashSecret(token);
  const user = await db.selectFrom('principals').select(['id', 'name', 'builtin']).where('key_hash', '=', hash).executeTakeFirst();
  if (user) return { kind: 'user', id: user.id, name: user.name, builtin: user.builtin === 1 };
  const agent = await db.selectFrom('agent_keys')
    .innerJoin('containers', 'containers.id', 'agent_keys.container_id')
    .select(['containers.id as containerId', 'containers.vault_id as vaultId', 'containers.name as machine'])
    .where('agent_keys.token_hash', '=', hash)
    .executeTakeFirst();
  if (agent) return { kind: 'agent', ...agent };
  const server = await db.selectFrom('server_keys')
    .innerJoin('servers', 'servers.id', 'server_keys.server_id')
    .select(['servers.id as serverId', 'servers.vault_id as vaultId', 'servers.name as name'])
    .where('server_keys.token_hash', '=', hash)
    .executeTakeFirst();
  if (server) return { kind: 'server', ...server };
  throw new CoffreError('Unauthorized', 'the token is not valid for this server; check --token / COFFRE_TOKEN or register again');
}

export function authenticate(db: Kysely<Database>, authorization: string | undefined): Promise<Principal> {
  return authenticateToken(db, bearerToken(authorization));
}

/**
 * The admin token of the data folder signs in as the built-in principal "admin", Owner at "/".
 * Run at every start, so a replaced admin.token takes effect and the old one stops working.
 */
export async function ensureAdminPrincipal(db: Kysely<Database>, adminToken: string, now: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await lockKey(tx, 'principals:admin');
    const row = await tx.selectFrom('principals').select('id').where('name', '=', ADMIN_PRINCIPAL).executeTakeFirst();
    const id = row?.id ?? newId();
    if (row) await tx.updateTable('principals').set({ key_hash: hashSecret(adminToken), builtin: 1 }).where('id', '=', id).execute();
    else await tx.insertInto('principals').values({ id, name: ADMIN_PRINCIPAL, key_hash: hashSecret(adminToken), builtin: 1, created_at: now }).execute();
    await tx.insertInto('role_assignments').values({ id: newId(), principal_id: id, role: 'Owner', scope: '/', created_at: now })
      .onConflict((oc) => oc.columns(['principal_id', 'role', 'scope']).doNothing()).execute();
  });
}

/** Agents reach only their own container; other principals are checked by role (authorize.ts). */
export function requireContainer(p: Principal, containerId: string): void {
  if (p.kind === 'agent' && p.containerId !== containerId) {
    throw new CoffreError('Forbidden', 'an agent key reaches only its own machine\'s data');
  }
}

export function requireVault(p: Principal, vaultId: string): void {
  if (p.kind === 'agent' && p.vaultId !== vaultId) throw new CoffreError('Forbidden', 'an agent key reaches only its own vault');
  if (p.kind === 'server' && p.vaultId !== vaultId) throw new CoffreError('Forbidden', 'a backup server\'s key reaches only the vault it is registered with');
}
