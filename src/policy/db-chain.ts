/**
 * The chain of a database's points, as pure functions: which seconds can be restored, and
 * which points a restore to a given second needs. Used by the vault (ranges, chain-aware
 * retention) and by the agent (restore planning), so both read the chain the same way.
 *
 * A base (a Full, or a Differential whose Full exists) holds the WAL from its start to its stop
 * segment, and restores on its own to the instant it became consistent (`consistentAt`). Log
 * points hold consecutive WAL segments; a run of them without a gap continues a base when it
 * holds the segment right after the base's last one (or earlier ones too). Each log point ends
 * with a commit Coffre makes just before switching segments, at `to`: replay to any instant
 * before `to` finds a later commit and stops there, so a base and a run make every instant of
 * [base.consistentAt, last log's to) restorable, to the microsecond.
 */
import type { DbBackupType } from '../core/api.js';

export interface ChainPoint {
  id: string;
  type: DbBackupType;
  timeline: number;
  firstSegment: number;
  lastSegment: number;
  /** Bases: when the base became consistent. */
  consistentAt?: string | null;
  /** Differentials: their Full. */
  basedOn?: string | null;
  /** Logs: their range [from, to). */
  from?: string | null;
  to?: string | null;
}

export type RestoreTarget = { kind: 'time'; time: string } | { kind: 'immediate' } | { kind: 'end' };

export interface RestorePlan {
  full: string;
  differential: string | null;
  /** Log points whose WAL replay needs, in order. */
  logs: string[];
  target: RestoreTarget;
  /** The instant the restored database reflects (for `end`: the last log's end). */
  time: string;
}

export interface Window { from: string; to: string; timeline: number; base: ChainPoint; run: ChainPoint[] }

const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) : NaN);

/** Logs sorted into runs of consecutive segments on one timeline, oldest first. */
export function logRuns(points: readonly ChainPoint[]): ChainPoint[][] {
  const logs = points.filter((p) => p.type === 'Log').sort((a, b) => a.timeline - b.timeline || a.firstSegment - b.firstSegment);
  const runs: ChainPoint[][] = [];
  for (const l of logs) {
    const run = runs[runs.length - 1];
    const last = run?.[run.length - 1];
    if (run && last && last.timeline === l.timeline && l.firstSegment === last.lastSegment + 1) run.push(l);
    else runs.push([l]);
  }
  return runs;
}

/** Bases that can be restored: every Full, and Differentials whose Full is present. */
export function usableBases(points: readonly ChainPoint[]): ChainPoint[] {
  const fulls = new Set(points.filter((p) => p.type === 'Full').map((p) => p.id));
  return points.filter((p) => (p.type === 'Full' || (p.type === 'Differential' && p.basedOn && fulls.has(p.basedOn))) && p.consistentAt);
}

/** The logs of `run` that replay after `base`: those holding segments past the base's last. */
function logsAfter(base: ChainPoint, run: readonly ChainPoint[]): ChainPoint[] {
  return run.filter((l) => l.lastSegment > base.lastSegment);
}

/** Every (base, run) pair that gives a span of restorable time. */
export function windows(points: readonly ChainPoint[]): Window[] {
  const out: Window[] = [];
  const runs = logRuns(points);
  for (const base of usableBases(points)) {
    for (const run of runs) {
      const first = run[0]!;
      const last = run[run.length - 1]!;
      if (first.timeline !== base.timeline) continue;
      // The run must hold the segment right after the base's last one: no gap between them.
      if (!(first.firstSegment <= base.lastSegment + 1 && last.lastSegment >= base.lastSegment + 1)) continue;
      if (!(ms(last.to) > ms(base.consistentAt))) continue;
      out.push({ from: base.consistentAt!, to: last.to!, timeline: base.timeline, base, run: logsAfter(base, run) });
    }
  }
  return out;
}

/** The continuous restorable ranges, merged and sorted. */
export function restorableRanges(points: readonly ChainPoint[]): { from: string; to: string; timeline: number }[] {
  const spans = windows(points).map((w) => ({ from: ms(w.from), to: ms(w.to), timeline: w.timeline })).sort((a, b) => a.from - b.from);
  const merged: { from: number; to: number; timeline: number }[] = [];
  for (const s of spans) {
    const last = merged[merged.length - 1];
    if (last && last.timeline === s.timeline && s.from <= last.to) last.to = Math.max(last.to, s.to);
    else merged.push({ ...s });
  }
  return merged.map((r) => ({ from: new Date(r.from).toISOString(), to: new Date(r.to).toISOString(), timeline: r.timeline }));
}

function baseParts(base: ChainPoint): { full: string; differential: string | null } {
  return base.type === 'Differential' ? { full: base.basedOn!, differential: base.id } : { full: base.id, differential: null };
}

