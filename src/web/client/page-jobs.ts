/** Jobs: a filtered list, refreshed every two seconds so running jobs show their progress live. */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { JobInfo } from '../../core/api.js';
import { api, query } from './api.js';
import { bytes, duration, when } from './format.js';
import { Badge, ErrorBox, html, Loading, Table, usePoll } from './ui.js';

export const LIVE_MS = 2_000;
const STATUSES = ['InProgress', 'Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled'];
const OPERATIONS = ['Backup', 'Restore', 'Verify', 'Prune', 'GarbageCollect'];

export function progressText(j: JobInfo): string {
  return `${bytes(j.bytesScanned)} read, ${bytes(j.bytesNew)} new, ${bytes(j.bytesUploaded)} sent · ${j.filesScanned} files`;
}

export function JobsPage(props: { status: string }): ComponentChildren {
  const [status, setStatus] = useState(props.status);
  const [operation, setOperation] = useState('');
  const [item, setItem] = useState('');
  const { data, error } = usePoll(() => api.get<JobInfo[]>(`/v1/monitor/jobs${query({ status, operation, item: item.trim(), limit: '200' })}`), LIVE_MS, [status, operation, item]);
  const select = (id: string, label: string, value: string, set: (v: string) => void, options: string[]) => html`<div>
    <label for=${id}>${label}</label>
    <select id=${id} value=${value} onChange=${(e: Event) => set((e.target as HTMLSelectElement).value)}>
      <option value="">All</option>${options.map((o) => html`<option value=${o}>${o}</option>`)}
    </select></div>`;
  return html`<h1>Jobs</h1>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      ${select('f-status', 'Status', status, setStatus, STATUSES)}
      ${select('f-operation', 'Operation', operation, setOperation, OPERATIONS)}
      <div><label for="f-item">Item</label>
        <input id="f-item" type="search" value=${item} placeholder="exact item name" onChange=${(e: Event) => setItem((e.target as HTMLInputElement).value)} /></div>
    </form>
    <${ErrorBox} error=${error} />
    ${data ? html`<${Table} caption=${`${data.length} jobs, newest first (refreshed every ${LIVE_MS / 1000} s)`} empty="No job matches." rows=${data} rowKey=${(j: JobInfo) => j.id} columns=${[
      { label: 'Job', cell: (j: JobInfo) => html`<a href=${`#/job/${j.id}`}>${j.operation} ${j.id}</a>` },
      { label: 'Status', cell: (j: JobInfo) => html`<${Badge} kind=${j.status} />` },
      { label: 'Item', cell: (j: JobInfo) => j.item ?? '—' },
      { label: 'Vault', cell: (j: JobInfo) => j.vault },
      { label: 'Started', cell: (j: JobInfo) => when(j.startTime) },
      { label: 'Duration', cell: (j: JobInfo) => j.status === 'InProgress' ? 'running' : duration(j.durationSeconds) },
      { label: 'Progress', cell: (j: JobInfo) => html`<span class="progress">${progressText(j)}</span>`, className: 'wide' },
      { label: 'Problems', cell: (j: JobInfo) => `${j.errors.length} errors, ${j.warnings.length} warnings` },
    ]} />` : html`<${Loading} />`}`;
}
