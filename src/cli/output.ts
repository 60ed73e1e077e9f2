/** Tables, sizes and progress bars for people; plain JSON for scripts. */
import { createRequire } from 'node:module';
import type { JobCounters, JobInfo, PointInfo } from '../core/api.js';

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do { v /= 1024; u++; } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

// Loaded when a table is printed: commands that print none start faster.
let Table: typeof import('cli-table3') | null = null;

export function table(head: string[], rows: (string | number)[][]): string {
  Table ??= createRequire(import.meta.url)('cli-table3') as typeof import('cli-table3');
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map(String));
  return t.toString();
}

export function pointsTable(points: PointInfo[]): string {
  return table(['id', 'item', 'time', 'kind', 'consistency', 'expires', 'files', 'size', 'replicated'],
    // A stopped or soft-deleted item's points never expire (9999-12-31) until resumed or purged.
    points.map((p) => [p.id, p.item, p.time.replace('T', ' ').slice(0, 19), p.kind, p.consistency, p.expiresAt.startsWith('9999-') ? 'never' : p.expiresAt.slice(0, 10), p.files, formatBytes(p.bytes), p.replicated ? 'yes' : 'no']));
}

/** A verify job's findings store by store. */
export function storeReports(j: JobInfo): string {
  const stores = (j.details.stores ?? []) as { store: string; role: string; objectsChecked: number; bytesChecked: number; missing: number; damaged: number; repaired: number; pending: number; unavailable?: string }[];
  if (!stores.length) return '';
  return table(['store', 'role', 'objects', 'bytes', 'missing', 'damaged', 'repaired', 'pending copy', 'unavailable'],
    stores.map((s) => [s.store, s.role, s.objectsChecked, formatBytes(s.bytesChecked), s.missing, s.damaged, s.repaired, s.pending, s.unavailable ?? ''])) + '\n';
}

export function jobsTable(jobs: JobInfo[]): string {
  return table(['id', 'operation', 'status', 'item', 'start', 'duration', 'scanned', 'new', 'sent', 'files', 'problems'],
    jobs.map((j) => [j.id, j.operation, j.status, j.item ?? '', j.startTime.replace('T', ' ').slice(0, 19), j.durationSeconds === null ? '…' : `${j.durationSeconds}s`,
      formatBytes(j.bytesScanned), formatBytes(j.bytesNew), formatBytes(j.bytesUploaded), j.filesScanned, j.errors.length + j.warnings.length]));
}

export function jobSummary(j: JobInfo): string {
  const lines = [`${j.operation} job ${j.id}: ${j.status}${j.durationSeconds !== null ? ` in ${j.durationSeconds}s` : ''}`];
  lines.push(`  files ${j.filesScanned} scanned, ${j.filesChanged} changed; bytes ${formatBytes(j.bytesScanned)} read, ${formatBytes(j.bytesNew)} new, ${formatBytes(j.bytesUploaded)} sent`);
  for (const e of j.errors) lines.push(`  error [${e.code}] ${e.message}`);
  // Copies found missing or damaged while reading, and rewritten from an intact copy (self-healing).
  const repairs = (j.details.repairs ?? []) as { store: string; key: string; problem: string; repaired: boolean; error?: string }[];
  for (const r of repairs) lines.push(`  repair: ${r.key} was ${r.problem} in store ${r.store}; ${r.repaired ? 'rewritten from an intact copy' : `not repaired (${r.error ?? 'unknown'})`}`);
  for (const w of j.warnings.slice(0, 20)) lines.push(`  warning [${w.code}] ${w.message}`);
  if (j.warnings.length > 20) lines.push(`  … and ${j.warnings.length - 20} more warnings (see --json)`);
  return lines.join('\n');
}

/** A progress bar on stderr when it is a terminal and output is not JSON; otherwise nothing. */
export function progressBar(enabled: boolean, label: string): { update(c: JobCounters & { bytesTotal: number; filesTotal: number }): void; stop(): void } {
  if (!enabled || !process.stderr.isTTY) return { update() {}, stop() {} };
  // Loaded only when a bar is drawn: scripted runs (--json, no terminal) start faster.
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof import('cli-progress');
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% | {files} files | {done}/{total} | {rate}/s | ETA {eta_formatted}`,
    hideCursor: true, clearOnComplete: true, etaBuffer: 20,
  }, cliProgress.Presets.shades_classic);
  const started = Date.now();
  let begun = false;
  return {
    update(c) {
      const payload = { files: `${c.filesScanned}/${c.filesTotal}`, done: formatBytes(c.bytesScanned), total: formatBytes(c.bytesTotal),
        rate: formatBytes(Math.round(c.bytesScanned / Math.max(0.001, (Date.now() - started) / 1000))) };
      if (!begun) { bar.start(Math.max(1, c.bytesTotal), 0, payload); begun = true; }
      bar.setTotal(Math.max(1, c.bytesTotal));
      bar.update(Math.min(c.bytesScanned, c.bytesTotal), payload);
    },
    stop() { if (begun) bar.stop(); },
  };
}
