/**
 * Test harness of the two-tier architecture: a real vault ("upstream") and a real backup server
 * registered with it, both on loopback over HTTPS with their own data folders, optionally on one
 * injected clock; agents registered with the backup server, or with the vault directly (the
 * restore path without the backup server).
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { registerAgent } from '../src/agent/register.js';
import type { VaultClient } from '../src/agent/client.js';
import { startBackupServer, type BackupServerOptions, type RunningBackupServer } from '../src/backup-server/backup-server.js';
import type { CredentialsFile } from '../src/core/api.js';
import type { Clock } from '../src/core/clock.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { startServer, type RunningServer } from '../src/vault/server.js';
import { clientFor, credentialsFor, PASSPHRASE, tempDir, type TestAgent } from './harness.js';

export const UPSTREAM_VAULT = 'cloud';
export const SERVER_NAME = 'bs01';

export interface TwoTiers {
  dir: string;
  upstream: RunningServer;
  /** The vault's admin. */
  vaultAdmin: VaultClient;
  bs: RunningBackupServer;
  /** The backup server's admin. */
  bsAdmin: VaultClient;
  /** Starts the backup server again on its data folder (after close()). */
  restartBackupServer(extra?: Partial<BackupServerOptions>): Promise<RunningBackupServer>;
  /** A machine registered with the backup server. */
  agent(machine: string): Promise<TestAgent>;
  /** A machine registered with the vault itself (same name and passphrase: its keys come back). */
  vaultAgent(machine: string): Promise<TestAgent & { reattached: boolean }>;
  close(): Promise<void>;
}

/**
 * `upstreamVia` gives the address the backup server reaches the vault at (e.g. a proxy that
 * can cut the network); the vault's certificate is pinned all the same.
 */
export async function twoTiers(opts: { clock?: Clock; throttle?: unknown; packBytes?: number; upstreamVia?: (url: string) => Promise<string> } = {}): Promise<TwoTiers> {
  const dir = await tempDir('coffre-two-tiers-');
  const clock = opts.clock ? { clock: opts.clock } : {};
  const upstream = await startServer({ dataDir: join(dir, 'vault'), listen: '127.0.0.1:0', ...clock });
  const vaultAdmin = clientFor(upstream);
  await vaultAdmin.createVault({ name: UPSTREAM_VAULT });
  const upstreamCredentials = await credentialsFor(upstream, UPSTREAM_VAULT);
  if (opts.upstreamVia) upstreamCredentials.server = await opts.upstreamVia(upstream.url);
  const bsOptions: BackupServerOptions = {
    dataDir: join(dir, 'backup-server'), listen: '127.0.0.1:0', name: SERVER_NAME, credentials: upstreamCredentials, intervalMs: 0, ...clock,
    ...(opts.throttle !== undefined ? { throttle: opts.throttle } : {}), ...(opts.packBytes ? { packBytes: opts.packBytes } : {}),
  };
  const env: TwoTiers = {
    dir, upstream, vaultAdmin,
    bs: await startBackupServer(bsOptions),
    get bsAdmin() { return clientFor(env.bs.server); },
    async restartBackupServer(extra = {}) {
      env.bs = await startBackupServer({ ...bsOptions, ...extra });
      return env.bs;
    },
    async agent(machine) {
      const agentDir = join(dir, `agent-${machine}`);
      const credentials: CredentialsFile = await credentialsFor(env.bs.server, SERVER_NAME);
      const state = await registerAgent({ agentDir, credentials, passphrase: PASSPHRASE, machine });
      return { state, keys: keysFromJSON(state.keys), client: clientFor(env.bs.server, state.token), agentDir };
    },
    async vaultAgent(machine) {
      const agentDir = join(dir, `vault-agent-${machine}`);
      const credentials = await credentialsFor(upstream, UPSTREAM_VAULT);
      await writeFile(join(dir, `vault-${machine}.cred`), JSON.stringify(credentials), { mode: 0o600 });
      const state = await registerAgent({ agentDir, credentials, passphrase: PASSPHRASE, machine });
      return { state, keys: keysFromJSON(state.keys), client: clientFor(upstream, state.token), agentDir, reattached: state.reattached };
    },
    async close() {
      await env.bs.close().catch(() => undefined);
      await upstream.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return env;
}
