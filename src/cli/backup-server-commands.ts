/**
 * `coffre backup-server run|status|throttle`, `coffre group ...`, `coffre online copy|copies`,
 * and `coffre vault servers|unregister-server`: the two-tier architecture from the command line.
 * Parsing and printing only; the backup server and the vault decide. Commands about groups,
 * copies and the bandwidth speak to the backup server (it is a vault service: --server,
 * --token, or its ./coffre-data); `vault servers` speaks to the vault.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseCredentials, defaultMachineName } from '../agent/register.js';
import type { GroupInfo, OnlineCopyInfo, ServerInfo, ThrottleInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { formatRate, parseRate } from '../policy/bandwidth.js';
import { WEEK_DAYS } from '../policy/policy.js';
import { adminClient, type GlobalOptions } from './context.js';
import { formatBytes, printJson, table } from './output.js';

const short = (iso: string | null | undefined) => (iso ? iso.slice(0, 19).replace('T', ' ') : '');

function copyLine(c: OnlineCopyInfo | null): string {
  if (!c) return 'none yet';
  const what = c.status === 'Completed' ? `${c.chunksSent}/${c.chunksTotal} chunks sent, ${formatBytes(c.bytesSent)}` : c.error ? `${c.error.code}: ${c.error.message}` : '';
  return `${c.status} ${short(c.endTime ?? c.startTime)}${what ? ` (${what})` : ''}`;
}

function groupsTable(groups: GroupInfo[]): string {
  const rows = groups.flatMap((g) => (g.items.length ? g.items : [null]).map((i) => [
    g.name, g.shortTermPolicy, g.onlinePolicy, i ? `${i.machine}/${i.item}` : '(no items)', i?.kind ?? '', i?.shortTermPoints ?? '', short(i?.lastShortTermPoint),
    short(i?.nextOnlineRun), i ? copyLine(i.lastCopy) : '',
  ]));
  return table(['group', 'short-term', 'online', 'item', 'kind', 'points', 'last point', 'next online', 'last online copy'], rows);
}

function copiesTable(copies: OnlineCopyInfo[]): string {
  return table(['job', 'item', 'point', 'point time', 'status', 'chunks sent', 'present', 'sent', 'throttled', 'started'],
    copies.map((c) => [c.jobId, `${c.machine}/${c.item}`, c.point, short(c.pointTime), c.status, `${c.chunksSent}/${c.chunksTotal}`, c.chunksPresent,
      formatBytes(c.bytesSent), `${(c.throttledMs / 1000).toFixed(1)}s`, short(c.startTime)]));
}

function throttleText(t: ThrottleInfo): string {
  const s = t.schedule;
  return [
    `work hours   ${s.workStart}-${s.workEnd} ${s.timeZone} on ${s.workDays.join(', ') || 'no day'}: ${formatRate(s.workBytesPerSecond)}`,
    `other hours  ${formatRate(s.otherBytesPerSecond)}`,
    `now          ${formatRate(t.now.bytesPerSecond)} (${t.now.workHours ? 'work hours' : 'other hours'}${t.now.until ? `, until ${short(t.now.until)} UTC` : ''})`,
  ].join('\n');
}

function serversText(servers: ServerInfo[]): string {
  if (servers.length === 0) return 'no backup server is registered with this vault';
  const rows = servers.flatMap((s) => {
    const groupOf = new Map<string, { group: string; copy: OnlineCopyInfo | null }>(s.groups.flatMap((g) => g.items.map((i): [string, { group: string; copy: OnlineCopyInfo | null }] => [`${i.machine}/${i.item}`, { group: g.name, copy: i.lastCopy }])));
    const items = s.machines.flatMap((m) => m.items.map((i) => ({ key: `${m.machine}/${i.item}` as string, i })));
    return (items.length ? items : [null]).map((x) => [
      s.name, short(s.reportedAt) || 'never', x ? groupOf.get(x.key)?.group ?? '' : '', x?.key ?? '(no machines yet)', x?.i.kind ?? '', x?.i.policy ?? '',
      x?.i.onlinePoints ?? '', short(x?.i.lastOnlinePoint), x ? copyLine(groupOf.get(x.key)?.copy ?? null) : '',
    ]);
  });
  return table(['server', 'reported', 'group', 'item', 'kind', 'online policy', 'online points', 'last online point', 'last copy'], rows);
}

/** `--work-days`: names separated by commas, or weekdays / all / none. */
function workDays(value: string): string[] {
  const v = value.trim().toLowerCase();
  if (v === 'weekdays') return ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday'];
  if (v === 'all') return [...WEEK_DAYS];
  if (v === 'none') return [];
  return value.split(',').map((d) => {
    const day = WEEK_DAYS.find((w) => w.toLowerCase() === d.trim().toLowerCase() || w.slice(0, 3).toLowerCase() === d.trim().toLowerCase());
    if (!day) throw new CoffreError('InvalidArgument', `--work-days: ${d} is not a day; write e.g. Monday,Tuesday or weekdays, all, none`);
    return day;
  });
}

