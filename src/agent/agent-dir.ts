/** Where an agent keeps its state when no --agent-dir is given; light, so the CLI's fast path can ask it without loading the engine. */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export function defaultAgentDir(): string {
  return process.env.COFFRE_AGENT_DIR || join(homedir(), '.coffre', 'agent');
}

/** The agent folder a command names (or the default), absolute: paths under it go to other processes (QEMU opens the VM's block maps there from its own working folder, the agent's control socket is found there). */
export function agentDirFrom(given: string | undefined): string {
  return resolve(given ?? defaultAgentDir());
}
