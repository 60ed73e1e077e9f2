/** Where an agent keeps its state when no --agent-dir is given; light, so the CLI's fast path can ask it without loading the engine. */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function defaultAgentDir(): string {
  return process.env.COFFRE_AGENT_DIR || join(homedir(), '.coffre', 'agent');
}
