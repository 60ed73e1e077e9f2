/** Items: every protected item with its health, last backup, next run and recovery point objective. */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { ItemHealthStatus } from '../../core/monitor-api.js';
import { api } from './api.js';
import { bytes, when } from './format.js';
import { Badge, ErrorBox, html, itemPath, Loading, Table, usePoll } from './ui.js';

export function rpoText(s: ItemHealthStatus): ComponentChildren {
  switch (s.rpo.state) {
    case 'compliant': return html`<${Badge} kind="healthy" text="Met" />`;
    case 'breached': return html`<${Badge} kind="critical" text="Breached" /> <span class="sub">due by ${when(s.rpo.dueBy)}</span>`;
    case 'not-due': return html`<span class="sub">first run not due yet</span>`;
    default: return html`<span class="sub">not scheduled</span>`;
  }
}

export function ItemsPage(props: { health: string }): ComponentChildren {
  const [health, setHealth] = useState(props.health);
  const [text, setText] = useState('');
  const { data, error } = usePoll(() => api.get<ItemHealthStatus[]>('/v1/monitor/items'), 10_000, []);
  if (!data) return error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} />`;
  const rows = data.filter((s) => (!health || s.health === health) && (!text || `${s.name} ${s.machine} ${s.vault}`.toLowerCase().includes(text.toLowerCase())));
  return html`<h1>Protected items</h1>
    <${ErrorBox} error=${error} />
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <div><label for="f-health">Health</label>
        <select id="f-health" value=${health} onChange=${(e: Event) => setHealth((e.target as HTMLSelectElement).value)}>
          <option value="">All</option><option value="healthy">Healthy</option><option value="warning">Warning</option><option value="critical">Critical</option>
        </select></div>
      <div><label for="f-text">Search</label>
        <input id="f-text" type="search" value=${text} placeholder="item, machine or vault" onInput=${(e: Event) => setText((e.target as HTMLInputElement).value)} /></div>
    </form>
    <${Table} caption=${`${rows.length} of ${data.length} items`} empty="No item matches." rows=${rows} rowKey=${(s: ItemHealthStatus) => s.id} columns=${[
      { label: 'Item', cell: (s: ItemHealthStatus) => html`<a href=${`#${itemPath(s.vault, s.name)}`}>${s.name}</a>` },
      { label: 'Health', cell: (s: ItemHealthStatus) => html`<${Badge} kind=${s.health} />${s.reasons.length ? html`<ul class="reasons">${s.reasons.map((r) => html`<li>${r}</li>`)}</ul>` : null}`, className: 'wide' },
      { label: 'Kind', cell: (s: ItemHealthStatus) => s.kind },
      { label: 'Machine', cell: (s: ItemHealthStatus) => s.machine },
      { label: 'Vault', cell: (s: ItemHealthStatus) => s.vault },
      { label: 'Policy', cell: (s: ItemHealthStatus) => s.policy },
      { label: 'Last backup', cell: (s: ItemHealthStatus) => s.lastBackup ? html`${when(s.lastBackup.startTime)} <${Badge} kind=${s.lastBackup.status} />` : '—' },
      { label: 'Next run', cell: (s: ItemHealthStatus) => when(s.nextRun) },
      { label: 'RPO', cell: rpoText },
      { label: 'Points', cell: (s: ItemHealthStatus) => `${s.points} (${bytes(s.protectedBytes)})` },
    ]} />`;
}
