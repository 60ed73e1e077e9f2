/** How the engines tell the vault about a running job: throttled progress, and failure. */
import type { JobCounters, JobProblem, PointKind } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import type { VaultClient } from './client.js';

/** How long an on-demand ("back up now") point is kept when no date is given, as cloud services do. */
export const DEFAULT_ON_DEMAND_DAYS = 30;

export function defaultRetainUntil(kind: PointKind, now: Date): string | null {
  return kind === 'OnDemand' ? new Date(now.getTime() + DEFAULT_ON_DEMAND_DAYS * 86_400_000).toISOString().slice(0, 10) : null;
}

export class JobReporter {
  private last = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly client: VaultClient, private readonly jobId: string, private readonly counters: () => Partial<JobCounters>) {}

  /**
   * Sends the counters at most once a second (or now, when forced), one report at a time.
   * Reports are best effort: a lost one is replaced by the next.
   */
  progress(force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 1000) return;
    this.last = now;
    this.chain = this.chain.then(() => this.client.progress(this.jobId, this.counters())).catch(() => undefined);
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
