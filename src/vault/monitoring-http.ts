/**
 * The Backup center's doors on the vault API, registered by one call from http.ts: item
 * health and the overview, job search, alerts and their settings, reports (JSON or CSV),
 * restore requests that agents carry out, and Prometheus metrics at /metrics.
 * Like http.ts, handlers validate at the edge and delegate.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { JobStatus, Operation } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { SYSTEM, type Principal } from './access.js';
import { findAlert, listAlerts } from './alerts.js';
import { loadSettings, saveSettings } from './alert-settings.js';
import { findPoint, type DataContext } from './data.js';
import { Monitoring } from './monitoring.js';
import { overview, searchJobs } from './overview.js';
import { replicationNow } from './storage-copies.js';
import { itemStates } from './protected-items.js';
import { buildReport, reportCsv } from './reports.js';
import { claimRestore, finishRestore, linkRestoreJob, listRestoreRequests, pendingRestores, requestRestore } from './restore-requests.js';
import { vaultScope } from './roles.js';
import type { RouteAuth } from './route-auth.js';
import type { targets } from './route-targets.js';
import { visibilityOf } from './visibility.js';
import { listNotifications } from './webhooks.js';

export interface MonitoringContext extends DataContext { monitoring?: Monitoring }

const JOB_STATUSES = ['Queued', 'InProgress', 'Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled'] as const satisfies readonly JobStatus[];
const OPERATIONS = ['Backup', 'Restore', 'Verify', 'Prune', 'GarbageCollect'] as const satisfies readonly Operation[];
const date = z.string().regex(/^\d{4}-\d{2}-\d{2}(T.*)?$/, 'a date YYYY-MM-DD or an ISO 8601 instant');

type Auth = (op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean) => { config: { auth: RouteAuth } };

/**
 * Registers the routes and the request metrics; returns the server's Monitoring (created here
 * when none is given). Listings are `view` over what the caller may view (the service filters);
 * alert settings are server-wide, so changing or reading them (webhook secrets) is
 * `security.write` at the root; a restore request is `restore` on the point's vault; the
 * agent's side of a request is its own machine's.
 */
export function registerMonitoringRoutes(app: FastifyInstance, ctx: MonitoringContext, who: (req: FastifyRequest) => Promise<Principal>,
  door: { auth: Auth; t: ReturnType<typeof targets>; parse: <T>(schema: z.ZodType<T>, value: unknown) => T }): Monitoring {
  const { auth, t, parse } = door;
  const monitoring = ctx.monitoring ?? new Monitoring({ ...ctx, replication: () => replicationNow(ctx) });
  monitoring.metrics.instrument(app);
  const params = (req: FastifyRequest) => req.params as Record<string, string>;
  const seen = async (req: FastifyRequest) => visibilityOf(ctx.db, await who(req));
  /** The vault (and machine) of the point a restore request names. */
  const pointInBody: RouteAuth['target'] = async (req) => {
    const body = req.body as { point?: unknown } | null;
    const row = await findPoint(ctx, SYSTEM, typeof body?.point === 'string' ? body.point : '');
    const v = await ctx.db.selectFrom('vaults').select(['name', 'subscription']).where('id', '=', row.vault_id).executeTakeFirstOrThrow();
    return { scope: vaultScope(v.subscription, v.name), vaultId: row.vault_id, containerId: row.container_id };
  };

  // Any principal's key reads the metrics: a Prometheus scraper holds one like any client.
  app.get('/metrics', auth('view', t.filtered), async (req, reply) => {
    await who(req);
    reply.type(monitoring.metrics.contentType);
    return monitoring.metrics.text();
  });

  app.get('/v1/monitor/overview', auth('view', t.filtered), async (req) => overview(ctx, await seen(req)));
  app.get('/v1/monitor/items', auth('view', t.filtered), async (req) => (await itemStates(ctx.db, await seen(req), ctx.clock.now())).map((s) => s.status));
  app.get('/v1/monitor/jobs', auth('view', t.filtered), async (req) => {
    const q = parse(z.object({
      status: z.enum(JOB_STATUSES).optional(), operation: z.enum(OPERATIONS).optional(), item: z.string().optional(), vault: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(500).optional(),
    }), req.query);
    return searchJobs(ctx.db, await seen(req), q);
  });

  app.get('/v1/alerts', auth('view', t.filtered), async (req) => {
    const q = parse(z.object({ all: z.enum(['true', 'false']).optional(), since: date.optional() }), req.query);
    return listAlerts(ctx.db, await seen(req), { all: q.all === 'true', ...(q.since ? { since: q.since } : {}) });
  });
  app.get('/v1/alerts/settings', auth('security.write', t.root), async () => loadSettings(ctx.db));
  app.put('/v1/alerts/settings', auth('security.write', t.root), async (req) => {
    const settings = await saveSettings(ctx, req.body);
    await monitoring.alerts.evaluate();
    return settings;
  });
  app.get('/v1/alerts/:alert', auth('view', t.filtered), async (req) => {
    const alert = await findAlert(ctx.db, await seen(req), params(req).alert!);
    if (!alert) throw new CoffreError('NotFound', `no alert ${params(req).alert}; list them with \`coffre alerts --all\``);
    return { alert, notifications: await listNotifications(ctx.db, [alert.id]) };
  });

  app.get('/v1/reports', auth('view', t.filtered), async (req, reply) => {
    const q = parse(z.object({ vault: z.string().optional(), item: z.string().optional(), from: date.optional(), to: date.optional(), format: z.enum(['json', 'csv']).optional() }), req.query);
    const report = await buildReport(ctx, await seen(req), q);
    if (q.format !== 'csv') return report;
    reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="coffre-report-${report.from.slice(0, 10)}-${report.to.slice(0, 10)}.csv"`);
    return reportCsv(report);
  });

  app.post('/v1/restore-requests', auth('restore', pointInBody), async (req) => {
    const body = parse(z.object({
      point: z.string(), target: z.string().min(1), paths: z.array(z.string()).max(1000).optional(), overwrite: z.enum(['skip', 'replace', 'rename']).optional(),
    }), req.body);
    return requestRestore(ctx, await who(req), body);
  });
  app.get('/v1/restore-requests', auth('view', t.filtered), async (req) => {
    const q = parse(z.object({ item: z.string().optional() }), req.query);
    return listRestoreRequests(ctx, await who(req), q.item ? { item: q.item } : {});
  });
  app.get('/v1/agent/restores', auth('schedule.poll', t.ownVault), async (req) => pendingRestores(ctx, await who(req)));
  app.post('/v1/agent/restores/:id/claim', auth('job.report', t.ownVault, false), async (req) => claimRestore(ctx, await who(req), params(req).id!));
  app.post('/v1/agent/restores/:id/job', auth('job.report', t.ownVault, false), async (req) => {
    const body = parse(z.object({ jobId: z.string() }), req.body);
    await linkRestoreJob(ctx, await who(req), params(req).id!, body.jobId);
    return { ok: true };
  });
  app.post('/v1/agent/restores/:id/finish', auth('job.report', t.ownVault, false), async (req) => {
    const body = parse(z.object({ jobId: z.string().optional(), error: z.string().max(4000).optional() }), req.body);
    return finishRestore(ctx, await who(req), params(req).id!, body);
  });
  return monitoring;
}
