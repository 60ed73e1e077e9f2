/** The storage chart: stored bytes of each vault over time, drawn by uPlot on a canvas sized to its box. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import type { VaultUsage } from '../../core/monitor-api.js';
import { bytes } from './format.js';
import { html } from './ui.js';

const COLORS = ['#2563eb', '#db2777', '#059669', '#d97706', '#7c3aed', '#0891b2'];

/** One time axis for all vaults: each vault's latest sample at or before every instant any vault sampled. */
function series(vaults: VaultUsage[]): uPlot.AlignedData {
  const times = [...new Set(vaults.flatMap((v) => v.history.map((s) => Math.floor(Date.parse(s.time) / 1000))))].sort((a, b) => a - b);
  const columns = vaults.map((v) => {
    const samples = v.history.map((s) => [Math.floor(Date.parse(s.time) / 1000), s.storedBytes] as const);
    let i = -1;
    return times.map((t) => {
      while (i + 1 < samples.length && samples[i + 1]![0] <= t) i++;
      return i >= 0 ? samples[i]![1] : null;
    });
  });
  return [times, ...columns];
}

export function StorageChart(props: { vaults: VaultUsage[] }): ComponentChildren {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(200, el.clientWidth);
    const plot = new uPlot({
      width: width(), height: 220,
      series: [{}, ...props.vaults.map((v, i) => ({ label: v.vault, stroke: COLORS[i % COLORS.length]!, width: 2, value: (_u: uPlot, n: number | null) => bytes(n) }))],
      axes: [{}, { values: (_u: uPlot, splits: number[]) => splits.map((n) => bytes(n)), size: 80 }],
      scales: { x: { time: true } },
      legend: { show: true },
    }, series(props.vaults), el);
    const resize = () => plot.setSize({ width: width(), height: 220 });
    window.addEventListener('resize', resize);
    return () => { window.removeEventListener('resize', resize); plot.destroy(); };
  }, [props.vaults]);
  return html`<figure class="chart">
    <div ref=${box} role="img" aria-label=${`Stored bytes over time: ${props.vaults.map((v) => `${v.vault} ${bytes(v.storedBytes)}`).join(', ')}`}></div>
    <figcaption>Stored bytes per vault over time (hourly samples, up to 90 days)</figcaption>
  </figure>`;
}
