/**
 * Who is calling. An administrator holds the server's admin token; an agent holds the key it
 * received at registration and reaches only its own container's items. An agent key can add
 * backups and read its own points but never delete: a compromised machine cannot destroy
 * its own backups.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { CoffreError } from '../core/errors.js';

export type Principal =
  | { kind: 'admin' }
  | { kind: 'agent'; containerId: string; vaultId: string };

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export class Access {
  private readonly adminHash: Buffer;

  constructor(private readonly db: Kysely<Database>, adminToken: string) {
    this.adminHash = Buffer.from(hashSecret(adminToken), 'hex');
  }

  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : undefined;
    if (!token) throw new CoffreError('Unauthorized', 'no token given: pass --token or set COFFRE_TOKEN (or register this machine with `coffre agent register`)');
    const hash = hashSecret(token);
    if (timingSafeEqual(Buffer.from(hash, 'hex'), this.adminHash)) return { kind: 'admin' };
    const row = await this.db.selectFrom('agent_keys')
      .innerJoin('containers', 'containers.id', 'agent_keys.container_id')
      .select(['containers.id as containerId', 'containers.vault_id as vaultId'])
      .where('agent_keys.token_hash', '=', hash)
      .executeTakeFirst();
    if (!row) throw new CoffreError('Unauthorized', 'the token is not valid for this server; check --token / COFFRE_TOKEN or register again');
    return { kind: 'agent', containerId: row.containerId, vaultId: row.vaultId };
  }
}

export function requireAdmin(p: Principal): void {
  if (p.kind !== 'admin') throw new CoffreError('Forbidden', 'this operation needs an administrator token, not an agent key');
}

/** Agents reach only their own container; administrators reach everything. */
export function requireContainer(p: Principal, containerId: string): void {
  if (p.kind === 'agent' && p.containerId !== containerId) {
    throw new CoffreError('Forbidden', 'an agent key reaches only its own machine\'s data');
  }
}

export function requireVault(p: Principal, vaultId: string): void {
  if (p.kind === 'agent' && p.vaultId !== vaultId) throw new CoffreError('Forbidden', 'an agent key reaches only its own vault');
}