/** Prefers the base closest to the target (least replay); a Differential over a Full at the same instant. */
function better(a: Window, b: Window): boolean {
  const d = ms(a.base.consistentAt) - ms(b.base.consistentAt);
  if (d !== 0) return d > 0;
  return a.base.type === 'Differential' && b.base.type !== 'Differential';
}

/** The plan that restores exactly `time`, or null when no window holds it. */
export function planForTime(points: readonly ChainPoint[], time: string): RestorePlan | null {
  return planIn(windows(points), time);
}

function planIn(all: readonly Window[], time: string): RestorePlan | null {
  const t = ms(time);
  let best: Window | null = null;
  for (const w of all) {
    if (ms(w.from) <= t && t < ms(w.to) && (!best || better(w, best))) best = w;
  }
  if (!best) return null;
  const logs: string[] = [];
  for (const l of best.run) {
    logs.push(l.id);
    if (ms(l.to) > t) break;
  }
  return { ...baseParts(best.base), logs, target: { kind: 'time', time }, time };
}

/**
 * The plan that restores a point: a base to the instant it became consistent; a Log point to
 * the end of its WAL, from the closest base its run continues.
 */
export function planForPoint(points: readonly ChainPoint[], id: string): RestorePlan | null {
  const p = points.find((x) => x.id === id);
  if (!p) return null;
  if (p.type !== 'Log') {
    if (!usableBases(points).some((b) => b.id === p.id)) return null;
    return { ...baseParts(p), logs: [], target: { kind: 'immediate' }, time: p.consistentAt! };
  }
  let best: Window | null = null;
  for (const w of windows(points)) {
    if (w.run.some((l) => l.id === id) && (!best || better(w, best))) best = w;
  }
  if (!best) return null;
  const logs: string[] = [];
  for (const l of best.run) {
    logs.push(l.id);
    if (l.id === id) break;
  }
  return { ...baseParts(best.base), logs, target: { kind: 'end' }, time: p.to! };
}

/** The most recent state that can be restored: the end of the latest window, or a base newer than every window. */
export function planLatest(points: readonly ChainPoint[]): RestorePlan | null {
  let best: { plan: RestorePlan; at: number; baseAt: number } | null = null;
  const consider = (plan: RestorePlan, at: number, baseAt: number) => {
    if (!best || at > best.at || (at === best.at && baseAt > best.baseAt)) best = { plan, at, baseAt };
  };
  for (const w of windows(points)) {
    consider({ ...baseParts(w.base), logs: w.run.map((l) => l.id), target: { kind: 'end' }, time: w.to }, ms(w.to), ms(w.base.consistentAt));
  }
  for (const b of usableBases(points)) {
    consider({ ...baseParts(b), logs: [], target: { kind: 'immediate' }, time: b.consistentAt! }, ms(b.consistentAt), ms(b.consistentAt));
  }
  return (best as { plan: RestorePlan } | null)?.plan ?? null;
}

/** Every point a plan reads. */
export function planPoints(plan: RestorePlan): string[] {
  return [plan.full, ...(plan.differential ? [plan.differential] : []), ...plan.logs];
}

/**
 * What each point needs to be restorable: a Differential its Full; a Log point the base and
 * the earlier logs that replay to the first instant of its range. A point needs only points
 * older than itself in the chain (a base consistent before the log's range, logs that end
 * before it starts), so needs never form a cycle.
 */
export function needsOfAll(points: readonly ChainPoint[]): Map<string, string[]> {
  const all = windows(points);
  const ids = new Set(points.map((p) => p.id));
  const out = new Map<string, string[]>();
  // The earliest instant of each log's range that some window covers.
  const earliest = new Map<string, number>();
  for (const w of all) {
    for (const l of w.run) {
      const t = Math.max(ms(l.from), ms(w.from));
      if (t < ms(l.to) && t < (earliest.get(l.id) ?? Infinity)) earliest.set(l.id, t);
    }
  }
  for (const p of points) {
    if (p.type === 'Differential') out.set(p.id, p.basedOn && ids.has(p.basedOn) ? [p.basedOn] : []);
    else if (p.type === 'Log' && earliest.has(p.id)) {
      const plan = planIn(all, new Date(earliest.get(p.id)!).toISOString());
      out.set(p.id, plan ? planPoints(plan).filter((x) => x !== p.id) : []);
    } else out.set(p.id, []);
  }
  return out;
}

/** The ranges nearest a refused instant: the last that ends before it and the first that starts after it. */
export function nearestRanges(ranges: readonly { from: string; to: string; timeline: number }[], time: string): { from: string; to: string; timeline: number }[] {
  const t = ms(time);
  const before = ranges.filter((r) => ms(r.to) <= t).sort((a, b) => ms(b.to) - ms(a.to))[0];
  const after = ranges.filter((r) => ms(r.from) > t).sort((a, b) => ms(a.from) - ms(b.from))[0];
  return [before, after].filter((r): r is { from: string; to: string; timeline: number } => r !== undefined);
}
