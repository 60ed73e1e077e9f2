/**
 * Prometheus metrics at /metrics (prom-client, text format), every name prefixed `coffre_`.
 *
 * What the catalog holds is read from it at each scrape, so the numbers are the vault's, not
 * this process's: `coffre_jobs_total{operation,status}` counts every job the vault holds
 * (the same jobs `coffre jobs` lists), and the byte counters, points, stored bytes, item
 * health and active alerts are read the same way; several server nodes report the same
 * values. What only this process sees is counted in memory: HTTP requests and their
 * durations, the durations of the jobs that ended through it, webhook deliveries, and the
 * Node.js process metrics. Each server has a registry of its own (tests run several).
 */
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import type { VaultReplication } from './alert-rules.js';
import type { AlertCenter } from './alerts.js';
import { itemStates } from './protected-items.js';
import { vaultsNow } from './storage-history.js';
import { ALL } from './visibility.js';

export const PREFIX = 'coffre_';
const DURATION_BUCKETS = [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600];

export interface MetricsContext {
  db: Kysely<Database>;
  clock: Clock;
  /** What each vault with a paired region still has to copy there. */
  replication?: () => Promise<VaultReplication[]>;
}

/** One read shared by the collectors of a scrape, which run at once. */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | null = null;
  return () => {
    inFlight ??= read().finally(() => { setImmediate(() => { inFlight = null; }); });
    return inFlight;
  };
}

export class VaultMetrics {
  readonly registry = new Registry();
  private readonly jobDuration: Histogram<'operation' | 'status'>;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;

