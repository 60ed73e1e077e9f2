#!/usr/bin/env node
// Entry point of the `coffre` command; the code is compiled by `npm ci` (prepare) into dist/.
import { main } from '../dist/src/cli/main.js';
const keepRunning = await main(process.argv);
// Idle keep-alive connections would otherwise hold a finished command open for seconds.
if (!keepRunning) process.exit(process.exitCode ?? 0);
