/**
 * The Backup center on the command line: `coffre alerts` (and their settings), `coffre health`
 * (items with their health and recovery point objective), `coffre report`, and `coffre
 * request restore|list` (restores the item's agent carries out on its next poll).
 */
import { writeFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ALERT_RULES, type AlertInfo, type AlertRule, type AlertSettings, type RestoreRequestInfo } from '../core/monitor-api.js';
import { adminClient, type GlobalOptions } from './context.js';
import { formatBytes, printJson, table } from './output.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];
const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4 };

/** "500GiB", "2TB", "1048576", or "none" (kept as such: commander turns a parser's null into ''). */
export function size(value: string): number | 'none' {
  if (value === 'none') return 'none';
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidArgumentError('give a size such as 500GiB, 2TB or 1048576 (bytes), or none');
  return Math.round(Number(m[1]) * unit);
}

/** "15m", "2h", "900" (seconds), or "none". */
export function duration(value: string): number | 'none' {
  if (value === 'none') return 'none';
  const m = /^(\d+)\s*(s|m|h|d)?$/i.exec(value.trim());
  const seconds = m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's').toLowerCase() as 's' | 'm' | 'h' | 'd'] : 0;
  if (!m || seconds <= 0) throw new InvalidArgumentError('give a duration such as 15m, 2h or 900 (seconds), or none');
  return seconds;
}

function rule(value: string): AlertRule {
  if (!(ALERT_RULES as readonly string[]).includes(value)) throw new InvalidArgumentError(`rules are ${ALERT_RULES.join(', ')}`);
  return value as AlertRule;
}

const at = (iso: string | null) => (iso ? iso.replace('T', ' ').slice(0, 19) : '');

function alertsTable(alerts: AlertInfo[]): string {
  return table(['id', 'state', 'severity', 'rule', 'vault', 'item', 'raised', 'resolved', 'seen', 'summary'],
    alerts.map((a) => [a.id, a.state, a.severity, a.rule, a.vault ?? '', a.item ?? '', at(a.raisedAt), at(a.resolvedAt), a.occurrences, a.summary]));
}

function settingsText(s: AlertSettings): string {
  const lines = [`webhooks: ${s.webhooks.length ? s.webhooks.map((w) => `${w.url}${w.secret ? ' (signed)' : ''}`).join(', ') : 'none'}`];
  lines.push(`storage threshold: ${s.storageThresholdBytes === null ? 'none' : formatBytes(s.storageThresholdBytes)}`);
  for (const [v, n] of Object.entries(s.vaultStorageThresholdBytes)) lines.push(`  vault ${v}: ${formatBytes(n)}`);
  lines.push(`replication lag allowed: ${s.replicationLagSeconds === null ? 'any (no alert)' : `${s.replicationLagSeconds} s`}`);
  lines.push(`rules: ${ALERT_RULES.map((r) => `${r}${s.disabledRules.includes(r) ? ' (disabled)' : ''}`).join(', ')}`);
  return lines.join('\n');
}

function requestsTable(list: RestoreRequestInfo[]): string {
  return table(['id', 'state', 'item', 'machine', 'point', 'target', 'requested', 'by', 'job', 'error'],
    list.map((r) => [r.id, r.state, r.item, r.machine, r.pointId, r.target, at(r.requestedAt), r.requestedBy, r.jobId ?? '', r.error ?? '']));
}

