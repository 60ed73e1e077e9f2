#!/usr/bin/env node
// PostgreSQL's archive_command for Coffre (what `coffre db protect` tells you to set): the same
// work as `coffre db archive-wal`, without loading the rest of the CLI. See src/agent/db/archive-main.ts.
import '../dist/src/agent/db/archive-main.js';
