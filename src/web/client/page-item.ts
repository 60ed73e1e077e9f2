/**
 * One item: its health and objective, "back up now", its points (kind, consistency, expiry)
 * with a restore request for each, and the restore requests its agent is carrying out.
 */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { PointInfo } from '../../core/api.js';
import type { ItemHealthStatus, RestoreRequestInfo } from '../../core/monitor-api.js';
import { api, query } from './api.js';
import { bytes, when } from './format.js';
import { rpoText } from './page-items.js';
import { Badge, ErrorBox, html, Loading, Section, Table, usePoll } from './ui.js';

function BackupNow(props: { item: ItemHealthStatus; onDone: () => void }): ComponentChildren {
  const [retainUntil, setRetainUntil] = useState('');
  const [message, setMessage] = useState('');
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const r = await api.post<{ requestedAt: string; retainUntil: string }>(`/v1/items/${encodeURIComponent(props.item.name)}/backup`,
        { vault: props.item.vault, ...(retainUntil ? { retainUntil } : {}) });
      setMessage(`Backup requested at ${when(r.requestedAt)}, kept until ${r.retainUntil}: the agent of ${props.item.machine} runs it on its next poll.`);
      props.onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="inline" onSubmit=${submit}>
    <div><label for="retain">Keep until (optional)</label>
      <input id="retain" type="date" value=${retainUntil} onInput=${(e: Event) => setRetainUntil((e.target as HTMLInputElement).value)} /></div>
    <button type="submit">Back up now</button>
    <p class="status" role="status" aria-live="polite">${message}</p>
    <${ErrorBox} error=${error} />
  </form>`;
}

function RestoreForm(props: { point: PointInfo; onDone: () => void; onCancel: () => void }): ComponentChildren {
  const [target, setTarget] = useState('');
  const [paths, setPaths] = useState('');
  const [overwrite, setOverwrite] = useState('rename');
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const list = paths.split('\n').map((p) => p.trim()).filter(Boolean);
      await api.post('/v1/restore-requests', { point: props.point.id, target, overwrite, ...(list.length ? { paths: list } : {}) });
      props.onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="panel restore-form" onSubmit=${submit} aria-label=${`Restore point ${props.point.id}`}>
    <h3>Restore point ${props.point.id} (${when(props.point.time)})</h3>
    <p class="hint">The agent of ${props.point.machine} restores it on its next poll, into a folder of that machine.</p>
    <label for="r-target">Target folder on ${props.point.machine}</label>
    <input id="r-target" required value=${target} placeholder="/srv/restore" onInput=${(e: Event) => setTarget((e.target as HTMLInputElement).value)} />
    <label for="r-paths">Only these paths (one per line, optional)</label>
    <textarea id="r-paths" rows="2" value=${paths} onInput=${(e: Event) => setPaths((e.target as HTMLTextAreaElement).value)}></textarea>
    <label for="r-overwrite">When a file exists</label>
    <select id="r-overwrite" value=${overwrite} onChange=${(e: Event) => setOverwrite((e.target as HTMLSelectElement).value)}>
      <option value="rename">Keep it, write the restored copy beside it</option>
      <option value="skip">Keep it, skip the restored file</option>
      <option value="replace">Replace it</option>
    </select>
    <div class="buttons">
      <button type="submit">Request restore</button>
      <button type="button" class="secondary" onClick=${props.onCancel}>Cancel</button>
    </div>
    <${ErrorBox} error=${error} />
  </form>`;
}

