/**
 * Backup reports, per vault and per item, over a period [from, to): backup success rate, data
 * protected, stored size and its growth, deduplication and compression ratios; as JSON or CSV.
 *
 * computeReport and reportCsv are pure (the numbers of a period in, the report out);
 * buildReport reads those numbers from the catalog. Ratios are of the period's backups:
 * deduplication = bytes read / bytes new (what the vault lacked), compression = bytes new /
 * bytes sent (compressed and encrypted), the same definitions as `coffre quickstart`. A vault's
 * stored size at an instant is its latest storage sample by then (storage-history.ts); items
 * share deduplicated chunks, so stored size is a vault figure and an item reports what its
 * backups sent.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import type { BackupCounts, Report, ReportRow } from '../core/monitor-api.js';
import { storedAt, vaultsNow } from './storage-history.js';
import { sees, type Visibility } from './visibility.js';

export interface ReportItem { id: string; name: string; vaultId: string; vault: string; machine: string; kind: string; policy: string }
export interface ReportBackup { itemId: string; status: string; startTime: string; bytesScanned: number; bytesNew: number; bytesUploaded: number }
export interface ReportPoints { itemId: string; count: number; latestBytes: number }
export interface ReportVault { id: string; name: string; createdAt: string; storedStart: number | null; storedEnd: number | null }

export interface ReportInput {
  from: string; to: string; generatedAt: string;
  items: ReportItem[]; backups: ReportBackup[]; points: ReportPoints[]; vaults: ReportVault[];
}

const ratio = (a: number, b: number): number | null => (b > 0 ? Math.round((a / b) * 1000) / 1000 : null);

interface Totals { backups: BackupCounts; bytesScanned: number; bytesNew: number; bytesUploaded: number; lastBackup: string | null }

function emptyTotals(): Totals {
  return { backups: { total: 0, succeeded: 0, withWarnings: 0, failed: 0 }, bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, lastBackup: null };
}

function add(t: Totals, b: ReportBackup): void {
  t.backups.total++;
  if (b.status === 'Completed') t.backups.succeeded++;
  else if (b.status === 'CompletedWithWarnings') t.backups.withWarnings++;
  else if (b.status === 'Failed' || b.status === 'Cancelled') t.backups.failed++;
  t.bytesScanned += b.bytesScanned;
  t.bytesNew += b.bytesNew;
  t.bytesUploaded += b.bytesUploaded;
  if (t.lastBackup === null || b.startTime > t.lastBackup) t.lastBackup = b.startTime;
}

function rates(t: Totals) {
  const ended = t.backups.succeeded + t.backups.withWarnings + t.backups.failed;
  return {
    backups: t.backups, successRate: ratio(t.backups.succeeded + t.backups.withWarnings, ended),
    bytesScanned: t.bytesScanned, bytesNew: t.bytesNew, bytesUploaded: t.bytesUploaded,
    dedupRatio: ratio(t.bytesScanned, t.bytesNew), compressionRatio: ratio(t.bytesNew, t.bytesUploaded), lastBackup: t.lastBackup,
  };
}

export function computeReport(input: ReportInput): Report {
  const perItem = new Map(input.items.map((i) => [i.id, emptyTotals()]));
  for (const b of input.backups) {
    if (b.startTime < input.from || b.startTime >= input.to) continue;
    const t = perItem.get(b.itemId);
    if (t) add(t, b);
  }
  const points = new Map(input.points.map((p) => [p.itemId, p]));
  const rows: ReportRow[] = [];
  for (const v of input.vaults) {
    const items = input.items.filter((i) => i.vaultId === v.id);
    const vt = emptyTotals();
    let protectedBytes = 0;
    let pointCount = 0;
    const itemRows: ReportRow[] = [];
    for (const i of items) {
      const t = perItem.get(i.id)!;
      const p = points.get(i.id);
      for (const k of ['total', 'succeeded', 'withWarnings', 'failed'] as const) vt.backups[k] += t.backups[k];
      vt.bytesScanned += t.bytesScanned; vt.bytesNew += t.bytesNew; vt.bytesUploaded += t.bytesUploaded;
      if (t.lastBackup && (vt.lastBackup === null || t.lastBackup > vt.lastBackup)) vt.lastBackup = t.lastBackup;
      protectedBytes += p?.latestBytes ?? 0;
      pointCount += p?.count ?? 0;
      itemRows.push({
        scope: 'item', vault: v.name, item: i.name, machine: i.machine, kind: i.kind, policy: i.policy, ...rates(t),
        protectedBytes: p?.latestBytes ?? 0, points: p?.count ?? 0, storedBytesStart: null, storedBytesEnd: null, storedGrowthBytes: null,
      });
    }
    // A vault created during the period started from nothing.
    const start = v.storedStart ?? (v.createdAt >= input.from ? 0 : null);
    rows.push({
      scope: 'vault', vault: v.name, item: null, machine: null, kind: null, policy: null, ...rates(vt), protectedBytes, points: pointCount,
      storedBytesStart: start, storedBytesEnd: v.storedEnd, storedGrowthBytes: start !== null && v.storedEnd !== null ? v.storedEnd - start : null,
    });
    rows.push(...itemRows);
  }
  return { from: input.from, to: input.to, generatedAt: input.generatedAt, rows };
}

export const CSV_COLUMNS = [
  'scope', 'vault', 'item', 'machine', 'kind', 'policy', 'backups', 'succeeded', 'withWarnings', 'failed', 'successRate',
  'protectedBytes', 'storedBytesStart', 'storedBytesEnd', 'storedGrowthBytes', 'bytesScanned', 'bytesNew', 'bytesUploaded',
  'dedupRatio', 'compressionRatio', 'points', 'lastBackup',
] as const;

/** RFC 4180: quoted when needed; a cell that a spreadsheet would read as a formula is prefixed with '. */
export function csvCell(value: string | number | null): string {
  if (value === null) return '';
  let s = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function reportCsv(report: Report): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of report.rows) {
    const cells: (string | number | null)[] = [
      r.scope, r.vault, r.item, r.machine, r.kind, r.policy, r.backups.total, r.backups.succeeded, r.backups.withWarnings, r.backups.failed, r.successRate,
      r.protectedBytes, r.storedBytesStart, r.storedBytesEnd, r.storedGrowthBytes, r.bytesScanned, r.bytesNew, r.bytesUploaded,
      r.dedupRatio, r.compressionRatio, r.points, r.lastBackup,
    ];
    lines.push(cells.map(csvCell).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

const DAY_MS = 86_400_000;
export const DEFAULT_REPORT_DAYS = 30;

/** A period from the query: ISO instants or YYYY-MM-DD dates (a date `to` includes that day); the default is the last 30 days. */
export function reportPeriod(now: Date, from?: string, to?: string): { from: string; to: string } {
  const parse = (v: string, flag: string, endOfDay: boolean): Date => {
    const day = /^\d{4}-\d{2}-\d{2}$/.test(v);
    const d = new Date(day ? `${v}T00:00:00Z` : v);
    if (Number.isNaN(d.getTime()) || !(day || /^\d{4}-\d{2}-\d{2}T/.test(v))) throw new CoffreError('InvalidArgument', `${flag} must be a date (YYYY-MM-DD) or an ISO 8601 instant`);
    return day && endOfDay ? new Date(d.getTime() + DAY_MS) : d;
  };
  const end = to ? parse(to, '--to', true) : now;
  const start = from ? parse(from, '--from', false) : new Date(end.getTime() - DEFAULT_REPORT_DAYS * DAY_MS);
  if (start >= end) throw new CoffreError('InvalidArgument', '--from must be before --to');
  return { from: start.toISOString(), to: end.toISOString() };
}

export async function buildReport(ctx: { db: Kysely<Database>; clock: Clock }, v: Visibility, q: { vault?: string; item?: string; from?: string; to?: string }): Promise<Report> {
  const now = ctx.clock.now();
  const period = reportPeriod(now, q.from, q.to);
  const db = ctx.db;
  let vq = db.selectFrom('vaults').select(['id', 'name', 'created_at']);
  if (q.vault) vq = vq.where((eb) => eb.or([eb('id', '=', q.vault!), eb('name', '=', q.vault!)]));
  const vaultRows = (await vq.orderBy('name').execute()).filter((r) => sees(v, r.id));
  if (q.vault && vaultRows.length === 0) throw new CoffreError('VaultNotFound', `no vault named ${q.vault}; list them with \`coffre vault list\``);
  const vaultIds = vaultRows.map((r) => r.id);
  let iq = db.selectFrom('items').innerJoin('vaults', 'vaults.id', 'items.vault_id').innerJoin('containers', 'containers.id', 'items.container_id')
    .innerJoin('policies', 'policies.id', 'items.policy_id')
    .select(['items.id', 'items.name', 'items.kind', 'items.vault_id as vaultId', 'items.container_id as containerId', 'vaults.name as vault', 'containers.name as machine', 'policies.name as policy'])
    .where('items.vault_id', 'in', vaultIds.length ? vaultIds : ['']);
  if (q.item) iq = iq.where((eb) => eb.or([eb('items.id', '=', q.item!), eb('items.name', '=', q.item!)]));
  const items = (await iq.orderBy('items.name').execute()).filter((i) => sees(v, i.vaultId, i.containerId));
  if (q.item && items.length === 0) throw new CoffreError('ItemNotFound', `no protected item named ${q.item}`);
  const itemIds = items.map((i) => i.id);
  const shownVaults = q.item ? vaultRows.filter((r) => items.some((i) => i.vaultId === r.id)) : vaultRows;

  const backups = itemIds.length ? await db.selectFrom('jobs').select(['item_id', 'status', 'start_time', 'bytes_scanned', 'bytes_new', 'bytes_uploaded'])
    .where('operation', '=', 'Backup').where('item_id', 'in', itemIds).where('start_time', '>=', period.from).where('start_time', '<', period.to).execute() : [];
  const pointRows = itemIds.length ? await db.selectFrom('points').select(['item_id', 'time', 'bytes'])
    .where('item_id', 'in', itemIds).where('time', '<', period.to).orderBy('time').execute() : [];
  const points = new Map<string, ReportPoints>();
  for (const p of pointRows) {
    const r = points.get(p.item_id) ?? { itemId: p.item_id, count: 0, latestBytes: 0 };
    r.count++;
    r.latestBytes = Number(p.bytes);
    points.set(p.item_id, r);
  }
  const live = new Map((await vaultsNow(db, new Set(shownVaults.map((r) => r.id)))).map((x) => [x.id, x.storedBytes]));
  const vaults: ReportVault[] = [];
  for (const r of shownVaults) {
    const storedStart = await storedAt(db, r.id, period.from);
    const storedEnd = period.to >= now.toISOString() ? live.get(r.id) ?? 0 : await storedAt(db, r.id, period.to);
    vaults.push({ id: r.id, name: r.name, createdAt: r.created_at, storedStart, storedEnd });
  }
  return computeReport({
    ...period, generatedAt: now.toISOString(),
    items: items.map((i) => ({ id: i.id, name: i.name, vaultId: i.vaultId, vault: i.vault, machine: i.machine, kind: i.kind, policy: i.policy })),
    backups: backups.map((b) => ({ itemId: b.item_id!, status: b.status, startTime: b.start_time, bytesScanned: Number(b.bytes_scanned), bytesNew: Number(b.bytes_new), bytesUploaded: Number(b.bytes_uploaded) })),
    points: [...points.values()], vaults,
  });
}
