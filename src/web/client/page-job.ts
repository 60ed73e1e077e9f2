/** One job: status, counters, errors, warnings and details, live while it runs. */
import type { ComponentChildren } from 'preact';
import type { JobInfo, JobProblem } from '../../core/api.js';
import { api } from './api.js';
import { bytes, duration, when } from './format.js';
import { LIVE_MS } from './page-jobs.js';
import { Badge, ErrorBox, html, itemPath, Loading, Section, Table, usePoll } from './ui.js';

function Problems(props: { title: string; list: JobProblem[] }): ComponentChildren {
  return html`<${Section} title=${props.title}>
    <${Table} caption=${`${props.list.length} ${props.title.toLowerCase()}`} empty=${`No ${props.title.toLowerCase()}.`}
      rows=${props.list.slice(0, 500).map((p, i) => ({ ...p, i }))} rowKey=${(p: JobProblem & { i: number }) => String(p.i)} columns=${[
        { label: 'Code', cell: (p: JobProblem) => html`<code>${p.code}</code>` },
        { label: 'Path', cell: (p: JobProblem) => p.path ?? '—' },
        { label: 'Message', cell: (p: JobProblem) => p.message, className: 'wide' },
      ]} />
  <//>`;
}

export function JobPage(props: { id: string }): ComponentChildren {
  const { data: j, error } = usePoll(() => api.get<JobInfo>(`/v1/jobs/${encodeURIComponent(props.id)}`), LIVE_MS, [props.id]);
  if (!j) return error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} />`;
  return html`<h1>${j.operation} job <code>${j.id}</code> <${Badge} kind=${j.status} /></h1>
    <${ErrorBox} error=${error} />
    <dl class="facts">
      <div><dt>Item</dt><dd>${j.item ? html`<a href=${`#${itemPath(j.vault, j.item)}`}>${j.item}</a>` : '—'}</dd></div>
      <div><dt>Vault</dt><dd>${j.vault}</dd></div>
      <div><dt>Started</dt><dd>${when(j.startTime)}</dd></div>
      <div><dt>Ended</dt><dd>${when(j.endTime)}</dd></div>
      <div><dt>Duration</dt><dd>${j.status === 'InProgress' ? 'running' : duration(j.durationSeconds)}</dd></div>
      <div><dt>Bytes read</dt><dd class="counter" data-counter="bytesScanned">${bytes(j.bytesScanned)}</dd></div>
      <div><dt>Bytes new</dt><dd>${bytes(j.bytesNew)}</dd></div>
      <div><dt>Bytes sent</dt><dd>${bytes(j.bytesUploaded)}</dd></div>
      <div><dt>Files</dt><dd>${j.filesScanned} read, ${j.filesChanged} changed</dd></div>
      <div><dt>Point</dt><dd>${j.pointId ? html`<code>${j.pointId}</code>` : '—'}</dd></div>
    </dl>
    <${Problems} title="Errors" list=${j.errors} />
    <${Problems} title="Warnings" list=${j.warnings} />
    <${Section} title="Details">
      <pre class="details">${JSON.stringify(j.details, null, 2)}</pre>
    <//>`;
}
