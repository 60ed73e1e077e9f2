/** Overview: items by health, the last day's jobs by status, active alerts, storage per vault over time. */
import type { ComponentChildren } from 'preact';
import type { AlertInfo, Overview, VaultUsage } from '../../core/monitor-api.js';
import { api } from './api.js';
import { StorageChart } from './chart.js';
import { bytes, duration, when } from './format.js';
import { Badge, ErrorBox, html, Loading, Section, Table, usePoll } from './ui.js';

const STATUSES = ['InProgress', 'Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled'] as const;

export function AlertTable(props: { alerts: AlertInfo[]; caption: string; empty: string }): ComponentChildren {
  return html`<${Table} caption=${props.caption} empty=${props.empty} rows=${props.alerts} rowKey=${(a: AlertInfo) => a.id} columns=${[
    { label: 'Severity', cell: (a: AlertInfo) => html`<${Badge} kind=${a.severity} />` },
    { label: 'Rule', cell: (a: AlertInfo) => a.rule },
    { label: 'Summary', cell: (a: AlertInfo) => a.summary, className: 'wide' },
    { label: 'Raised', cell: (a: AlertInfo) => when(a.raisedAt) },
    { label: 'State', cell: (a: AlertInfo) => a.state === 'Active' ? html`<${Badge} kind="active" text="Active" />` : html`Resolved ${when(a.resolvedAt)}` },
  ]} />`;
}

/** What a GRS vault's paired region still lacks; nothing for the other redundancies. */
function replicationCell(v: VaultUsage): ComponentChildren {
  const r = v.replication;
  if (!r) return '—';
  if (r.pendingObjects === 0) return html`<${Badge} kind="completed" text="Up to date" />`;
  return html`<span data-replication="lagging">${r.pendingObjects} object(s), ${bytes(r.pendingBytes)} to copy, oldest waiting ${duration(r.oldestPendingSeconds)}</span>`;
}

export function OverviewPage(): ComponentChildren {
  const { data, error } = usePoll(() => api.get<Overview>('/v1/monitor/overview'), 10_000, []);
  if (!data) return error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} />`;
  const o = data;
  return html`<h1>Overview</h1>
    <${ErrorBox} error=${error} />
    <div class="tiles">
      <${Section} title="Items by health">
        <ul class="counts">
          ${(['healthy', 'warning', 'critical'] as const).map((k) => html`<li><a href=${`#/items?health=${k}`}><span class="count" data-health=${k}>${o.items[k]}</span> <${Badge} kind=${k} /></a></li>`)}
        </ul>
      <//>
      <${Section} title="Jobs in the last 24 hours">
        <ul class="counts">
          ${STATUSES.map((s) => html`<li><a href=${`#/jobs?status=${s}`}><span class="count">${o.jobsLast24h[s] ?? 0}</span> <${Badge} kind=${s} /></a></li>`)}
        </ul>
      <//>
    </div>
    <${Section} title="Active alerts">
      <${AlertTable} alerts=${o.activeAlerts.slice(0, 10)} caption="Active alerts, newest first" empty="No active alerts." />
      ${o.activeAlerts.length > 10 ? html`<p><a href="#/alerts">All ${o.activeAlerts.length} active alerts</a></p>` : null}
    <//>
    <${Section} title="Storage per vault">
      <${Table} caption="Storage used per vault" empty="No vault yet." rows=${o.vaults} rowKey=${(v: VaultUsage) => v.vault} columns=${[
        { label: 'Vault', cell: (v: VaultUsage) => v.vault },
        { label: 'Stored', cell: (v: VaultUsage) => bytes(v.storedBytes) },
        { label: 'Copies', cell: (v: VaultUsage) => html`${v.redundancy}: ${v.copies.map((c) => c.name).join(', ')}` },
        { label: 'Paired region', cell: replicationCell },
        { label: 'Protected', cell: (v: VaultUsage) => bytes(v.protectedBytes) },
        { label: 'Points', cell: (v: VaultUsage) => v.points },
        { label: 'Items', cell: (v: VaultUsage) => v.items },
      ]} />
      ${o.vaults.length ? html`<${StorageChart} vaults=${o.vaults} />` : null}
    <//>`;
}
