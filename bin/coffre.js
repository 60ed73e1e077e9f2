#!/usr/bin/env node
// Entry point of the `coffre` command; the code is compiled by `npm ci` (prepare) into dist/.
import { main } from '../dist/src/cli/main.js';
await main(process.argv);
