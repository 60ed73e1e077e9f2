/** Pieces every page uses: the html template tag, tables that fold into cards on a phone, badges, polling. */
import { h, type ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { ApiError } from './api.js';

export const html = htm.bind(h);

export interface Column<T> { label: string; cell: (row: T) => ComponentChildren; className?: string }

/** A table with a caption; below 700 px wide each row becomes a card whose cells carry their column's label. */
export function Table<T>(props: { caption: string; columns: Column<T>[]; rows: T[]; empty: string; rowKey: (row: T) => string }): ComponentChildren {
  if (props.rows.length === 0) return html`<p class="empty">${props.empty}</p>`;
  return html`<table class="cards">
    <caption>${props.caption}</caption>
    <thead><tr>${props.columns.map((c) => html`<th scope="col" class=${c.className ?? ''}>${c.label}</th>`)}</tr></thead>
    <tbody>${props.rows.map((r) => html`<tr key=${props.rowKey(r)}>${props.columns.map((c) => html`<td data-label=${c.label} class=${c.className ?? ''}>${c.cell(r)}</td>`)}</tr>`)}</tbody>
  </table>`;
}

export function Badge(props: { kind: string; text?: string }): ComponentChildren {
  return html`<span class=${`badge badge-${props.kind.toLowerCase()}`}>${props.text ?? props.kind}</span>`;
}

export function ErrorBox(props: { error: unknown }): ComponentChildren {
  if (!props.error) return null;
  const e = props.error;
  const text = e instanceof ApiError ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e);
  return html`<p class="error" role="alert">${text}</p>`;
}

export function Loading(): ComponentChildren {
  return html`<p class="loading" role="status">Loading…</p>`;
}

/** Loads now and again every `everyMs` (0: once) while the page shows; `reload` forces a load. */
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[]): { data: T | undefined; error: unknown; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const d = await loadRef.current();
        if (live) { setData(d); setError(null); }
      } catch (e) {
        if (live) setError(e);
      }
      if (live && everyMs > 0) timer = setTimeout(run, everyMs);
    };
    void run();
    return () => { live = false; if (timer) clearTimeout(timer); };
  }, [...deps, tick, everyMs]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

/** A titled panel; the heading names the region for assistive technology. */
export function Section(props: { title: string; children: ComponentChildren }): ComponentChildren {
  const id = `h-${props.title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return html`<section class="panel" aria-labelledby=${id}>
    <h2 id=${id}>${props.title}</h2>
    ${props.children}
  </section>`;
}

export function link(path: string): string {
  return `#${path}`;
}

export function itemPath(vault: string, item: string): string {
  return `/item/${encodeURIComponent(vault)}/${encodeURIComponent(item)}`;
}
