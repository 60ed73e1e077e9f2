/**
 * The backup server's link to its vault ("upstream"): registered once with vault credentials,
 * then kept in DATA/upstream.json (mode 0600: it holds the server's key), so that restarts need
 * no credentials (which expire). The server pins the vault's certificate as agents do.
 *
 * This folder (src/backup-server/) sits above src/vault/ and src/agent/: a backup server is a
 * vault service (it reuses the vault's server, catalog and store) that speaks to another vault
 * through the agent's client.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VaultClient, type ClientOptions } from '../agent/client.js';
import { writeFileAtomic } from '../agent/state.js';
import type { CredentialsFile } from '../core/api.js';
import { CoffreError } from '../core/errors.js';

export const UPSTREAM_FILE = 'upstream.json';

export interface UpstreamLink {
  version: 1;
  /** The vault service's URL and certificate pin, from the credentials. */
  server: string;
  fingerprint: string | null;
  vault: string;
  vaultId: string;
  serverId: string;
  /** This backup server's name in the vault. */
  name: string;
  token: string;
  registeredAt: string;
}

export async function loadLink(dataDir: string): Promise<UpstreamLink | null> {
  let text: string;
  try {
    text = await readFile(join(dataDir, UPSTREAM_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const link = JSON.parse(text) as UpstreamLink;
    if (link.version !== 1 || typeof link.token !== 'string' || typeof link.server !== 'string') throw new Error('unknown format');
    return link;
  } catch (e) {
    throw new CoffreError('NotRegistered', `${join(dataDir, UPSTREAM_FILE)} cannot be read (${(e as Error).message}); remove it and start again with --vault-credentials FILE`);
  }
}

/** Registers this backup server with the vault the credentials name, and keeps the link. */
export async function linkUpstream(dataDir: string, credentials: CredentialsFile, name: string, now: Date): Promise<UpstreamLink> {
  const client = new VaultClient(credentials.server, undefined, { fingerprint: credentials.fingerprint ?? null });
  const reg = await client.registerServer(credentials.secret, name);
  const link: UpstreamLink = {
    version: 1, server: credentials.server, fingerprint: client.fingerprint ?? null, vault: reg.vault, vaultId: reg.vaultId, serverId: reg.serverId,
    name: reg.name, token: reg.token, registeredAt: now.toISOString(),
  };
  await writeFileAtomic(join(dataDir, UPSTREAM_FILE), JSON.stringify(link, null, 2) + '\n');
  return link;
}

/** A client of the vault with the server's key (uploads paced by `throttle` when given). */
export function upstreamClient(link: UpstreamLink, opts: Pick<ClientOptions, 'throttle'> = {}): VaultClient {
  return new VaultClient(link.server, link.token, { fingerprint: link.fingerprint, ...opts });
}