  constructor(private readonly ctx: MetricsContext, alerts: AlertCenter) {
    const registers = [this.registry];
    const db = ctx.db;
    const vaults = shared(() => vaultsNow(db, null));
    const items = shared(() => itemStates(db, ALL, ctx.clock.now()));
    const replication = shared(async () => (await ctx.replication?.()) ?? []);
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });

    new Counter({
      name: `${PREFIX}jobs_total`, help: 'Jobs the vault holds, by operation and status (one count per job; InProgress ones included)',
      labelNames: ['operation', 'status'], registers,
      async collect() {
        this.reset();
        const rows = await db.selectFrom('jobs').select(['operation', 'status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy(['operation', 'status']).execute();
        for (const r of rows) this.inc({ operation: r.operation, status: r.status }, Number(r.n));
      },
    });
    const byteCounter = (name: string, column: 'bytes_scanned' | 'bytes_new' | 'bytes_uploaded', help: string) => new Counter({
      name: `${PREFIX}job_${name}_total`, help, labelNames: ['operation'], registers,
      async collect() {
        this.reset();
        const rows = await db.selectFrom('jobs').select(['operation', (eb) => eb.fn.sum<number>(column).as('n')]).groupBy('operation').execute();
        for (const r of rows) this.inc({ operation: r.operation }, Number(r.n ?? 0));
      },
    });
    byteCounter('bytes_scanned', 'bytes_scanned', 'Bytes read from the source by jobs (unchanged files count at their size), by operation');
    byteCounter('bytes_new', 'bytes_new', 'Bytes of chunks the vault did not have yet (after deduplication, before compression), by operation');
    byteCounter('bytes_uploaded', 'bytes_uploaded', 'Bytes sent to the vault (compressed and encrypted), by operation');

    new Gauge({
      name: `${PREFIX}points`, help: 'Recovery points held, by vault', labelNames: ['vault'], registers,
      async collect() {
        this.reset();
        for (const v of await vaults()) this.set({ vault: v.name }, v.points);
      },
    });
    new Gauge({
      name: `${PREFIX}stored_bytes`, help: 'Bytes stored (packs in the object store), by vault', labelNames: ['vault'], registers,
      async collect() {
        this.reset();
        for (const v of await vaults()) this.set({ vault: v.name }, v.storedBytes);
      },
    });
    new Gauge({
      name: `${PREFIX}protected_bytes`, help: 'Bytes protected: the latest point of every item, by vault', labelNames: ['vault'], registers,
      async collect() {
        this.reset();
        for (const v of await vaults()) this.set({ vault: v.name }, v.protectedBytes);
      },
    });
    const replicationGauge = (name: string, help: string, value: (r: VaultReplication) => number) => new Gauge({
      name: `${PREFIX}replication_${name}`, help, labelNames: ['vault'], registers,
      async collect() {
        this.reset();
        for (const r of await replication()) this.set({ vault: r.name }, value(r));
      },
    });
    replicationGauge('pending_objects', 'Objects not yet copied to the paired region, by GRS vault', (r) => r.pendingObjects);
    replicationGauge('pending_bytes', 'Bytes not yet copied to the paired region, by GRS vault', (r) => r.pendingBytes);
    replicationGauge('oldest_pending_seconds', 'How long the oldest copy owed to the paired region has waited, by GRS vault (0: caught up)', (r) => r.oldestPendingSeconds);
    new Gauge({
      name: `${PREFIX}items`, help: 'Protected items, by vault and health', labelNames: ['vault', 'health'], registers,
      async collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const s of await items()) {
          const k = `${s.status.vault}\u0000${s.status.health}`;
          counts.set(k, (counts.get(k) ?? 0) + 1);
        }
        for (const [k, n] of counts) {
          const [vault, health] = k.split('\u0000') as [string, string];
          this.set({ vault, health }, n);
        }
      },
    });
    new Gauge({
      name: `${PREFIX}item_last_success_timestamp_seconds`, help: 'End of the last successful backup of each item (Unix time)', labelNames: ['vault', 'item'], registers,
      async collect() {
        this.reset();
        for (const s of await items()) {
          if (s.status.lastSuccess) this.set({ vault: s.status.vault, item: s.status.name }, Date.parse(s.status.lastSuccess) / 1000);
        }
      },
    });
    new Gauge({
      name: `${PREFIX}alerts_active`, help: 'Active alerts, by rule and severity', labelNames: ['rule', 'severity'], registers,
      async collect() {
        this.reset();
        const rows = await db.selectFrom('alerts').select(['rule', 'severity', (eb) => eb.fn.countAll<number>().as('n')]).where('state', '=', 'Active').groupBy(['rule', 'severity']).execute();
        for (const r of rows) this.set({ rule: r.rule, severity: r.severity }, Number(r.n));
      },
    });
    new Counter({
      name: `${PREFIX}alert_evaluation_errors_total`, help: 'Alert evaluations or deliveries that failed (retried on the next tick)', registers,
      collect() { this.reset(); this.inc(alerts.errors); },
    });
    new Gauge({
      name: `${PREFIX}alert_notifications_pending`, help: 'Webhook notifications not delivered yet (retrying)', registers,
      async collect() {
        const r = await db.selectFrom('alert_notifications').select((eb) => eb.fn.countAll<number>().as('n')).where('delivered_at', 'is', null).where('gave_up_at', 'is', null).executeTakeFirstOrThrow();
        this.set(Number(r.n));
      },
    });

    this.jobDuration = new Histogram({
      name: `${PREFIX}job_duration_seconds`, help: 'Durations of the jobs that ended through this server process', labelNames: ['operation', 'status'], buckets: DURATION_BUCKETS, registers,
    });
    this.httpRequests = new Counter({ name: `${PREFIX}http_requests_total`, help: 'HTTP requests answered by this server process', labelNames: ['method', 'route', 'status'], registers });
    this.httpDuration = new Histogram({
      name: `${PREFIX}http_request_duration_seconds`, help: 'Time to answer HTTP requests', labelNames: ['method', 'route'], buckets: [0.005, 0.02, 0.1, 0.5, 2, 10, 60], registers,
    });
  }

  /** Counts every answered request, by its route pattern (not its URL: ids would explode the label). */
  instrument(app: FastifyInstance): void {
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      this.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
      this.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    });
  }

  async jobEnded(jobId: string): Promise<void> {
    const row = await this.ctx.db.selectFrom('jobs').select(['operation', 'status', 'start_time', 'end_time']).where('id', '=', jobId).executeTakeFirst();
    if (!row?.end_time) return;
    this.jobDuration.observe({ operation: row.operation, status: row.status }, Math.max(0, (Date.parse(row.end_time) - Date.parse(row.start_time)) / 1000));
  }

  text(): Promise<string> { return this.registry.metrics(); }
  get contentType(): string { return this.registry.contentType; }
}
