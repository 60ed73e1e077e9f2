/**
 * Policies: schedule and retention of each, the items they protect, and a change previewed
 * before it is applied: the dry run lists the points the change would delete and the expiries
 * it would move (retention applies retroactively), and only then can it be applied.
 */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { PolicyInfo, RetentionChange, VaultInfo } from '../../core/api.js';
import { api, query } from './api.js';
import { when } from './format.js';
import { ErrorBox, html, Loading, Section, Table, usePoll } from './ui.js';

interface PolicyBody {
  timeZone: string;
  schedule: { frequency: 'Daily' | 'Weekly'; times: string[]; weekDays?: string[] };
  retention: Record<string, { count: number; weekDays?: string[]; days?: unknown[]; weeks?: string[]; months?: string[] } | undefined>;
}

export function scheduleText(p: PolicyBody): string {
  const s = p.schedule;
  return `${s.frequency === 'Weekly' ? `Weekly on ${(s.weekDays ?? []).join(', ')}` : 'Daily'} at ${s.times.join(', ')} (${p.timeZone})`;
}

export function retentionText(p: PolicyBody): string {
  const r = p.retention;
  const parts: string[] = [];
  if (r.daily) parts.push(`daily points ${r.daily.count} days`);
  if (r.weekly) parts.push(`weekly (${(r.weekly.weekDays ?? []).join(', ')}) ${r.weekly.count} weeks`);
  if (r.monthly) parts.push(`monthly ${r.monthly.count} months`);
  if (r.yearly) parts.push(`yearly ${r.yearly.count} years`);
  return parts.join('; ') || 'none';
}

type Result = { change: RetentionChange; applied: boolean };

function ChangeTable(props: { change: RetentionChange }): ComponentChildren {
  const c = props.change;
  const rows = [
    ...c.deleted.map((d) => ({ id: d.id, item: d.item, time: d.time, effect: 'deleted', detail: 'no rule of the changed policy keeps it' })),
    ...c.changed.map((d) => ({ id: d.id, item: d.item, time: d.time, effect: 'kept, new expiry', detail: `${when(d.from)} → ${when(d.to)}` })),
  ];
  type Row = (typeof rows)[number];
  return html`<p class="status" role="status">${c.deleted.length} point(s) would be deleted, ${c.changed.length} expiry(ies) would change.</p>
    <${Table} caption="What the change does to existing points" empty="No existing point is affected." rows=${rows} rowKey=${(r: Row) => r.id} columns=${[
      { label: 'Point', cell: (r: Row) => html`<code>${r.id}</code>` },
      { label: 'Item', cell: (r: Row) => r.item },
      { label: 'Taken', cell: (r: Row) => when(r.time) },
      { label: 'Effect', cell: (r: Row) => html`<span class=${r.effect === 'deleted' ? 'bad' : ''}>${r.effect}</span>` },
      { label: 'Expiry', cell: (r: Row) => r.detail },
    ]} />`;
}

function PolicyEditor(props: { policy: PolicyInfo; onApplied: () => void }): ComponentChildren {
  const { name: _name, ...body } = props.policy.policy as PolicyBody & { name: string };
  const [text, setText] = useState(JSON.stringify(body, null, 2));
  const [previewed, setPreviewed] = useState<string | null>(null);
  const [result, setResult] = useState<Result | null>(null);
  const [error, setError] = useState<unknown>(null);
  const id = `edit-${props.policy.vault}-${props.policy.name}`;
  const send = async (dryRun: boolean) => {
    setError(null);
    let parsed: unknown;
    try { parsed = JSON.parse(text); } catch (e) { setError(new Error(`the policy is not valid JSON: ${(e as Error).message}`)); return; }
    try {
      const r = await api.put<{ change: RetentionChange }>(`/v1/policies/${encodeURIComponent(props.policy.name)}`, { vault: props.policy.vault, policy: parsed, dryRun });
      setResult({ change: r.change, applied: !dryRun });
      setPreviewed(dryRun ? text : null);
      if (!dryRun) props.onApplied();
    } catch (e) {
      setError(e);
    }
  };
  return html`<div class="editor">
    <label for=${id}>Policy ${props.policy.name} (JSON: timeZone, schedule, retention, instantRestoreDays)</label>
    <textarea id=${id} rows="12" spellcheck="false" value=${text} onInput=${(e: Event) => { setText((e.target as HTMLTextAreaElement).value); setPreviewed(null); }}></textarea>
    <div class="buttons">
      <button type="button" onClick=${() => send(true)}>Preview change</button>
      ${previewed === text ? html`<button type="button" class="danger" onClick=${() => send(false)}>Apply change</button>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${result ? html`<div class="preview" aria-live="polite">
      <h3>${result.applied ? 'Applied' : 'Preview (dry run): nothing changed yet'}</h3>
      <${ChangeTable} change=${result.change} />
    </div>` : null}
  </div>`;
}

function VaultPolicies(props: { vault: string }): ComponentChildren {
  const [editing, setEditing] = useState<string | null>(null);
  const { data, error, reload } = usePoll(() => api.get<PolicyInfo[]>(`/v1/policies${query({ vault: props.vault })}`), 0, [props.vault]);
  if (!data) return error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} />`;
  return html`${data.map((p) => html`<article class="policy" key=${p.name}>
      <h3>${p.name}</h3>
      <dl class="facts">
        <div><dt>Schedule</dt><dd>${scheduleText(p.policy as PolicyBody)}</dd></div>
        <div><dt>Retention</dt><dd>${retentionText(p.policy as PolicyBody)}</dd></div>
        <div><dt>Items</dt><dd>${p.items.join(', ') || 'none'}</dd></div>
        <div><dt>Changed</dt><dd>${when(p.updatedAt)}</dd></div>
      </dl>
      ${editing === p.name
        ? html`<${PolicyEditor} policy=${p} onApplied=${reload} /><button type="button" class="secondary" onClick=${() => setEditing(null)}>Close the editor of ${p.name}</button>`
        : html`<button type="button" class="secondary" onClick=${() => setEditing(p.name)}>Change ${p.name}…</button>`}
    </article>`)}`;
}

export function PoliciesPage(): ComponentChildren {
  const { data, error } = usePoll(() => api.get<VaultInfo[]>('/v1/vaults'), 0, []);
  if (!data) return error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} />`;
  return html`<h1>Policies</h1>
    ${data.length === 0 ? html`<p class="empty">No vault yet.</p>` : null}
    ${data.map((v) => html`<${Section} title=${`Vault ${v.name}`} key=${v.id}><${VaultPolicies} vault=${v.name} /><//>`)}`;
}
