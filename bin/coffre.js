#!/usr/bin/env node
// Entry point of the `coffre` command; the code is compiled by `npm ci` (prepare) into dist/.
// `coffre vm backup` first asks the running agent (its control socket), loading almost nothing;
// the full CLI is loaded only when no agent answers, or for every other command.
import { viaAgent } from '../dist/src/cli/agent-first.js';
let keepRunning = false;
if (!(await viaAgent(process.argv))) {
  const { main } = await import('../dist/src/cli/main.js');
  keepRunning = await main(process.argv);
}
// Idle keep-alive connections would otherwise hold a finished command open for seconds.
if (!keepRunning) process.exit(process.exitCode ?? 0);
