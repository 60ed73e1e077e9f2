/** Alerts: active ones, or the resolved ones too. */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { AlertInfo } from '../../core/monitor-api.js';
import { api, query } from './api.js';
import { AlertTable } from './page-overview.js';
import { ErrorBox, html, Loading, usePoll } from './ui.js';

export function AlertsPage(): ComponentChildren {
  const [all, setAll] = useState(false);
  const { data, error } = usePoll(() => api.get<AlertInfo[]>(`/v1/alerts${query({ all: all ? 'true' : undefined })}`), 10_000, [all]);
  return html`<h1>Alerts</h1>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <div class="check"><input id="f-all" type="checkbox" checked=${all} onChange=${(e: Event) => setAll((e.target as HTMLInputElement).checked)} />
        <label for="f-all">Show resolved alerts too</label></div>
    </form>
    <p class="hint">Rules: JobFailed, MissedSchedule, RpoBreach, VerifyFailed, StorageAboveThreshold, ReplicationLag. Webhooks and thresholds: <code>coffre alerts config</code>.</p>
    <${ErrorBox} error=${error} />
    ${data ? html`<${AlertTable} alerts=${data} caption=${all ? 'Alerts, newest first' : 'Active alerts, newest first'} empty=${all ? 'No alert yet.' : 'No active alerts.'} />` : html`<${Loading} />`}`;
}
