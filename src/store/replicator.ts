/**
 * Makes the copies that redundant stores queued: the paired region's copy of every GRS
 * object, and the zone copies a ZRS write or deletion missed. It works through the queue in
 * order, a few copies at a time, tasks of one key one after the other (a deletion never
 * overtakes the put before it). A task whose object (written once, like packs) is already at
 * its target with the queued size is done without copying, so a restart resumes without
 * copying again what arrived. A failed task is tried again later, with a growing delay.
 *
 * Sources are checked before their bytes are copied (`check`): a damaged primary copy is not
 * spread to the secondary; another copy is used, or the task waits.
 */
import type { CopyQueueWorker, QueuedCopy, StoreCopy } from './copies.js';
import { isNotFound } from './store-error.js';

export interface ReplicatorOptions {
  queue: CopyQueueWorker;
  /** The copies of a scope's store; null when the scope is gone (its tasks are dropped). */
  copiesOf(scope: string): Promise<readonly StoreCopy[] | null>;
  /** Whether a whole object read from a source copy is intact. */
  check?(key: string, data: Buffer): boolean;
  /** Objects rewritten in place (records): always copied, since an old version may have the same size. */
  mutable?(key: string): boolean;
  lanes?: number;
  batch?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How often an idle replicator looks at the queue (other writers, tasks coming due). */
  idleMs?: number;
  log?(line: string): void;
  /** The time tasks are due by: the queue's clock. */
  now?(): Date;
}

type Outcome = 'done' | 'later';

const REUSE_FROM = 1024 * 1024;
const REUSE_UP_TO = 32 * 1024 * 1024;

export class Replicator {
  private timer: NodeJS.Timeout | null = null;
  private wake: (() => void) | null = null;
  private stopped = true;
  private loop: Promise<void> | null = null;
  /** Rounds run one at a time, the background loop's and drain()'s alike. */
  private round: Promise<unknown> = Promise.resolve();
  private readonly lanes: number;
  private readonly batch: number;

  constructor(private readonly opts: ReplicatorOptions) {
    this.lanes = opts.lanes ?? 2;
    this.batch = opts.batch ?? 64;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.nudge();
    await this.loop;
    // A round that failed has logged or reported its failure already; stopping only waits for it.
    await this.round.catch(() => undefined);
  }

  /** New tasks were queued: look now rather than at the next idle tick. */
  nudge(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Works through every task now, delays ignored; resolves with the number still queued (failed). */
  async drain(): Promise<number> {
    let failed = 0;
    for (;;) {
      const r = await this.exclusive(() => this.oneRound(true));
      if (r.taken === 0) return 0;
      if (r.later === r.taken) { failed = r.later; return failed; }
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    // The previous round's failure belongs to its caller; this round runs after it either way.
    const next = this.round.catch(() => undefined).then(fn);
    this.round = next;
    return next;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let taken = 0;
      try {
        taken = (await this.exclusive(() => this.oneRound(false))).taken;
      } catch (e) {
        this.opts.log?.(`replication: ${(e as Error).message}`);
      }
      if (this.stopped) return;
      if (taken > 0) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, this.opts.idleMs ?? 2000);
        this.timer.unref();
      });
      if (this.timer) clearTimeout(this.timer);
      this.wake = null;
    }
  }

  private async oneRound(ignoreBackoff: boolean): Promise<{ taken: number; later: number }> {
    const now = () => this.opts.now?.() ?? new Date();
    const tasks = await this.opts.queue.due(this.batch, now(), ignoreBackoff);
    if (tasks.length === 0) return { taken: 0, later: 0 };
    // Tasks of one object at one target stay in order; different objects go in parallel.
    const groups = new Map<string, QueuedCopy[]>();
    for (const t of tasks) {
      const k = `${t.scope}\u0000${t.target}\u0000${t.key}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = []));
      g.push(t);
    }
    const queue = [...groups.values()];
    const done: number[] = [];
    let later = 0;
    const lane = async () => {
      for (let g = queue.shift(); g; g = queue.shift()) {
        for (const [i, t] of g.entries()) {
          let outcome: Outcome;
          let error = '';
          try {
            outcome = await this.copy(t);
          } catch (e) {
            outcome = 'later';
            error = (e as Error).message;
          }
          if (outcome === 'done') { done.push(t.id); continue; }
          // This task and the ones after it on the same object wait for the next try.
          for (const w of g.slice(i)) {
            const delay = Math.min(this.opts.retryMaxMs ?? 60_000, (this.opts.retryBaseMs ?? 1000) * 2 ** Math.min(w.attempts, 16));
            await this.opts.queue.later(w.id, new Date(now().getTime() + delay), error || 'no intact source copy could be read');
            later++;
          }
          break;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.lanes, queue.length) }, lane));
    if (done.length) await this.opts.queue.done(done);
    return { taken: tasks.length, later };
  }

  /** Read buffers of the lanes, each a lane's while one copy runs. */
  private readonly idle: Buffer[] = [];

  private async copy(t: QueuedCopy): Promise<Outcome> {
    const copies = await this.opts.copiesOf(t.scope);
    const target = copies?.find((c) => c.name === t.target);
    if (!copies || !target) {
      this.opts.log?.(`replication: dropping the copy of ${t.key} to ${t.target}: no such store in the topology any more`);
      return 'done';
    }
    if (t.op === 'delete') {
      await target.store.delete(t.key);
      return 'done';
    }
    if (!this.opts.mutable?.(t.key)) {
      const there = await target.store.stat(t.key);
      if (there && there.size === t.bytes) return 'done';
    }
    const sources = copies.filter((c) => c !== target);
    // A large object written once (a pack, of the size queued) is read into a reused buffer: fresh
    // memory per read cost more CPU than the copy itself. The lane awaits the put before the next read.
    const into = !this.opts.mutable?.(t.key) && t.bytes >= REUSE_FROM && t.bytes <= REUSE_UP_TO ? this.idle.pop() ?? Buffer.allocUnsafeSlow(REUSE_UP_TO) : null;
    try {
      return await this.copyFrom(t, target, sources, into);
    } finally {
      if (into && this.idle.length < this.lanes) this.idle.push(into);
    }
  }

  private async copyFrom(t: QueuedCopy, target: StoreCopy, sources: StoreCopy[], into: Buffer | null): Promise<Outcome> {
    let missing = 0;
    for (const source of sources) {
      let data: Buffer;
      try {
        data = into ? await source.store.get(t.key, { offset: 0, length: t.bytes, into }) : await source.store.get(t.key);
      } catch (e) {
        if (isNotFound(e)) { missing++; continue; }
        continue;
      }
      if (this.opts.check && !this.opts.check(t.key, data)) continue;
      await target.store.put(t.key, data);
      return 'done';
    }
    // Gone from every copy: deleted since it was queued.
    if (missing === sources.length) return 'done';
    return 'later';
  }
}
