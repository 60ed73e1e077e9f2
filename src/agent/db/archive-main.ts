/**
 * The process PostgreSQL's `archive_command` starts for each WAL file: `coffre db archive-wal`
 * with nothing else loaded (no CLI framework, no vault client), since it runs once per 16 MiB
 * of WAL and its start-up time is the archiver's. Arguments: --spool DIR PATH NAME. Exit 0
 * only once the file is durable in the spool; 1 with the reason on stderr otherwise (the
 * server logs it and retries).
 */
import { archiveWal } from './spool.js';

const args = process.argv.slice(2);
const at = args.indexOf('--spool');
const spool = at >= 0 ? args[at + 1] : undefined;
const rest = at >= 0 ? [...args.slice(0, at), ...args.slice(at + 2)] : args;
if (!spool || rest.length !== 2) {
  process.stderr.write('usage: coffre-archive-wal --spool DIR "%p" "%f"\n');
  process.exit(2);
}
try {
  archiveWal(spool, rest[0]!, rest[1]!);
} catch (e) {
  process.stderr.write(`coffre db archive-wal: ${(e as Error).message}\n`);
  process.exit(1);
}
