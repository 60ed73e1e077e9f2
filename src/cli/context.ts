/** How a CLI command finds its server, its token and the agent's state. */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { VaultClient } from '../agent/client.js';
import { defaultAgentDir, requireState, loadState } from '../agent/state.js';
import { CoffreError } from '../core/errors.js';
import { ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN } from '../core/defaults.js';

export interface GlobalOptions { server?: string; token?: string; agentDir?: string; debug?: boolean }

export const agentDirOf = (g: GlobalOptions) => g.agentDir ?? defaultAgentDir();

function localAdminToken(): string | undefined {
  const file = join(DEFAULT_DATA_DIR, ADMIN_TOKEN_FILE);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

const explicitServer = (g: GlobalOptions) => g.server || process.env.COFFRE_SERVER || undefined;
const explicitToken = (g: GlobalOptions) => g.token || process.env.COFFRE_TOKEN || undefined;

/**
 * For administration and listings: an explicit token, else the admin token the local server
 * wrote into ./coffre-data, else this machine's agent key.
 */
export async function adminClient(g: GlobalOptions): Promise<VaultClient> {
  const state = await loadState(agentDirOf(g));
  const server = explicitServer(g) ?? state?.server ?? `http://${DEFAULT_LISTEN}`;
  const token = explicitToken(g) ?? localAdminToken() ?? state?.token;
  if (!token) {
    throw new CoffreError('Unauthorized', 'no token: pass --token or set COFFRE_TOKEN (the server writes its admin token to coffre-data/admin.token)');
  }
  return new VaultClient(server, token);
}

/**
 * For the agent's own work (backups, restores, the daemon, VM snapshots): this machine's
 * registration, keys and agent key, even when --token / COFFRE_TOKEN hold an administrator's
 * token, as an administrator of the vault keeps it. Backups are the machine's to make: the
 * vault accepts them from its key only.
 */
export async function agentContext(g: GlobalOptions) {
  const state = await requireState(agentDirOf(g));
  return { state, client: new VaultClient(explicitServer(g) ?? state.server, state.token) };
}

export function readPassphrase(file: string | undefined): string {
  if (file) {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new CoffreError('InvalidArgument', `cannot read the passphrase file ${file}: ${(e as Error).message}`);
    }
  }
  const env = process.env.COFFRE_PASSPHRASE;
  if (env) return env;
  throw new CoffreError('InvalidArgument', 'no passphrase: give --passphrase-file FILE or set COFFRE_PASSPHRASE (at least 16 characters)');
}