export function registerMonitorCommands(program: Command, g: () => GlobalOptions): void {
  const alerts = program.command('alerts')
    .description('list alerts (failed jobs, missed schedules, RPO breaches, verify failures, storage above a threshold, replication lag)')
    .option('--all', 'resolved alerts too, not only active ones')
    .option('--json', 'print JSON')
    .action(async (o: { all?: boolean; json?: boolean }) => {
      const list = await (await adminClient(g())).alerts(o.all ?? false);
      if (o.json) printJson(list);
      else process.stdout.write(list.length ? alertsTable(list) + '\n' : `no ${o.all ? '' : 'active '}alerts\n`);
    });
  // Commander gives `--json` after a subcommand to the parent that also has it: both count.
  const json = () => alerts.opts<{ json?: boolean }>().json === true;
  alerts.command('show <id>')
    .description('an alert and its webhook notifications (attempts, delivery)')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await (await adminClient(g())).alert(id);
      if (o.json || json()) printJson(r);
      else {
        process.stdout.write(`${alertsTable([r.alert])}\n`);
        process.stdout.write(r.notifications.length ? table(['notification', 'event', 'url', 'attempts', 'delivered', 'next try', 'last error'],
          r.notifications.map((n) => [n.id, n.event, n.url, n.attempts, at(n.deliveredAt) || (n.gaveUpAt ? `gave up ${at(n.gaveUpAt)}` : ''), n.deliveredAt ? '' : at(n.nextAttemptAt), n.lastError ?? ''])) + '\n' : 'no webhook notifications (no webhook was set)\n');
      }
    });
  alerts.command('config')
    .description('show or change alert settings: webhooks (JSON POST per state change, retried), storage thresholds, replication lag, rules')
    .option('--webhook <url>', 'add a webhook (repeatable)', collect, [])
    .option('--webhook-secret <secret>', 'sign the bodies sent to the webhooks added now (x-coffre-signature: sha256=HMAC)')
    .option('--remove-webhook <url>', 'remove a webhook (repeatable)', collect, [])
    .option('--storage-threshold <size>', 'alert when a vault stores more (e.g. 500GiB), or none', size)
    .option('--vault <name>', 'with --storage-threshold: only for this vault')
    .option('--replication-lag <duration>', 'alert when a GRS vault\'s oldest copy owed to its paired region waited longer (e.g. 15m, 2h; default 1h), or none', duration)
    .addOption(new Option('--disable <rule>', `turn a rule off (repeatable): ${ALERT_RULES.join(', ')}`).argParser((v: string, prev: AlertRule[] = []) => [...prev, rule(v)]))
    .addOption(new Option('--enable <rule>', 'turn a rule back on (repeatable)').argParser((v: string, prev: AlertRule[] = []) => [...prev, rule(v)]))
    .option('--json', 'print the settings as JSON')
    .action(async (o: { webhook: string[]; webhookSecret?: string; removeWebhook: string[]; storageThreshold?: number | 'none'; vault?: string; replicationLag?: number | 'none'; disable?: AlertRule[]; enable?: AlertRule[]; json?: boolean }) => {
      const client = await adminClient(g());
      let s = await client.alertSettings();
      const changing = o.webhook.length || o.removeWebhook.length || o.storageThreshold !== undefined || o.replicationLag !== undefined || o.disable?.length || o.enable?.length;
      if (changing) {
        const webhooks = s.webhooks.filter((w) => !o.removeWebhook.includes(w.url) && !o.webhook.includes(w.url));
        webhooks.push(...o.webhook.map((url) => ({ url, ...(o.webhookSecret ? { secret: o.webhookSecret } : {}) })));
        const vaultThresholds = { ...s.vaultStorageThresholdBytes };
        let threshold = s.storageThresholdBytes;
        if (o.storageThreshold !== undefined) {
          const bytes = o.storageThreshold === 'none' ? null : o.storageThreshold;
          if (o.vault) {
            if (bytes === null) delete vaultThresholds[o.vault];
            else vaultThresholds[o.vault] = bytes;
          } else threshold = bytes;
        }
        const disabled = new Set(s.disabledRules);
        for (const r of o.disable ?? []) disabled.add(r);
        for (const r of o.enable ?? []) disabled.delete(r);
        const replicationLagSeconds = o.replicationLag === undefined ? s.replicationLagSeconds : o.replicationLag === 'none' ? null : o.replicationLag;
        s = await client.setAlertSettings({ webhooks, storageThresholdBytes: threshold, vaultStorageThresholdBytes: vaultThresholds, replicationLagSeconds, disabledRules: [...disabled] });
      }
      if (o.json || json()) printJson(s);
      else process.stdout.write(settingsText(s) + '\n');
    });

  program.command('health')
    .description('every protected item with its health, last backup, next run and recovery point objective')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const items = await (await adminClient(g())).itemHealth();
      if (o.json) printJson(items);
      else if (items.length === 0) process.stdout.write('no protected items yet\n');
      else {
        process.stdout.write(table(['item', 'vault', 'machine', 'kind', 'policy', 'health', 'last backup', 'next run', 'rpo', 'points'],
          items.map((s) => [s.name, s.vault, s.machine, s.kind, s.policy, s.health, s.lastBackup ? `${at(s.lastBackup.startTime)} ${s.lastBackup.status}` : '',
            at(s.nextRun), s.rpo.state, s.points])) + '\n');
        for (const s of items) for (const r of s.reasons) process.stdout.write(`  ${s.name}: ${r}\n`);
      }
    });

  program.command('report')
    .description('backup report per vault and item over a period: success rate, data protected, stored size and growth, dedup and compression')
    .option('--vault <name>', 'only this vault')
    .option('--item <name>', 'only this item')
    .option('--from <date>', 'start (YYYY-MM-DD or ISO instant; default: 30 days before --to)')
    .option('--to <date>', 'end, included when a date (default: now)')
    .option('--json', 'print JSON')
    .option('--csv', 'print CSV (one row per vault and per item)')
    .option('--out <file>', 'write the JSON or CSV to this file instead of stdout')
    .action(async (o: { vault?: string; item?: string; from?: string; to?: string; json?: boolean; csv?: boolean; out?: string }) => {
      const client = await adminClient(g());
      const q = { ...(o.vault ? { vault: o.vault } : {}), ...(o.item ? { item: o.item } : {}), ...(o.from ? { from: o.from } : {}), ...(o.to ? { to: o.to } : {}) };
      const emit = (text: string) => { if (o.out) writeFileSync(o.out, text); else process.stdout.write(text); };
      if (o.csv) return emit(await client.reportCsv(q));
      const r = await client.report(q);
      if (o.json || o.out) return emit(JSON.stringify(r, null, 2) + '\n');
      const pct = (x: number | null) => (x === null ? '' : `${(x * 100).toFixed(1)}%`);
      const x = (v: number | null) => (v === null ? '' : `${v.toFixed(2)}x`);
      process.stdout.write(`report from ${r.from} to ${r.to}\n` + table(['vault', 'item', 'backups', 'failed', 'success', 'protected', 'stored', 'growth', 'dedup', 'compression', 'points'],
        r.rows.map((row) => [row.vault, row.item ?? '(vault)', row.backups.total, row.backups.failed, pct(row.successRate), formatBytes(row.protectedBytes),
          row.storedBytesEnd === null ? '' : formatBytes(row.storedBytesEnd), row.storedGrowthBytes === null ? '' : formatBytes(row.storedGrowthBytes), x(row.dedupRatio), x(row.compressionRatio), row.points])) + '\n');
    });

  // "Back up now" is `coffre item backup`; a restore on the item's own machine is asked here.
  const request = program.command('request').description('ask an item\'s agent for a restore on its machine (it runs on the agent\'s next poll of `coffre agent run`)');
  request.command('restore <point>')
    .description('restore a point on its machine, into a folder of that machine')
    .requiredOption('--target <dir>', 'absolute folder on the item\'s machine')
    .option('--path <p>', 'only this path of the point (repeatable)', collect, [])
    .addOption(new Option('--overwrite <policy>', 'when a file already exists in the target').choices(['skip', 'replace', 'rename']).default('rename'))
    .option('--json', 'print JSON')
    .action(async (point: string, o: { target: string; path: string[]; overwrite: string; json?: boolean }) => {
      const r = await (await adminClient(g())).requestRestore({ point, target: o.target, overwrite: o.overwrite, ...(o.path.length ? { paths: o.path } : {}) });
      if (o.json) printJson(r);
      else process.stdout.write(`restore request ${r.id}: point ${r.pointId} of ${r.item} into ${r.target} on ${r.machine}; its agent runs it on its next poll\n`);
    });
  request.command('list')
    .description('restore requests and their state')
    .option('--item <name>', 'only this item')
    .option('--json', 'print JSON')
    .action(async (o: { item?: string; json?: boolean }) => {
      const list = await (await adminClient(g())).restoreRequests(o.item);
      if (o.json) printJson(list);
      else process.stdout.write(list.length ? requestsTable(list) + '\n' : 'no restore requests\n');
    });
}
