/** The `coffre` command: parses arguments, calls the agent or the vault API, prints. No business logic. */
import { Command, Option } from 'commander';
import { registerServerStatus } from './server-status-command.js';
import { readFileSync, writeFileSync } from 'node:fs';
import v8 from 'node:v8';
import { parseCredentials, registerAgent } from '../agent/register.js';
import type { OverwritePolicy } from '../agent/restore.js';
import type { CredentialsFile } from '../core/api.js';
import { CoffreError, exitCodeFor } from '../core/errors.js';
import { adminClient, agentContext, agentDirOf, readPassphrase, registrationOverrides, type GlobalOptions } from './context.js';
import { formatBytes, jobSummary, jobsTable, pointsTable, printJson, progressBar, storeReports, table } from './output.js';
import { registerVaultStorageCommands } from './vault-storage-commands.js';
import { registerPolicyCommands } from './policy-commands.js';
import { retainUntil } from './arguments.js';
import { registerVmCommands } from './vm-commands.js';
import { registerMonitorCommands } from './monitor-commands.js';
import { addSnapshotOptions, jobNotes, snapshotOptionsFrom, type SnapshotFlags } from './snapshot-options.js';
import { registerAccessCommands } from './access-commands.js';
import { registerDbCommands } from './db-commands.js';
import { registerBackupServerCommands } from './backup-server-commands.js';

/**
 * A vault receives packs as 16 KiB TLS records, each its own buffer: with V8's default heap
 * growth that meant 9-14 full garbage collections while a 300 MB VM backup came in, and 1.8-2.3
 * server CPU s. Letting the heap grow to 3x its live size before the next one (within the 1.1-4x
 * V8 chooses by itself, but fixed, also when V8 would save memory) left 1-2, and 1.4-1.6 CPU s,
 * with the same peak memory (190-200 MB: the records die young either way). Only for the
 * server, whose live heap is its code and caches (about 30 MB): an agent's heap holds what a
 * backup walks. Node.js leaves V8's flags writable after start; V8 reads this one at each
 * collection.
 */
function serverHeapGrowth(): void {
  v8.setFlagsFromString('--heap-growing-percent=200');
}

/** Exit status of a job that completed but skipped or flagged something. */
export const EXIT_WARNINGS = 4;

const collect = (value: string, previous: string[] = []) => [...previous, value];


