/** Registering a machine with a vault: first time, new keys; again (new computer), the stored keys. */
import { hostname } from 'node:os';
import type { CredentialsFile } from '../core/api.js';
import { checkPassphrase, keysToJSON, newKeySet, unwrapKeys, wrapKeys, type WrappedKeys } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { VaultClient } from './client.js';
import { saveState, type AgentState } from './state.js';

export function parseCredentials(text: string): CredentialsFile {
  let c: Partial<CredentialsFile>;
  try {
    c = JSON.parse(text) as Partial<CredentialsFile>;
  } catch {
    throw new CoffreError('CredentialsInvalid', 'the credentials file is not valid JSON; download it again with `coffre vault credentials VAULT --out FILE`');
  }
  if (c.kind !== 'coffre-vault-credentials' || typeof c.secret !== 'string' || typeof c.server !== 'string') {
    throw new CoffreError('CredentialsInvalid', 'this is not a Coffre vault credentials file; download one with `coffre vault credentials VAULT --out FILE`');
  }
  if (typeof c.expiresAt === 'string' && Date.parse(c.expiresAt) <= Date.now()) {
    throw new CoffreError('CredentialsExpired', `these vault credentials expired on ${c.expiresAt}; download new ones with \`coffre vault credentials ${c.vault ?? 'VAULT'}\``);
  }
  if (c.fingerprint !== undefined && c.fingerprint !== null && (typeof c.fingerprint !== 'string' || !/^([0-9A-Fa-f]{2}:?){32}$/.test(c.fingerprint))) {
    throw new CoffreError('CredentialsInvalid', 'the credentials file holds a damaged certificate fingerprint; download it again with `coffre vault credentials VAULT --out FILE`');
  }
  return c as CredentialsFile;
}

export function defaultMachineName(): string {
  return hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63) || 'machine';
}

export async function registerAgent(opts: { agentDir: string; credentials: CredentialsFile; passphrase: string; machine?: string; server?: string; fingerprint?: string }): Promise<AgentState & { reattached: boolean }> {
  checkPassphrase(opts.passphrase);
  const server = opts.server ?? opts.credentials.server;
  // The pin comes with the credentials: the registration secret itself goes only to that server.
  const fingerprint = opts.fingerprint ?? opts.credentials.fingerprint ?? null;
  const reg = await new VaultClient(server, undefined, { fingerprint }).register(opts.credentials.secret, opts.machine ?? defaultMachineName());
  const client = new VaultClient(server, reg.token, { fingerprint });
  let keys;
  if (reg.wrappedKeys) {
    // The machine existed: only the right passphrase opens its keys.
    keys = unwrapKeys(reg.wrappedKeys as WrappedKeys, opts.passphrase);
  } else {
    keys = newKeySet();
    await client.putKeys(reg.containerId, wrapKeys(keys, opts.passphrase));
  }
  const state: AgentState = {
    version: 1, server, vault: reg.vault, vaultId: reg.vaultId, machine: reg.machine, containerId: reg.containerId, token: reg.token,
    ...(client.fingerprint ? { fingerprint: client.fingerprint } : {}), keys: keysToJSON(keys),
  };
  await saveState(opts.agentDir, state);
  return { ...state, reattached: reg.wrappedKeys !== null };
}
