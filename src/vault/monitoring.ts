/**
 * The Backup center's moving parts for one server: the alert center and the metrics registry,
 * and what the vault calls them on. The server builds one (server.ts), hands `jobEnded` to the
 * job bookkeeping (jobs.ts calls it whenever a job ends) and calls `tick` on its maintenance
 * tick: sample storage, evaluate the alert rules, deliver due notifications.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import type { VaultReplication } from './alert-rules.js';
import { AlertCenter } from './alerts.js';
import { VaultMetrics } from './metrics.js';
import { sampleStorage } from './storage-history.js';
import type { Fetch } from './webhooks.js';

export interface MonitoringOptions {
  /** How webhooks are called (default: fetch). */
  send?: Fetch;
  /** Told of evaluations that failed (they are retried on the next tick). */
  onError?: (e: unknown) => void;
}

export class Monitoring {
  readonly alerts: AlertCenter;
  readonly metrics: VaultMetrics;
  private closed = false;

  constructor(private readonly ctx: { db: Kysely<Database>; clock: Clock; replication?: () => Promise<VaultReplication[]> }, opts: MonitoringOptions = {}) {
    this.alerts = new AlertCenter(ctx, { ...(opts.send ? { send: opts.send } : {}), ...(opts.onError ? { onError: opts.onError } : {}) });
    this.metrics = new VaultMetrics(ctx, this.alerts);
  }

  /** Called by finishJob, possibly inside the transaction that ends the job: only schedules work. */
  readonly jobEnded = (jobId: string): void => {
    if (this.closed) return;
    setImmediate(() => {
      if (this.closed) return;
      // A lost observation only leaves a job out of a duration histogram.
      this.metrics.jobEnded(jobId).catch(() => undefined);
    });
    this.alerts.jobEnded();
  };

  async tick(): Promise<void> {
    if (this.closed) return;
    await sampleStorage(this.ctx);
    await this.alerts.evaluate();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.alerts.close();
  }
}