export function ItemPage(props: { vault: string; item: string }): ComponentChildren {
  const [restoring, setRestoring] = useState<PointInfo | null>(null);
  const status = usePoll(async () => (await api.get<ItemHealthStatus[]>('/v1/monitor/items')).find((s) => s.vault === props.vault && s.name === props.item) ?? null, 5_000, [props.vault, props.item]);
  const points = usePoll(() => api.get<PointInfo[]>(`/v1/points${query({ vault: props.vault, item: props.item })}`), 5_000, [props.vault, props.item]);
  const requests = usePoll(() => api.get<RestoreRequestInfo[]>(`/v1/restore-requests${query({ item: props.item })}`), 5_000, [props.item]);
  const s = status.data;
  if (s === undefined) return status.error ? html`<${ErrorBox} error=${status.error} />` : html`<${Loading} />`;
  if (s === null) return html`<h1>${props.item}</h1><p class="error" role="alert">No item ${props.item} in vault ${props.vault}.</p>`;
  return html`<h1>${s.name} <${Badge} kind=${s.health} /></h1>
    <dl class="facts">
      <div><dt>Vault</dt><dd>${s.vault}</dd></div>
      <div><dt>Machine</dt><dd>${s.machine}</dd></div>
      <div><dt>Kind</dt><dd>${s.kind}</dd></div>
      <div><dt>Policy</dt><dd><a href="#/policies">${s.policy}</a></dd></div>
      <div><dt>Last backup</dt><dd>${s.lastBackup ? html`<a href=${`#/job/${s.lastBackup.jobId}`}>${when(s.lastBackup.startTime)}</a> <${Badge} kind=${s.lastBackup.status} />` : '—'}</dd></div>
      <div><dt>Last success</dt><dd>${when(s.lastSuccess)}</dd></div>
      <div><dt>Next run</dt><dd>${when(s.nextRun)}</dd></div>
      <div><dt>Recovery point objective</dt><dd>${rpoText(s)}</dd></div>
    </dl>
    ${s.reasons.length ? html`<ul class="reasons">${s.reasons.map((r) => html`<li>${r}</li>`)}</ul>` : null}
    <${Section} title="Back up now">
      ${s.backupRequestedAt ? html`<p class="status">A backup asked for at ${when(s.backupRequestedAt)} waits for the agent.</p>` : null}
      <${BackupNow} item=${s} onDone=${status.reload} />
    <//>
    ${restoring ? html`<${RestoreForm} point=${restoring} onCancel=${() => setRestoring(null)} onDone=${() => { setRestoring(null); requests.reload(); }} />` : null}
    <${Section} title="Recovery points">
      <${ErrorBox} error=${points.error} />
      ${points.data ? html`<${Table} caption=${`${points.data.length} points, newest first`} empty="No recovery point yet." rows=${[...points.data].reverse()} rowKey=${(p: PointInfo) => p.id} columns=${[
        { label: 'Time', cell: (p: PointInfo) => when(p.time) },
        { label: 'Point', cell: (p: PointInfo) => html`<code>${p.id}</code>` },
        { label: 'Kind', cell: (p: PointInfo) => p.kind },
        { label: 'Consistency', cell: (p: PointInfo) => p.consistency },
        { label: 'Expires', cell: (p: PointInfo) => when(p.expiresAt) },
        { label: 'Size', cell: (p: PointInfo) => `${bytes(p.bytes)}, ${p.files} files` },
        { label: 'Restore', cell: (p: PointInfo) => html`<button type="button" class="secondary" aria-label=${`Restore point ${p.id}`} onClick=${() => setRestoring(p)}>Restore…</button>` },
      ]} />` : html`<${Loading} />`}
    <//>
    <${Section} title="Restore requests">
      ${requests.data ? html`<${Table} caption="Restores asked of the agent, newest first" empty="No restore requested." rows=${requests.data} rowKey=${(r: RestoreRequestInfo) => r.id} columns=${[
        { label: 'Requested', cell: (r: RestoreRequestInfo) => `${when(r.requestedAt)} by ${r.requestedBy}` },
        { label: 'Point', cell: (r: RestoreRequestInfo) => html`<code>${r.pointId}</code>` },
        { label: 'Target', cell: (r: RestoreRequestInfo) => html`<code>${r.target}</code>` },
        { label: 'State', cell: (r: RestoreRequestInfo) => html`<${Badge} kind=${r.state} />${r.error ? html` <span class="sub">${r.error}</span>` : null}` },
        { label: 'Job', cell: (r: RestoreRequestInfo) => r.jobId ? html`<a href=${`#/job/${r.jobId}`}>${r.jobId}</a>` : '—' },
      ]} />` : html`<${Loading} />`}
    <//>`;
}
