/**
 * The agent's local state: which vault it belongs to, its key, and its unwrapped data keys.
 * Kept in the agent folder, readable by its owner only (like an SSH key).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keysFromJSON, type KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { writeFileAtomic } from '../core/atomic-file.js';

export { writeFileAtomic };

export interface AgentState {
  version: 1;
  server: string;
  vault: string;
  vaultId: string;
  machine: string;
  containerId: string;
  token: string;
  /** The vault's certificate fingerprint, pinned on every connection (absent: plain HTTP or a CA-signed certificate). */
  fingerprint?: string | null;
  keys: { encKey: string; idKey: string; chunkerSeed: string };
}

export { defaultAgentDir } from './agent-dir.js';

const STATE_FILE = 'agent.json';

export async function saveState(dir: string, state: AgentState): Promise<void> {
  await writeFileAtomic(join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
}

export async function loadState(dir: string): Promise<AgentState | null> {
  try {
    return JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as AgentState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CoffreError('NotRegistered', `the agent state in ${dir} cannot be read (${(e as Error).message}); register again with \`coffre agent register\``);
  }
}

export async function requireState(dir: string): Promise<AgentState & { keySet: KeySet }> {
  const state = await loadState(dir);
  if (!state) {
    throw new CoffreError('NotRegistered', `this machine is not registered (no agent state in ${dir}); run \`coffre agent register --credentials FILE --passphrase-file FILE\``);
  }
  return { ...state, keySet: keysFromJSON(state.keys) };
}
