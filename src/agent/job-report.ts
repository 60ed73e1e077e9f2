/** How the engines tell the vault about a running job: throttled progress, and failure. */
import type { JobCounters, JobProblem, PointKind } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import type { VaultClient } from './client.js';

/** How long an on-demand ("back up now") point is kept when no date is given, as cloud services do. */
export const DEFAULT_ON_DEMAND_DAYS = 30;

export function defaultRetainUntil(kind: PointKind, now: Date): string | null {
  return kind === 'OnDemand' ? new Date(now.getTime() + DEFAULT_ON_DEMAND_DAYS * 86_400_000).toISOString().slice(0, 10) : null;
}

/** Well inside the vault's STALE_JOB_MS (two minutes). */
const HEARTBEAT_MS = 15_000;

export class JobReporter {
  /** When the last report went out (the once-a-second limit). */
  private sentAt = 0;
  /** When the vault last heard of the job: its creation, then each report. */
  private heardAt = Date.now();
  /** The counters as the vault has them. */
  private lastSent: string | null = null;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly client: VaultClient, private readonly jobId: string, private readonly counters: () => Partial<JobCounters>) {}

  /**
   * Sends the counters at most once a second (or now, when forced), one report at a time, and
   * when they moved: the workers' first bytes are shown as soon as they are read, not a second
   * after a report of the zeros the vault already has. Unmoved counters still go out every
   * HEARTBEAT_MS: reports are the job's heartbeat, and the vault fails a job silent for two
   * minutes (a long pre-script, a stalled read). Best effort: a lost report is replaced by the next.
   */
  progress(force = false): void {
    const now = Date.now();
    if (!force && now - this.sentAt < 1000) return;
    const counters = this.counters();
    const sent = JSON.stringify(counters);
    // The vault created the job with zero counters: that is what it has until a first report.
    this.lastSent ??= JSON.stringify(Object.fromEntries(Object.keys(counters).map((k) => [k, 0])));
    if (!force && sent === this.lastSent && now - this.heardAt < HEARTBEAT_MS) return;
    this.sentAt = now;
    this.heardAt = now;
    this.lastSent = sent;
    this.chain = this.chain.then(() => this.client.progress(this.jobId, counters)).catch(() => undefined);
  }

  /** Waits for the reports in flight, so that none arrives after the job has ended. */
  drain(): Promise<void> {
    return this.chain;
  }

  /** Ends the job as Failed with the error that stopped it; best effort, since the vault fails a silent job on its own. */
  async fail(error: unknown, warnings: JobProblem[], earlier: JobProblem[] = []): Promise<void> {
    await this.drain();
    const err = error instanceof CoffreError ? error : new CoffreError('Internal', (error as Error).message);
    await this.client.finishJob(this.jobId, { status: 'Failed', counters: this.counters(), errors: [...earlier, { code: err.code, message: err.message }], warnings })
      .catch(() => undefined);
  }
}
