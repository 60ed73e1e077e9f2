/** `coffre db ...`: protect a PostgreSQL database, back it up (full, differential, log), list its ranges, restore it to a second. */
import { chownSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type { DbBackupType } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { agentContext, agentDirOf, type GlobalOptions } from './context.js';
import { formatBytes, jobSummary, printJson, progressBar, table } from './output.js';
import { retainUntil } from './arguments.js';

const EXIT_WARNINGS = 4;

/** The database engine and the pg driver load only for these commands. */
const dbEngine = () => import('../agent/db/engine.js');
// A restore needs neither the `pg` driver nor the backup code the engine also loads (~0.1 s of start-up).
const dbRestore = () => import('../agent/db/db-restore.js');

function backupType(v: string): DbBackupType {
  const t = { full: 'Full', diff: 'Differential', differential: 'Differential', log: 'Log' }[v.toLowerCase()];
  if (!t) throw new InvalidArgumentError('use full, diff or log');
  return t as DbBackupType;
}

/** Where archive_command spools WAL unless told: a system folder when the agent is root, else the agent folder. */
function defaultSpool(agentDir: string, name: string): string {
  return process.getuid?.() === 0 ? join('/var/lib/coffre/wal-spool', name) : join(agentDir, 'db', 'spool', name);
}

export function registerDbCommands(program: Command, g: () => GlobalOptions): Command {
  const db = program.command('db').description('PostgreSQL: full, differential and log backups, point-in-time restore to the second');

  db.command('protect <name>')
    .description('protect a PostgreSQL cluster of this machine: checks version, wal_level, archiving and rights, and says what to change')
    .requiredOption('--connection <url>', 'connection URL, e.g. postgres://postgres@127.0.0.1:5432/postgres (a superuser, or a role with pg_backup_start/stop, pg_switch_wal and pg_read_all_settings)')
    .option('--data-dir <dir>', 'the cluster\'s data folder (default: as the server reports it)')
    .option('--policy <name>', 'a database policy of the vault (default: DefaultDatabasePolicy)')
    .option('--spool-dir <dir>', 'where archive_command keeps WAL until a log backup sends it (default: /var/lib/coffre/wal-spool/NAME as root)')
    .option('--json', 'print the settings as JSON')
    .action(async (name: string, o: { connection: string; dataDir?: string; policy?: string; spoolDir?: string; json?: boolean }) => {
      const e = await dbEngine();
      e.checkDbName(name);
      const agentDir = agentDirOf(g());
      const { client } = await agentContext(g());
      const spoolDir = resolve(o.spoolDir ?? defaultSpool(agentDir, name));
      const pgc = await e.connect(o.connection);
      let facts;
      try { facts = await e.serverFacts(pgc); } finally { await pgc.end().catch(() => undefined); }
      const dataDir = o.dataDir ? resolve(o.dataDir) : facts.dataDirectory;
      if (!dataDir) throw new CoffreError('InvalidArgument', `the role ${facts.role} may not read data_directory: give --data-dir, or GRANT pg_read_all_settings TO ${facts.role}`);
      const problems = [...e.readinessProblems(facts, spoolDir, dataDir), ...await e.dataDirProblems(dataDir)];
      if (problems.length) throw e.notReady(name, problems);
      // The spool belongs to the database's system user: archive_command runs as that user.
      mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
      const owner = statSync(dataDir);
      if (process.getuid?.() === 0) chownSync(spoolDir, owner.uid, owner.gid);
      const r = await client.dbProtect(name, o.policy);
      const previous = await e.loadDbConfig(agentDir, name);
      const now = new Date().toISOString();
      const config = {
        version: 1 as const, name, connection: o.connection, dataDir, spoolDir, walSegmentSize: facts.walSegmentSize,
        ...(o.policy ? { policy: o.policy } : {}), createdAt: previous?.createdAt ?? now, updatedAt: now,
      };
      await e.saveDbConfig(agentDir, config);
      if (o.json) { printJson({ ...config, connection: e.redact(config.connection), item: r.item, created: r.created, server: facts.version, policyNote: r.policyNote }); return; }
      process.stdout.write([
        `protected PostgreSQL ${facts.version} as ${name} (policy ${r.item.policy})`,
        `  data folder ${dataDir}; WAL spool ${spoolDir} (${formatBytes(facts.walSegmentSize)} segments)`,
        ...(r.policyNote ? [`  ${r.policyNote}`] : []),
        `  back it up with \`coffre db backup ${name} --type full\`, then logs with --type log (or \`coffre agent run\` on the policy's schedule)`,
      ].join('\n') + '\n');
    });

  db.command('archive-wal <path> <file>')
    .description('archive_command: make one WAL file durable in the spool (PostgreSQL runs it; exit 0 only once durable)')
    .requiredOption('--spool <dir>', 'the spool folder `coffre db protect` chose')
    .action(async (path: string, file: string, o: { spool: string }) => {
      (await import('../agent/db/spool.js')).archiveWal(o.spool, path, file);
    });

  db.command('list')
    .description('list the databases protected on this machine')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const e = await dbEngine();
      const all = (await e.listDbConfigs(agentDirOf(g()))).map((c) => ({ ...c, connection: e.redact(c.connection) }));
      if (o.json) { printJson(all); return; }
      process.stdout.write(all.length ? table(['name', 'connection', 'data folder', 'spool'], all.map((c) => [c.name, c.connection, c.dataDir, c.spoolDir])) + '\n'
        : 'no database is protected on this machine; run `coffre db protect NAME --connection URL`\n');
    });

  db.command('backup <name>')
    .description('back up a protected database now: full (whole cluster + its WAL), diff (pages changed since the last full) or log (WAL since the last log backup)')
    .requiredOption('--type <type>', 'full, diff or log', backupType)
    .option('--retain-until <date>', 'keep an on-demand full until this day (YYYY-MM-DD; default: 30 days)', retainUntil)
    .option('--json', 'print the job as JSON')
    .action(async (name: string, o: { type: DbBackupType; retainUntil?: string; json?: boolean }) => {
      const e = await dbEngine();
      const agentDir = agentDirOf(g());
      const config = await e.requireDbConfig(agentDir, name);
      const { state, client } = await agentContext(g());
      const bar = progressBar(!o.json, `db ${name} ${o.type.toLowerCase()}`);
      let result;
      try {
        result = await e.backupDb({
          client, containerId: state.containerId, keys: state.keySet, agentDir, vaultId: state.vaultId, config, kind: 'OnDemand',
          ...(o.retainUntil ? { retainUntil: o.retainUntil } : {}), onProgress: (c) => bar.update(c),
        }, o.type);
      } finally {
        bar.stop();
      }
      const job = await client.getJob(result.jobId);
      if (o.json) { printJson({ ...job, point: result.point }); return; }
      const d = result.database;
      const span = d.type === 'Log' ? `restorable ${d.from} to ${d.to}` : `consistent at ${d.consistentAt}`;
      process.stdout.write(`${jobSummary(job)}\n  ${d.type} point ${result.point.id}: ${span}, WAL segments ${d.firstSegment}-${d.lastSegment} (timeline ${d.timeline}), kept until ${result.point.expiresAt}\n`);
      if (job.status === 'CompletedWithWarnings') process.exitCode = EXIT_WARNINGS;
    });

  db.command('ranges <name>')
    .description('the continuous time ranges the database can be restored to, to the second (end exclusive)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const { client } = await agentContext(g());
      const ranges = await client.dbRanges(name);
      if (o.json) { printJson(ranges); return; }
      process.stdout.write(ranges.length ? table(['from', 'to (exclusive)', 'timeline'], ranges.map((r) => [r.from, r.to, r.timeline])) + '\n'
        : `no restorable range yet: ${name} needs a full backup followed by log backups\n`);
    });

  db.command('restore <name>')
    .description('write a data folder that `pg_ctl -D DIR start` recovers to exactly the chosen second and promotes')
    .requiredOption('--target <dir>', 'a new or empty folder for the restored data folder')
    .option('--time <iso>', 'restore every transaction committed up to this instant, e.g. 2026-03-01T12:34:56Z')
    .option('--point <id>', 'restore a point: a full or differential to its end, a log point to the end of its WAL')
    .option('--latest', 'restore the most recent restorable state')
    .option('--keep-archiving', 'keep archive_mode as the database had it (by default the restored copy does not archive)')
    .option('--json', 'print the job as JSON')
    .action(async (name: string, o: { target: string; time?: string; point?: string; latest?: boolean; keepArchiving?: boolean; json?: boolean }) => {
      if ([o.time, o.point, o.latest].filter((x) => x !== undefined).length !== 1) throw new CoffreError('InvalidArgument', 'give exactly one of --time ISO, --point ID or --latest');
      const e = await dbRestore();
      const { state, client } = await agentContext(g());
      const bar = progressBar(!o.json, `db restore ${name}`);
      let r;
      try {
        r = await e.restoreDb({
          client, keys: state.keySet, item: name, target: o.target, ...(o.time ? { time: o.time } : {}), ...(o.point ? { pointId: o.point } : {}),
          latest: o.latest ?? false, keepArchiving: o.keepArchiving ?? false, onProgress: (c) => bar.update(c),
        });
      } finally {
        bar.stop();
      }
      if (o.json) { printJson({ ...r.job, plan: r.plan, target: r.target, recoveryTarget: r.recoveryTarget }); return; }
      process.stdout.write([
        jobSummary(r.job),
        `  restored ${name} into ${r.target}: full ${r.plan.full}${r.plan.differential ? ` + differential ${r.plan.differential}` : ''} + ${r.plan.logs.length} log point(s); recovery target: ${r.recoveryTarget}`,
        `  start it (as the database's system user): pg_ctl -D ${r.target} start   — it replays to the target and promotes`,
        `  then remove the recovery lines at the end of postgresql.auto.conf and the ${e.RESTORE_WAL_DIR} folder`,
      ].join('\n') + '\n');
    });
  return db;
}