export function buildProgram(): Command {
  const program = new Command('coffre')
    .description('Coffre: self-hosted backup vault and agents (incremental, deduplicated, compressed, encrypted).')
    .option('--server <url>', 'vault server URL (default: $COFFRE_SERVER, the registered vault, ./coffre-data/server.json, or https://127.0.0.1:7070)')
    .option('--fingerprint <sha256>', 'pin the vault\'s TLS certificate to this SHA-256 fingerprint (default: $COFFRE_FINGERPRINT, the registered vault\'s, or ./coffre-data/server.json)')
    .option('--token <token>', 'API token (default: $COFFRE_TOKEN, ./coffre-data/admin.token, or this machine\'s agent key)')
    .option('--agent-dir <dir>', 'agent state folder (default: $COFFRE_AGENT_DIR or ~/.coffre/agent)')
    .option('--debug', 'print stack traces on errors')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    // Subcommands inherit this: usage errors reach main() and exit with status 2.
    .exitOverride();
  const g = (): GlobalOptions => program.opts<GlobalOptions>();

  const serverCommand = program.command('server');
  registerServerStatus(serverCommand, g);
  serverCommand
    .description('run the vault service over HTTPS (embedded default: ./coffre-data, 127.0.0.1:7070, a self-signed certificate, zones as folders under it)')
    .option('--data <dir>', 'data folder: SQLite catalog, admin token, certificate, and the default regions (default: the configuration\'s, else ./coffre-data)')
    .option('--listen <host:port>', 'address to listen on (default: the configuration\'s, else 127.0.0.1:7070)')
    .option('--config <file>', 'server configuration (YAML or JSON): regions, zones and their stores (file://, azblob://, s3://)')
    .addOption(new Option('--recover-from <region>', 'rebuild the catalog of an empty data folder from this region\'s stores first').choices(['primary', 'secondary']))
    .option('--tls-cert <file>', 'PEM certificate to serve (default: a self-signed one made on first start in DATA/tls)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--insecure-http', 'serve plain HTTP (loopback addresses only)')
    .option('--catalog <url>', 'catalog database for scale-out: postgresql://USER:PASSWORD@HOST:PORT/DATABASE (default: the configuration\'s, else DATA/catalog.sqlite)')
    .option('--store <url>', 'one store for a one-zone LRS topology (file://, azblob://, s3://), instead of --config regions')
    .action(async (o: { data?: string; listen?: string; config?: string; recoverFrom?: 'primary' | 'secondary'; tlsCert?: string; tlsKey?: string; insecureHttp?: boolean; catalog?: string; store?: string }) => {
      // Loaded on demand: agent commands start faster without the server's modules.
      const { startServer } = await import('../vault/server.js');
      serverHeapGrowth();
      const s = await startServer({
        ...(o.data ? { dataDir: o.data } : {}), ...(o.listen ? { listen: o.listen } : {}), ...(o.config ? { configFile: o.config } : {}), ...(o.recoverFrom ? { recoverFrom: o.recoverFrom } : {}),
        ...(o.tlsCert ? { tlsCert: o.tlsCert } : {}), ...(o.tlsKey ? { tlsKey: o.tlsKey } : {}), ...(o.insecureHttp ? { insecureHttp: true } : {}),
        ...(o.catalog ? { catalog: o.catalog } : {}), ...(o.store ? { store: o.store } : {}),
      });
      serving = true;
      const zones = [...s.stores.topology.primary.zones, ...s.stores.topology.secondary?.zones ?? []].map((z) => z.name).join(', ');
      process.stderr.write(`coffre server listening on ${s.url}\n  data folder: ${s.dataDir}\n  admin token: ${s.dataDir}/admin.token\n  catalog: ${s.catalog.engine} ${s.catalog.location}\n  stores: ${zones}\n  Backup center: ${s.url}/ (sign in with the admin token or a principal's key)\n  metrics: ${s.url}/metrics (any principal's key as a bearer token)\n`
        + (s.fingerprint ? `  certificate fingerprint (SHA-256): ${s.fingerprint}\n` : '  plain HTTP (--insecure-http): loopback only\n'));
      const stop = () => { void s.close().then(() => process.exit(0)); };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });

  const vault = program.command('vault').description('create and list vaults, download vault credentials');
  vault.command('create <name>')
    .description('create a vault (with its DefaultPolicy)')
    .option('--subscription <id>', 'subscription (tenant) that owns the vault', 'default')
    .addOption(new Option('--redundancy <kind>', 'storage redundancy').choices(['LRS', 'ZRS', 'GRS']).default('GRS'))
    .option('--cross-region-restore', 'allow restores from the secondary region (GRS only)')
    .option('--json', 'print the vault as JSON')
    .action(async (name: string, o: { subscription: string; redundancy: string; crossRegionRestore?: boolean; json?: boolean }) => {
      const v = await (await adminClient(g())).createVault({ name, subscription: o.subscription, redundancy: o.redundancy, ...(o.crossRegionRestore ? { crossRegionRestore: true } : {}) });
      if (o.json) printJson(v);
      else process.stdout.write(`created vault ${v.name} (${v.id}), redundancy ${v.redundancy}, subscription ${v.subscription}, with policy DefaultPolicy\n`);
    });
  vault.command('list')
    .description('list vaults')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const vs = await (await adminClient(g())).listVaults();
      if (o.json) printJson(vs);
      else process.stdout.write(table(['id', 'name', 'subscription', 'redundancy', 'created'], vs.map((v) => [v.id, v.name, v.subscription, v.redundancy, v.createdAt])) + '\n');
    });
  vault.command('credentials <name>')
    .description('write a vault credentials file, used once to register a machine (expires)')
    .requiredOption('--out <file>', 'where to write the credentials (mode 0600)')
    .option('--days <n>', 'days until the credentials expire', (v) => Number.parseInt(v, 10), 10)
    .action(async (name: string, o: { out: string; days: number }) => {
      const client = await adminClient(g());
      const c = await client.createCredentials(name, o.days);
      // A self-signed vault's fingerprint goes with the secret: agents pin it.
      const fingerprint = c.fingerprint ?? null;
      const file: CredentialsFile = { kind: 'coffre-vault-credentials', version: 1, server: client.server, vault: c.vault.name, vaultId: c.vault.id, secret: c.secret, expiresAt: c.expiresAt, ...(fingerprint ? { fingerprint } : {}) };
      writeFileSync(o.out, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
      process.stdout.write(`wrote ${o.out}: credentials for vault ${c.vault.name}, valid until ${c.expiresAt}\n`);
    });

  registerVaultStorageCommands(vault, g);

  const agent = program.command('agent').description('register this machine with a vault');
  agent.command('register')
    .description('register this machine (first time: creates its keys; again: recovers them with the passphrase)')
    .requiredOption('--credentials <file>', 'vault credentials file from `coffre vault credentials`')
    .option('--passphrase-file <file>', 'file holding the encryption passphrase (default: $COFFRE_PASSPHRASE); at least 16 characters')
    .option('--machine <name>', 'name of this machine in the vault (default: host name)')
    .option('--json', 'print JSON')
    .action(async (o: { credentials: string; passphraseFile?: string; machine?: string; json?: boolean }) => {
      const passphrase = readPassphrase(o.passphraseFile);
      let text: string;
      try { text = readFileSync(o.credentials, 'utf8'); } catch (e) { throw new CoffreError('InvalidArgument', `cannot read ${o.credentials}: ${(e as Error).message}`); }
      const credentials = parseCredentials(text);
      const s = await registerAgent({ agentDir: agentDirOf(g()), credentials, passphrase, ...(o.machine ? { machine: o.machine } : {}), ...registrationOverrides(g()) });
      if (o.json) printJson({ vault: s.vault, machine: s.machine, containerId: s.containerId, reattached: s.reattached });
      else process.stdout.write(`registered machine ${s.machine} with vault ${s.vault}${s.reattached ? ' (existing machine: keys recovered with the passphrase)' : ''}\nkeep the passphrase safe: without it no backup of this machine can be restored\n`);
    });

  agent.command('run')
    .description('run the agent daemon: back up every item when its policy says (the vault decides what is due), and `coffre vm backup` asked on this machine (control socket in the agent folder)')
    .option('--once', 'run what is due now, then exit')
    .option('--interval <seconds>', 'how often to ask the vault', '60')
    .option('--json', 'with --once: print what ran as JSON')
    .action(async (o: { once?: boolean; interval: string; json?: boolean }) => {
      const { state, client } = await agentContext(g());
      const { runDaemon, runDueOnce } = await import('../agent/daemon.js');
      const seconds = Number(o.interval);
      if (!Number.isFinite(seconds) || seconds < 1 || seconds > 86_400) throw new CoffreError('InvalidArgument', '--interval must be 1 to 86400 seconds');
      const log = (line: string) => { if (!o.json) process.stderr.write(`${new Date().toISOString()} ${line}\n`); };
      const opts = { client, state, agentDir: agentDirOf(g()), log };
      if (o.once) {
        const ran = await runDueOnce(opts);
        // Restores asked for from the dashboard, after the backups (entries with `restoreRequest`).
        const restored = await (await import('../agent/restore-requests.js')).runRequestedRestores({ client, keys: state.keySet, log });
        if (o.json) {
          printJson([
            ...ran.map((r) => ({ item: r.item, scheduledAt: r.scheduledAt, pointId: r.result?.point.id ?? null, jobId: r.result?.jobId ?? null, error: r.error ?? null })),
            ...restored.map((r) => ({ item: r.item, restoreRequest: r.request, pointId: r.pointId, jobId: r.jobId, status: r.status, error: r.error ?? null })),
          ]);
        } else if (ran.length === 0 && restored.length === 0) process.stdout.write('nothing is due\n');
        if (ran.some((r) => r.error) || restored.some((r) => r.error || r.status === 'Failed')) process.exitCode = 1;
        return;
      }
      const controller = new AbortController();
      process.on('SIGINT', () => controller.abort());
      process.on('SIGTERM', () => controller.abort());
      log(`agent ${state.machine} polling ${client.server} every ${seconds} s`);
      // `coffre vm backup` on this machine asks this process (its control socket) rather than starting the engine itself.
      const [{ startControlServer }, service] = await Promise.all([import('../agent/control/control-server.js'), import('./agent-service.js')]);
      const control = await startControlServer(opts.agentDir, (request, reply) => service.serveRequest(request, opts, reply), log);
      // Only a head start: a VM configuration it cannot read is the backup's to report, not the daemon's.
      if (control) await service.warmUp(opts.agentDir).catch((e: unknown) => log(`VM engine not warmed up: ${(e as Error).message}`));
      try {
        await runDaemon({ ...opts, intervalMs: seconds * 1000, signal: controller.signal });
      } finally {
        await control?.close();
      }
    });

  addSnapshotOptions(program.command('backup <path...>')
    .description('back up files and folders now (incremental: only what changed is read and sent)')
    .requiredOption('--item <name>', 'protected item the backup belongs to (created on first use)')
    .option('--exclude <glob>', 'skip paths matching this glob (repeatable), e.g. "*.tmp" or "node_modules"', collect, [])
    .option('--retain-until <date>', 'keep this on-demand point until this day (YYYY-MM-DD; default: 30 days)', retainUntil)
    .option('--json', 'print the job as JSON'))
    .action(async (paths: string[], o: SnapshotFlags & { item: string; exclude: string[]; retainUntil?: string; json?: boolean }) => {
      const snapshot = await snapshotOptionsFrom(o);
      const { state, client } = await agentContext(g());
      const { backupFiles } = await import('../agent/snapshot/snapshot-backup.js');
      const bar = progressBar(!o.json, 'backup');
      let result;
      try {
        result = await backupFiles({
          client, containerId: state.containerId, keys: state.keySet, agentDir: agentDirOf(g()), vaultId: state.vaultId,
          item: o.item, paths, excludes: o.exclude, kind: 'OnDemand', ...(o.retainUntil ? { retainUntil: o.retainUntil } : {}), onProgress: (c) => bar.update(c),
          ...snapshot,
        });
      } finally {
        bar.stop();
      }
      const job = await client.getJob(result.jobId);
      if (o.json) printJson(job);
      else process.stdout.write(`${jobSummary(job)}\n${jobNotes(job)}  point ${result.point.id}: ${result.point.files} files, ${formatBytes(result.point.bytes)}, ${result.point.consistency}-consistent, kept until ${result.point.expiresAt}\n`);
      if (job.status === 'CompletedWithWarnings') process.exitCode = EXIT_WARNINGS;
    });

  program.command('points')
    .description('list recovery points, oldest first')
    .option('--item <name>', 'only this protected item')
    .option('--vault <name>', 'only this vault')
    .option('--json', 'print JSON')
    .action(async (o: { item?: string; vault?: string; json?: boolean }) => {
      const points = await (await adminClient(g())).listPoints({ ...(o.item ? { item: o.item } : {}), ...(o.vault ? { vault: o.vault } : {}) });
      if (o.json) printJson(points);
      else process.stdout.write(points.length ? pointsTable(points) + '\n' : 'no recovery points yet\n');
    });

  program.command('restore <point>')
    .description('restore a recovery point (or some paths of it) into a folder; every chunk is verified')
    .requiredOption('--target <dir>', 'folder to restore into (created if missing); nothing is written outside it')
    .option('--path <p>', 'restore only this path of the point, e.g. projects/src (repeatable)', collect, [])
    .addOption(new Option('--overwrite <policy>', 'when a file already exists in the target').choices(['skip', 'replace', 'rename']).default('rename'))
    .option('--numeric-owner', 'give files their recorded user and group ids, not the ids their recorded names have on this machine')
    .addOption(new Option('--from <region>', 'secondary: cross-region restore, reading only the paired region\'s copy (GRS vaults with cross-region restore)').choices(['primary', 'secondary']))
    .option('--json', 'print the job as JSON')
    .action(async (point: string, o: { target: string; path: string[]; overwrite: OverwritePolicy; numericOwner?: boolean; from?: 'primary' | 'secondary'; json?: boolean }) => {
      const { state, client } = await agentContext(g());
      const { restore } = await import('../agent/restore.js');
      const bar = progressBar(!o.json, 'restore');
      let result;
      try {
        result = await restore({
          client, keys: state.keySet, pointId: point, target: o.target, paths: o.path, overwrite: o.overwrite,
          numericOwner: o.numericOwner ?? false, ...(o.from === 'secondary' ? { from: 'secondary' as const } : {}), onProgress: (c) => bar.update(c),
        });
      } finally {
        bar.stop();
      }
      if (o.json) printJson(result.job);
      else process.stdout.write(`${jobSummary(result.job)}\n  restored point ${result.point.id} of ${result.point.item} into ${o.target}\n`);
      if (result.job.status === 'Failed') {
        process.stderr.write(`coffre: restore incomplete: ${result.errors.length} file(s) could not be restored (see above) [${result.errors[0]?.code ?? 'Failed'}]\n`);
        process.exitCode = 1;
      } else if (result.job.status === 'CompletedWithWarnings') process.exitCode = EXIT_WARNINGS;
    });

  program.command('jobs')
    .description('list jobs (backups, restores, verifications) with their progress')
    .option('--vault <name>', 'only this vault')
    .option('--json', 'print JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const jobs = await (await adminClient(g())).listJobs(o.vault);
      if (o.json) printJson(jobs);
      else process.stdout.write(jobs.length ? jobsTable(jobs) + '\n' : 'no jobs yet\n');
    });

  program.command('verify')
    .description('check every copy of every stored object (each zone, each region) against its checksum (no passphrase needed)')
    .option('--item <name>', 'only what this protected item uses')
    .option('--vault <name>', 'the vault to check')
    .option('--repair', 'rewrite missing or damaged copies from intact ones')
    .option('--json', 'print the job as JSON')
    .action(async (o: { item?: string; vault?: string; repair?: boolean; json?: boolean }) => {
      const job = await (await adminClient(g())).verify({ ...(o.item ? { item: o.item } : {}), ...(o.vault ? { vault: o.vault } : {}), ...(o.repair ? { repair: true } : {}) });
      if (o.json) printJson(job);
      else process.stdout.write(jobSummary(job) + '\n' + storeReports(job));
      if (job.status === 'Failed') {
        if (!o.json) process.stderr.write(`coffre: verification found ${job.errors.length} problem(s) [${job.errors[0]?.code ?? 'Failed'}]\n`);
        process.exitCode = 1;
      }
    });

  program.command('prune')
    .description('delete the recovery points whose retention has expired (administrators only)')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print the job as JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const job = await (await adminClient(g())).prune(o.vault);
      if (o.json) printJson(job);
      else process.stdout.write(`${jobSummary(job)}\n  points deleted: ${((job.details.pointsDeleted as string[] | undefined) ?? []).join(', ') || 'none'}\n`);
    });

  program.command('gc')
    .description('reclaim the space of chunks no live point uses (safe while backups run)')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print the job as JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const job = await (await adminClient(g())).gc(o.vault);
      if (o.json) printJson(job);
      else {
        const d = job.details as { blobsDeleted?: number; packsDeleted?: number; packsRewritten?: number; bytesFreed?: number };
        process.stdout.write(`${jobSummary(job)}\n  chunks deleted ${d.blobsDeleted ?? 0}, packs deleted ${d.packsDeleted ?? 0}, packs rewritten ${d.packsRewritten ?? 0}, freed ${formatBytes(d.bytesFreed ?? 0)}\n`);
      }
      if (job.status === 'Failed') process.exitCode = 1;
    });

  program.command('quickstart [folder]')
    .description('try everything on a temporary vault: back up a folder (or a generated one), restore it, verify it byte for byte')
    .action(async (folder?: string) => { await (await import('./quickstart.js')).quickstart(folder); });

  registerPolicyCommands(program, g);
  registerVmCommands(program, g);
  registerAccessCommands(program, g);
  registerDbCommands(program, g);
  registerMonitorCommands(program, g);
  registerBackupServerCommands(program, g, () => { serving = true; });
  return program;
}

/** Set by commands that keep running after their action returns (the server). */
let serving = false;

/**
 * Runs the command; returns true when the process must stay up (a server). Otherwise the
 * caller exits at once rather than waiting for idle keep-alive sockets to time out.
 */
export async function main(argv: string[]): Promise<boolean> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return serving;
  } catch (e) {
    const debug = argv.includes('--debug');
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) {
      // Commander already printed help or the usage error.
      process.exitCode = ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' || ce.code === 'commander.help' ? 0 : 2;
      return false;
    }
    if (e instanceof CoffreError) {
      process.stderr.write(`coffre: ${e.message} [${e.code}]\n`);
      if (debug) process.stderr.write(`${e.stack}\n`);
      process.exitCode = exitCodeFor(e.code);
      return false;
    }
    process.stderr.write(`coffre: unexpected error: ${(e as Error).message ?? String(e)} (run with --debug for details)\n`);
    if (debug) process.stderr.write(`${(e as Error).stack}\n`);
    process.exitCode = 1;
    return false;
  }
}
