/** How a CLI command finds its server, its token and the agent's state. */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { VaultClient } from '../agent/client.js';
import { agentDirFrom } from '../agent/agent-dir.js';
import { requireState, loadState, type AgentState } from '../agent/state.js';
import { CoffreError } from '../core/errors.js';
import { ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN, SERVER_INFO_FILE } from '../core/defaults.js';

export interface GlobalOptions { server?: string; token?: string; agentDir?: string; fingerprint?: string; debug?: boolean }

export const agentDirOf = (g: GlobalOptions) => agentDirFrom(g.agentDir);

function localAdminToken(): string | undefined {
  const file = join(DEFAULT_DATA_DIR, ADMIN_TOKEN_FILE);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

const explicitServer = (g: GlobalOptions) => g.server || process.env.COFFRE_SERVER || undefined;
const explicitToken = (g: GlobalOptions) => g.token || process.env.COFFRE_TOKEN || undefined;
const explicitFingerprint = (g: GlobalOptions) => g.fingerprint || process.env.COFFRE_FINGERPRINT || undefined;

/** What the server in ./coffre-data says of itself (server.json): its address and certificate. */
export function localServerInfo(): { url: string; fingerprint: string | null } | undefined {
  const file = join(DEFAULT_DATA_DIR, SERVER_INFO_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as { url?: unknown; fingerprint?: unknown };
    if (typeof info.url !== 'string') return undefined;
    return { url: info.url, fingerprint: typeof info.fingerprint === 'string' ? info.fingerprint : null };
  } catch (e) {
    throw new CoffreError('InvalidArgument', `${file} cannot be read (${(e as Error).message}); restart \`coffre server\` to rewrite it`);
  }
}

/**
 * The certificate fingerprint to pin for `server`: the explicit one, else the one of whoever
 * is known to serve that address (the local server's server.json, the agent's registration).
 */
function fingerprintFor(g: GlobalOptions, server: string, known: ({ url: string; fingerprint?: string | null | undefined } | undefined)[]): string | undefined {
  const explicit = explicitFingerprint(g);
  if (explicit) return explicit;
  // `server` may list several nodes (URL1,URL2): a known fingerprint of any of them is theirs (one certificate behind one name).
  const same = (a: string, b: string) => b.split(',').some((one) => a.replace(/\/+$/, '') === one.trim().replace(/\/+$/, ''));
  return known.find((k) => k && same(k.url, server) && k.fingerprint)?.fingerprint ?? undefined;
}

/**
 * For administration and listings: an explicit token, else the admin token the local server
 * wrote into ./coffre-data, else this machine's agent key. The server is the explicit one, else
 * the registered vault's, else the local server's (./coffre-data/server.json), else the default.
 */
export async function adminClient(g: GlobalOptions): Promise<VaultClient> {
  const state = await loadState(agentDirOf(g));
  const local = localServerInfo();
  const server = explicitServer(g) ?? state?.server ?? local?.url ?? `https://${DEFAULT_LISTEN}`;
  const token = explicitToken(g) ?? localAdminToken() ?? state?.token;
  if (!token) {
    throw new CoffreError('Unauthorized', 'no token: pass --token or set COFFRE_TOKEN (the server writes its admin token to coffre-data/admin.token)');
  }
  const fingerprint = fingerprintFor(g, server, [local, state ? { url: state.server, fingerprint: state.fingerprint ?? null } : undefined]);
  return new VaultClient(server, token, { fingerprint });
}

/** A client speaking with `token` (default: the machine's key) to the machine's vault, pinning its certificate. */
export function agentClient(g: GlobalOptions, state: AgentState, token: string = state.token): VaultClient {
  const server = explicitServer(g) ?? state.server;
  const fingerprint = fingerprintFor(g, server, [{ url: state.server, fingerprint: state.fingerprint ?? null }, localServerInfo()]);
  return new VaultClient(server, token, { fingerprint });
}

/**
 * For the agent's own work (backups, restores, the daemon, VM snapshots): this machine's
 * registration, keys and agent key, even when --token / COFFRE_TOKEN hold an administrator's
 * token, as an administrator of the vault keeps it. Backups are the machine's to make: the
 * vault accepts them from its key only.
 */
export async function agentContext(g: GlobalOptions) {
  const state = await requireState(agentDirOf(g));
  return { state, client: agentClient(g, state) };
}

/** For registration: the server (--server only: the credentials name theirs) and fingerprint given, if any. */
export function registrationOverrides(g: GlobalOptions): { server?: string; fingerprint?: string } {
  const fingerprint = explicitFingerprint(g);
  return { ...(g.server ? { server: g.server } : {}), ...(fingerprint ? { fingerprint } : {}) };
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
