/** Reports: per vault and item over a period, shown as a table and downloadable as CSV or JSON. */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { VaultInfo } from '../../core/api.js';
import type { Report, ReportRow } from '../../core/monitor-api.js';
import { api, query } from './api.js';
import { bytes, percent, ratio, when } from './format.js';
import { ErrorBox, html, Table, usePoll } from './ui.js';

const day = (d: Date) => d.toISOString().slice(0, 10);

export function ReportsPage(): ComponentChildren {
  const vaults = usePoll(() => api.get<VaultInfo[]>('/v1/vaults'), 0, []);
  const today = new Date();
  const [vault, setVault] = useState('');
  const [item, setItem] = useState('');
  const [from, setFrom] = useState(day(new Date(today.getTime() - 30 * 86_400_000)));
  const [to, setTo] = useState(day(today));
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<unknown>(null);
  const params = { vault, item: item.trim(), from, to };
  const show = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try { setReport(await api.get<Report>(`/v1/reports${query(params)}`)); } catch (err) { setError(err); }
  };
  return html`<h1>Reports</h1>
    <form class="filters" onSubmit=${show}>
      <div><label for="r-vault">Vault</label>
        <select id="r-vault" value=${vault} onChange=${(e: Event) => setVault((e.target as HTMLSelectElement).value)}>
          <option value="">All vaults</option>${(vaults.data ?? []).map((v) => html`<option value=${v.name}>${v.name}</option>`)}
        </select></div>
      <div><label for="r-item">Item (optional)</label>
        <input id="r-item" value=${item} onInput=${(e: Event) => setItem((e.target as HTMLInputElement).value)} /></div>
      <div><label for="r-from">From</label><input id="r-from" type="date" required value=${from} onInput=${(e: Event) => setFrom((e.target as HTMLInputElement).value)} /></div>
      <div><label for="r-to">To (included)</label><input id="r-to" type="date" required value=${to} onInput=${(e: Event) => setTo((e.target as HTMLInputElement).value)} /></div>
      <div class="buttons"><button type="submit">Show report</button></div>
    </form>
    <p class="downloads">Download: <a href=${`/ui/api/v1/reports${query({ ...params, format: 'csv' })}`} download="coffre-report.csv">CSV</a>
      · <a href=${`/ui/api/v1/reports${query({ ...params, format: 'json' })}`} download="coffre-report.json">JSON</a></p>
    <${ErrorBox} error=${error ?? vaults.error} />
    ${report ? html`<${Table} caption=${`Report from ${when(report.from)} to ${when(report.to)}`} empty="Nothing to report." rows=${report.rows}
      rowKey=${(r: ReportRow) => `${r.vault}/${r.item ?? ''}`} columns=${[
        { label: 'Scope', cell: (r: ReportRow) => r.item ? html`${r.item} <span class="sub">(${r.machine})</span>` : html`<strong>vault ${r.vault}</strong>` },
        { label: 'Backups', cell: (r: ReportRow) => `${r.backups.total} (${r.backups.failed} failed)` },
        { label: 'Success rate', cell: (r: ReportRow) => percent(r.successRate) },
        { label: 'Protected', cell: (r: ReportRow) => bytes(r.protectedBytes) },
        { label: 'Stored', cell: (r: ReportRow) => r.scope === 'vault' ? `${bytes(r.storedBytesEnd)} (growth ${r.storedGrowthBytes === null ? '—' : bytes(r.storedGrowthBytes)})` : `${bytes(r.bytesUploaded)} sent` },
        { label: 'Dedup', cell: (r: ReportRow) => ratio(r.dedupRatio) },
        { label: 'Compression', cell: (r: ReportRow) => ratio(r.compressionRatio) },
        { label: 'Points', cell: (r: ReportRow) => r.points },
      ]} />` : null}`;
}