interface RunConfig {
  data?: string; listen?: string; name?: string; vaultCredentials?: string; intervalSeconds?: number; throttle?: unknown;
  packBytes?: number; tlsCert?: string; tlsKey?: string; insecureHttp?: boolean;
}

function readConfig(file: string): RunConfig {
  let c: unknown;
  try {
    c = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CoffreError('InvalidArgument', `cannot read the configuration ${file}: ${(e as Error).message}`);
  }
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new CoffreError('InvalidArgument', `${file} must hold a JSON object`);
  const known = new Set(['data', 'listen', 'name', 'vaultCredentials', 'intervalSeconds', 'throttle', 'packBytes', 'tlsCert', 'tlsKey', 'insecureHttp']);
  const unknown = Object.keys(c).filter((k) => !known.has(k));
  if (unknown.length) throw new CoffreError('InvalidArgument', `${file}: unknown setting(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  return c as RunConfig;
}

export function registerBackupServerCommands(program: Command, g: () => GlobalOptions, serving: () => void): void {
  const client = () => adminClient(g());
  const bs = program.command('backup-server').description('a backup server: short-term protection on its own disk, online copies to a vault');

  bs.command('run')
    .description('run the backup server: a vault service for its agents, plus online copies to the vault it is registered with')
    .option('--data <dir>', 'data folder: store, catalog, admin token, certificate, link to the vault (default: coffre-data)')
    .option('--vault-credentials <file>', 'vault credentials (from `coffre vault credentials VAULT` on the vault); needed at the first start only')
    .option('--name <name>', 'this server\'s name in the vault, and the name of its own vault (default: the host name)')
    .option('--listen <host:port>', 'address to listen on (default: 127.0.0.1:7070)')
    .option('--config <file>', 'a JSON file with these settings (data, listen, name, vaultCredentials, intervalSeconds, throttle, packBytes, tlsCert, tlsKey, insecureHttp); flags win')
    .option('--interval <seconds>', 'how often due online copies are looked for (default: 60)')
    .option('--tls-cert <file>', 'PEM certificate to serve (default: a self-signed one made on first start)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--insecure-http', 'serve plain HTTP (loopback addresses only)')
    .action(async (o: { data?: string; vaultCredentials?: string; name?: string; listen?: string; config?: string; interval?: string; tlsCert?: string; tlsKey?: string; insecureHttp?: boolean }) => {
      const c: RunConfig = o.config ? readConfig(o.config) : {};
      const credentialsFile = o.vaultCredentials ?? c.vaultCredentials;
      let credentials;
      if (credentialsFile) {
        let text: string;
        try { text = readFileSync(credentialsFile, 'utf8'); } catch (e) { throw new CoffreError('InvalidArgument', `cannot read ${credentialsFile}: ${(e as Error).message}`); }
        credentials = parseCredentials(text);
      }
      const interval = Number(o.interval ?? c.intervalSeconds ?? 60);
      if (!Number.isFinite(interval) || interval < 1 || interval > 86_400) throw new CoffreError('InvalidArgument', '--interval must be 1 to 86400 seconds');
      const data = o.data ?? c.data ?? 'coffre-data';
      const { loadLink } = await import('../backup-server/upstream.js');
      const name = o.name ?? c.name ?? (await loadLink(data))?.name ?? defaultMachineName();
      const { startBackupServer } = await import('../backup-server/backup-server.js');
      const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      const tlsCert = o.tlsCert ?? c.tlsCert;
      const tlsKey = o.tlsKey ?? c.tlsKey;
      const s = await startBackupServer({
        dataDir: data, name, intervalMs: interval * 1000, log, ...(credentials ? { credentials } : {}),
        ...(o.listen ?? c.listen ? { listen: o.listen ?? c.listen } : {}), ...(c.throttle !== undefined ? { throttle: c.throttle } : {}),
        ...(c.packBytes ? { packBytes: c.packBytes } : {}), ...(tlsCert ? { tlsCert } : {}), ...(tlsKey ? { tlsKey } : {}),
        ...(o.insecureHttp ?? c.insecureHttp ? { insecureHttp: true } : {}),
      });
      serving();
      process.stderr.write(`coffre backup server ${s.name} listening on ${s.url}\n  data folder: ${s.server.dataDir}\n  admin token: ${s.server.dataDir}/admin.token\n`
        + (s.fingerprint ? `  certificate fingerprint (SHA-256): ${s.fingerprint}\n` : '')
        + `  its vault (agents register with it): ${s.vault.name}\n  online copies to vault ${s.link.vault} at ${s.link.server}\n`);
      const stop = () => { void s.close().then(() => process.exit(0)); };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });

  bs.command('status')
    .description('the backup server, its vault, the bandwidth limit now, groups and copies in progress')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const s = await (await client()).backupServerStatus();
      if (o.json) return printJson(s);
      process.stdout.write([
        `backup server ${s.name} (its vault: ${s.localVault})`,
        `  vault        ${s.upstream.vault} at ${s.upstream.server}: ${s.upstream.reachable ? 'reachable' : `unreachable (${s.upstream.error})`}`,
        `  groups       ${s.groups}, copies in progress ${s.copiesInProgress}, last report ${short(s.lastReportAt) || 'none yet'}`,
        throttleText(s.throttle).replace(/^/gm, '  '),
      ].join('\n') + '\n');
    });

  bs.command('throttle')
    .description('show or set the bandwidth limits of online copies by the hours of the day (e.g. 20Mbit from 08:00 to 18:00 on weekdays)')
    .option('--work-days <days>', 'days with work hours: Monday,Tuesday,... or weekdays, all, none')
    .option('--work-hours <from-to>', 'work hours, e.g. 08:00-18:00 (in --time-zone)')
    .option('--work-rate <rate>', 'limit during work hours: 20Mbit, 2MiB, 512Kbit, bytes per second, or unlimited')
    .option('--other-rate <rate>', 'limit outside work hours (same forms)')
    .option('--time-zone <zone>', 'IANA time zone of the work hours, e.g. Europe/Paris')
    .option('--json', 'print JSON')
    .action(async (o: { workDays?: string; workHours?: string; workRate?: string; otherRate?: string; timeZone?: string; json?: boolean }) => {
      const c = await client();
      let t = await c.throttleSettings();
      if (o.workDays !== undefined || o.workHours !== undefined || o.workRate !== undefined || o.otherRate !== undefined || o.timeZone !== undefined) {
        const hours = o.workHours === undefined ? undefined : /^(\d{2}:\d{2})-(\d{2}:\d{2})$/.exec(o.workHours);
        if (hours === null) throw new CoffreError('InvalidArgument', '--work-hours is FROM-TO, e.g. 08:00-18:00');
        t = await c.setThrottle({
          ...t.schedule,
          ...(o.workDays !== undefined ? { workDays: workDays(o.workDays) } : {}),
          ...(hours ? { workStart: hours[1], workEnd: hours[2] } : {}),
          ...(o.workRate !== undefined ? { workBytesPerSecond: parseRate(o.workRate) } : {}),
          ...(o.otherRate !== undefined ? { otherBytesPerSecond: parseRate(o.otherRate) } : {}),
          ...(o.timeZone !== undefined ? { timeZone: o.timeZone } : {}),
        });
      }
      if (o.json) printJson(t);
      else process.stdout.write(throttleText(t) + '\n');
    });

  const group = program.command('group').description('protection groups of a backup server: items with a short-term and an online policy');
  group.command('create <name>')
    .description('create a protection group')
    .requiredOption('--short-term <policy>', 'a policy of the backup server: short-term backups to its disk (may run every few hours)')
    .requiredOption('--online <policy>', 'a policy of the vault: when online copies are made and how long the vault keeps them')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { shortTerm: string; online: string; json?: boolean }) => {
      const gi = await (await client()).createGroup({ name, shortTermPolicy: o.shortTerm, onlinePolicy: o.online });
      if (o.json) printJson(gi);
      else process.stdout.write(`created protection group ${gi.name}: short-term ${gi.shortTermPolicy} on the backup server, online ${gi.onlinePolicy} in the vault\n`);
    });
  group.command('add <name>')
    .description('add a machine\'s item (files, VM or database) to a group: it takes the group\'s short-term policy and online copies')
    .requiredOption('--machine <machine>', 'the machine, as registered with the backup server')
    .requiredOption('--item <item>', 'its item (backed up once to the backup server already)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { machine: string; item: string; json?: boolean }) => {
      const gi = await (await client()).addToGroup(name, o.machine, o.item);
      if (o.json) printJson(gi);
      else process.stdout.write(`${o.machine}/${o.item} is in protection group ${gi.name}; next online copy: ${short(gi.items.find((i) => i.item === o.item)?.nextOnlineRun) || 'when the vault\'s policy says'}\n`);
    });
  group.command('remove <name>')
    .description('take an item out of a group: no more online copies (its points and short-term policy stay)')
    .requiredOption('--item <item>', 'the item')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { item: string; json?: boolean }) => {
      const gi = await (await client()).removeFromGroup(name, o.item);
      if (o.json) printJson(gi);
      else process.stdout.write(`${o.item} left protection group ${gi.name}\n`);
    });
  group.command('list')
    .description('protection groups, their items, short-term points and online copies')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const gs = await (await client()).listGroups();
      if (o.json) printJson(gs);
      else process.stdout.write(gs.length ? groupsTable(gs) + '\n' : 'no protection group yet: create one with `coffre group create NAME --short-term POLICY --online POLICY`\n');
    });
  group.command('show <name>')
    .description('one protection group')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const gi = await (await client()).showGroup(name);
      if (o.json) printJson(gi);
      else process.stdout.write(groupsTable([gi]) + '\n');
    });
  group.command('delete <name>')
    .description('delete an empty protection group')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await (await client()).deleteGroup(name);
      if (o.json) printJson(r);
      else process.stdout.write(`deleted protection group ${r.deleted}\n`);
    });

  const online = program.command('online').description('online protection: copies of a backup server\'s points in its vault');
  online.command('copy')
    .description('copy an item\'s latest point (or --point) to the vault now; only what the vault lacks travels')
    .requiredOption('--item <item>', 'an item of a protection group')
    .option('--point <id>', 'this point (id or unique prefix) instead of the latest')
    .option('--json', 'print the copy as JSON')
    .action(async (o: { item: string; point?: string; json?: boolean }) => {
      const c = await (await client()).copyOnline(o.item, o.point);
      if (o.json) printJson(c);
      else process.stdout.write(`online copy of ${c.machine}/${c.item}, point ${c.point}: ${copyLine(c)}${c.chunksPresent ? `; ${c.chunksPresent} chunk(s) were in the vault already` : ''}\n`);
      if (c.status !== 'Completed') process.exitCode = 1;
    });
  online.command('copies')
    .description('online copies made, newest first')
    .option('--item <item>', 'only this item')
    .option('--json', 'print JSON')
    .action(async (o: { item?: string; json?: boolean }) => {
      const cs = await (await client()).listOnlineCopies(o.item);
      if (o.json) printJson(cs);
      else process.stdout.write(cs.length ? copiesTable(cs) + '\n' : 'no online copy yet\n');
    });

  // In the vault: the backup servers registered with it.
  const vault = program.commands.find((c) => c.name() === 'vault');
  if (!vault) throw new Error('the vault command must be registered before the backup server commands');
  vault.command('servers')
    .description('backup servers registered with a vault: their groups, items and online copies')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (o: { vault?: string; json?: boolean }) => {
      const c = await client();
      const name = o.vault ?? (await c.listVaults()).map((v) => v.name).find((_, __, all) => all.length === 1);
      if (!name) throw new CoffreError('InvalidArgument', 'several vaults exist (or none): name one with --vault');
      const ss = await c.listServers(name);
      if (o.json) printJson(ss);
      else process.stdout.write(serversText(ss) + '\n');
    });
  vault.command('unregister-server <name>')
    .description('forget a backup server: its key stops working; the machines it copied keep their points in the vault')
    .option('--vault <name>', 'the vault (default: the only one)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { vault?: string; json?: boolean }) => {
      const c = await client();
      const v = o.vault ?? (await c.listVaults()).map((x) => x.name).find((_, __, all) => all.length === 1);
      if (!v) throw new CoffreError('InvalidArgument', 'several vaults exist (or none): name one with --vault');
      const r = await c.unregisterServer(v, name);
      if (o.json) printJson(r);
      else process.stdout.write(`unregistered backup server ${r.server} from vault ${r.vault}; its ${r.machines} machine(s) keep their points (they register with the vault to restore)\n`);
    });
}

