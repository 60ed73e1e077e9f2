/**
 * The vault's HTTP API: the only door to the vault for agents, the CLI and the dashboard.
 * Handlers validate input at the edge (zod) and call the service modules; errors leave as
 * `{ "error": { "code", "message" } }` with the status of their code. Every route names its
 * semantic operation and target (`auth`): route-auth.ts authenticates, authorises and audits
 * each call before and after its handler, and refuses to register a route that names none.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import type { VaultStores } from './vault-stores.js';
import { readFrom, registerStorageRoutes } from './storage-http.js';
import { registerClusterRoutes, type ClusterStatus } from './cluster-status.js';
import type { Principal } from './access.js';
import { installRouteAuth, principalOf, type RouteAuth } from './route-auth.js';
import { installSlicedBodies } from './sliced-body.js';
import { targets } from './route-targets.js';
import { registerProtectionRoutes } from './http-protection.js';
import { registerServerRoutes } from './http-servers.js';
import { BodyPool } from './body-pool.js';
import * as data from './data.js';
import { listJobs, describeJob, loadJob, reportProgress, finishJob } from './jobs.js';
import * as vaults from './vaults.js';
import { verify } from './verify.js';
import * as policies from './policies.js';
import { collectGarbage } from './gc.js';
import { claimRun, dueRuns } from './scheduler.js';
import { registerMonitoringRoutes } from './monitoring-http.js';
import type { Monitoring } from './monitoring.js';
import { GUARD_REQUEST_HEADER } from './guard.js';
import { registerDbRoutes } from './db-http.js';

export interface ApiContext {
  db: Kysely<Database>; stores: VaultStores; clock: Clock;
  /**
   * The certificate fingerprint vault credentials carry for agents to pin: the self-signed
   * certificate's. Null for an operator's certificate (trusted through its CA, and renewed
   * without re-registering every machine) and over plain HTTP.
   */
  credentialsPin: string | null;
  /** The Backup center's alerts and metrics (monitoring.ts); made by registerMonitoringRoutes when absent. */
  monitoring?: Monitoring;
  /** Told whenever a job ends (jobs.ts). */
  jobEnded?: (jobId: string) => void;
  /** This node's view of the deployment (`GET /v1/cluster`); set by the server. */
  cluster?: () => Promise<ClusterStatus>;
}

const MAX_PACK_BYTES = 128 * 1024 * 1024;

export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CoffreError('BadRequest', `invalid request: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'malformed'}`);
  }
  return r.data;
}

const counters = z.object({
  bytesScanned: z.number().int().nonnegative(), bytesNew: z.number().int().nonnegative(), bytesUploaded: z.number().int().nonnegative(),
  filesScanned: z.number().int().nonnegative(), filesChanged: z.number().int().nonnegative(),
});
const problem = z.object({ code: z.string(), message: z.string(), path: z.string().optional() });

/** What a route extension gets to declare its routes as http.ts does (a backup server's, src/backup-server/). */
export interface RouteDoor {
  auth: (op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean) => { config: { auth: RouteAuth } };
  t: ReturnType<typeof targets>;
  parse: <T>(schema: z.ZodType<T>, value: unknown) => T;
}

declare module 'fastify' {
  /** The pooled buffer a pack range was read into, given back once the answer is sent. */
  interface FastifyRequest { leased?: Buffer }
}

export function buildApi(ctx: ApiContext, opts: { https?: { cert: string; key: string }; extend?: (app: FastifyInstance, door: RouteDoor) => void } = {}): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: MAX_PACK_BYTES, ...(opts.https ? { https: opts.https } : {}) });
  installRouteAuth(app, ctx);
  installSlicedBodies(app);
  const t = targets(ctx);
  const auth = (op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean) => ({ config: { auth: { op, ...(target ? { target } : {}), ...(audit === undefined ? {} : { audit }) } } });

  const bodies = new BodyPool(MAX_PACK_BYTES);
  app.addContentTypeParser('application/octet-stream', (req, payload, done) => {
    bodies.read(req.raw, payload).then((body) => done(null, body), (e: Error) => done(e, undefined));
  });
  // A pooled body is free again once its request is answered (every handler awaits its writes).
  app.addHook('onResponse', async (req) => {
    bodies.release(req.body);
    bodies.release(req.leased);
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof CoffreError) {
      req.errorCode = err.code;
      req.errorDetails = err.details;
      return reply.status(err.httpStatus).send(err.toJSON());
    }
    const e = err as { statusCode?: number; message?: string; code?: string };
    if (typeof e.statusCode === 'number' && e.statusCode < 500) {
      return reply.status(e.statusCode).send({ error: { code: 'BadRequest', message: e.message ?? 'bad request' } });
    }
    return reply.status(500).send({ error: { code: 'Internal', message: `internal error: ${e.message ?? String(err)}` } });
  });

  const who = async (req: FastifyRequest): Promise<Principal> => principalOf(req);
  const params = (req: FastifyRequest) => req.params as Record<string, string>;
  const guardRequest = (req: FastifyRequest): string | undefined => {
    const h = req.headers[GUARD_REQUEST_HEADER];
    return typeof h === 'string' && h ? h : undefined;
  };
  const query = (req: FastifyRequest) => req.query as Record<string, string | undefined>;
  const binary = (req: FastifyRequest): Buffer => {
    if (!Buffer.isBuffer(req.body)) throw new CoffreError('BadRequest', 'this endpoint takes application/octet-stream');
    return req.body;
  };

  // Backup center: health, alerts, reports, agent requests, /metrics (first: its request counter sees every route).
  registerMonitoringRoutes(app, ctx, who, { auth, t, parse });

  app.get('/v1/health', auth('public'), async () => ({ status: 'ok' }));

  app.post('/v1/vaults', auth('vault.create', t.newVault), async (req) => {
    const body = parse(z.object({ name: z.string(), subscription: z.string().optional(), redundancy: z.enum(['LRS', 'ZRS', 'GRS']).optional(), crossRegionRestore: z.boolean().optional() }), req.body);
    return vaults.createVault(ctx, await who(req), body);
  });
  app.get('/v1/vaults', auth('view', t.filtered), async (req) => vaults.listVaults(ctx, await who(req)));
  app.post('/v1/vaults/:vault/credentials', auth('machine.register', t.vault('params')), async (req) => {
    const body = parse(z.object({ days: z.number().int().optional() }), req.body ?? {});
    return { ...(await vaults.createCredentials(ctx, await who(req), params(req).vault!, body.days)), fingerprint: ctx.credentialsPin };
  });

  // Registration authenticates with the credentials' secret, not a token.
  app.post('/v1/register', { config: { auth: { op: 'public', auditAs: 'machine.register' } } }, async (req) => {
    const body = parse(z.object({ secret: z.string().min(1), machine: z.string() }), req.body);
    return vaults.register(ctx, body.secret, body.machine);
  });
  app.get('/v1/containers/:c/keys', auth('restore', t.container()), async (req) => vaults.getWrappedKeys(ctx, await who(req), params(req).c!));
  app.put('/v1/containers/:c/keys', auth('machine.keys', t.container()), async (req) => {
    await vaults.setWrappedKeys(ctx, await who(req), params(req).c!, parse(z.object({ version: z.literal(1) }).passthrough(), req.body));
    return { ok: true };
  });
  app.get('/v1/containers/:c/blobs', auth('backup.upload', t.container()), async (req, reply) => {
    reply.type('application/octet-stream');
    return data.blobIds(ctx, await who(req), params(req).c!);
  });
  app.post('/v1/containers/:c/blobs/locate', auth('restore', t.container(), false), async (req) => {
    const body = parse(z.object({ ids: z.array(z.string().regex(/^[0-9a-f]{64}$/)).max(200_000) }), req.body);
    return data.locateBlobs(ctx, await who(req), params(req).c!, body.ids);
  });
  app.put('/v1/containers/:c/packs/:pack', auth('backup.upload', t.container(), false), async (req) => data.putPack(ctx, await who(req), params(req).c!, params(req).pack!, binary(req)));
  app.get('/v1/containers/:c/packs/:pack', auth('restore', t.container()), async (req, reply) => {
    const q = query(req);
    const range = q.offset !== undefined && q.length !== undefined ? { offset: Number(q.offset), length: Number(q.length) } : undefined;
    if (range && !(Number.isSafeInteger(range.offset) && range.offset >= 0 && Number.isSafeInteger(range.length) && range.length > 0 && range.length <= MAX_PACK_BYTES)) {
      throw new CoffreError('BadRequest', 'offset and length must be non-negative integers');
    }
    reply.type('application/octet-stream');
    // Read into a pooled buffer, given back once the answer is sent (onResponse below).
    if (range) req.leased = bodies.lease(range.length);
    return data.readPackRange(ctx, await who(req), params(req).c!, params(req).pack!, range && { ...range, into: req.leased }, { from: readFrom(q.from), ...(q.job ? { jobId: q.job } : {}) });
  });

  app.post('/v1/backups', auth('backup.upload', t.ownVault), async (req) => {
    const body = parse(z.object({ item: z.string(), kind: z.string().optional(), source: z.unknown().optional() }), req.body);
    return data.startBackup(ctx, await who(req), body);
  });
  app.put('/v1/points/:point/:object', auth('backup.upload', t.job('query', 'job'), false), async (req) => {
    const object = params(req).object;
    if (object !== 'manifest' && object !== 'refs') throw new CoffreError('NotFound', 'no such point object');
    await data.putPointObject(ctx, await who(req), params(req).point!, query(req).job ?? '', object, binary(req));
    return { ok: true };
  });
  app.post('/v1/points/:point/commit', auth('backup.upload', t.job('body', 'jobId')), async (req) => {
    const body = parse(z.object({
      jobId: z.string(), files: z.number().int().nonnegative(), bytes: z.number().int().nonnegative(),
      kind: z.enum(['Scheduled', 'OnDemand']), consistency: z.enum(['app', 'filesystem', 'crash']),
      retainUntil: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).nullable().optional(), counters, warnings: z.array(problem),
      details: z.record(z.string(), z.unknown()).optional(),
    }), req.body);
    return data.commitPoint(ctx, await who(req), params(req).point!, body);
  });
  app.get('/v1/points', auth('view', t.vaultOrFiltered('query')), async (req) => {
    const q = query(req);
    return data.listPoints(ctx, await who(req), { ...(q.vault ? { vault: q.vault } : {}), ...(q.item ? { item: q.item } : {}) });
  });
  app.get('/v1/points/:point', auth('view', t.point()), async (req) => {
    const p = await who(req);
    const row = await data.pointForRead(ctx, p, params(req).point!, readFrom(query(req).from));
    return { ...(await data.describePoint(ctx, row.id)), containerId: row.container_id };
  });
  app.get('/v1/points/:point/manifest', auth('restore', t.point()), async (req, reply) => {
    const { manifest } = await data.getManifest(ctx, await who(req), params(req).point!, readFrom(query(req).from));
    reply.type('application/octet-stream');
    return manifest;
  });
  app.post('/v1/points/:point/restores', auth('restore', t.point()), async (req) => {
    const p = await who(req);
    const id = await data.startRestore(ctx, p, params(req).point!, parse(z.record(z.string(), z.unknown()), req.body ?? {}));
    return describeJob(ctx, id);
  });

  app.get('/v1/jobs', auth('view', t.vaultOrFiltered('query')), async (req) => {
    const p = await who(req);
    const q = query(req);
    const vault = q.vault ? await vaults.resolveVault(ctx, p, q.vault) : undefined;
    return listJobs(ctx, p, { ...(vault ? { vaultId: vault.id } : {}) });
  });
  app.get('/v1/jobs/:job', auth('view', t.job('params', 'job')), async (req) => {
    await loadJob(ctx, await who(req), params(req).job!);
    return describeJob(ctx, params(req).job!);
  });
  app.post('/v1/jobs/:job/progress', auth('job.report', t.job('params', 'job'), false), async (req) => {
    await reportProgress(ctx, await who(req), params(req).job!, parse(counters.partial(), req.body));
    return { ok: true };
  });
  app.post('/v1/jobs/:job/finish', auth('job.report', t.job('params', 'job')), async (req) => {
    const p = await who(req);
    const job = await loadJob(ctx, p, params(req).job!);
    const body = parse(z.object({
      status: z.enum(['Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled']), counters: counters.partial().optional(),
      errors: z.array(problem).optional(), warnings: z.array(problem).optional(), details: z.record(z.string(), z.unknown()).optional(),
    }), req.body);
    if (job.status === 'Cancelled') throw new CoffreError('JobCancelled', `job ${job.id} was cancelled`);
    // The same report again (an agent that retried on another node): the job already says so.
    if (job.status === body.status && job.operation !== 'Backup') return describeJob(ctx, job.id);
    if (job.status !== 'InProgress') throw new CoffreError('BadRequest', `job ${job.id} already ended (${job.status})`);
    // A backup completes only through its commit, which checks the point is whole.
    if (job.operation === 'Backup' && body.status !== 'Failed' && body.status !== 'Cancelled') {
      throw new CoffreError('BadRequest', 'a backup job completes by committing its point');
    }
    await finishJob(ctx, job.id, {
      status: body.status, ...(body.counters ? { counters: body.counters } : {}), ...(body.errors ? { errors: body.errors } : {}),
      ...(body.warnings ? { warnings: body.warnings } : {}), ...(body.details ? { details: body.details } : {}),
    });
    return describeJob(ctx, job.id);
  });
  // A repair writes missing and damaged copies back: more than viewing, it is the vault's redundancy at work.
  app.post('/v1/verify', { config: { auth: { op: 'view', target: t.vault('body'), chooseOp: (req: FastifyRequest) => ((req.body as { repair?: unknown } | null)?.repair === true ? 'redundancy.write' : 'view') } } }, async (req) => {
    const body = parse(z.object({ vault: z.string().optional(), item: z.string().optional(), repair: z.boolean().optional() }), req.body ?? {});
    return verify(ctx, await who(req), { ...(body.vault ? { vault: body.vault } : {}), ...(body.item ? { item: body.item } : {}), repair: body.repair ?? false });
  });

  app.get('/v1/policies', auth('view', t.vault('query')), async (req) => policies.listPolicies(ctx, await who(req), query(req).vault));
  app.get('/v1/policies/:name', auth('view', t.vault('query')), async (req) => policies.showPolicy(ctx, await who(req), query(req).vault, params(req).name!));
  app.post('/v1/policies', auth('policy.write', t.vault('body')), async (req) => {
    const body = parse(z.object({ vault: z.string().optional(), name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/), policy: z.unknown() }), req.body);
    return policies.createPolicy(ctx, await who(req), body.vault, body.name, body.policy);
  });
  app.put('/v1/policies/:name', auth('policy.write', t.vault('body')), async (req) => {
    const body = parse(z.object({ vault: z.string().optional(), policy: z.unknown(), dryRun: z.boolean().optional() }), req.body);
    return policies.setPolicy(ctx, await who(req), body.vault, params(req).name!, body.policy, body.dryRun ?? false, guardRequest(req));
  });
  app.post('/v1/policies/:name/assign', auth('protection.enable', t.vault('body')), async (req) => {
    const body = parse(z.object({ vault: z.string().optional(), item: z.string() }), req.body);
    return policies.assignPolicy(ctx, await who(req), body.vault, params(req).name!, body.item, guardRequest(req));
  });
  app.post('/v1/prune', auth('policy.write', t.vault('body')), async (req) => {
    const body = parse(z.object({ vault: z.string().optional() }), req.body ?? {});
    return policies.pruneVault(ctx, await who(req), body.vault);
  });

  app.post('/v1/gc', auth('policy.write', t.vault('body')), async (req) => {
    const body = parse(z.object({ vault: z.string().optional() }), req.body ?? {});
    return collectGarbage(ctx, await who(req), body.vault);
  });
  app.get('/v1/agent/due', auth('schedule.poll', t.ownVault), async (req) => dueRuns(ctx, await who(req)));
  app.post('/v1/agent/claim', auth('schedule.poll', t.ownVault, false), async (req) => {
    const body = parse(z.object({
      item: z.string(), scheduledAt: z.string().datetime(), onDemand: z.boolean().optional(), backupType: z.enum(['Full', 'Differential', 'Log']).optional(),
    }), req.body);
    await claimRun(ctx, await who(req), body.item, body.scheduledAt, { onDemand: body.onDemand ?? false, ...(body.backupType ? { backupType: body.backupType } : {}) });
    return { ok: true };
  });

  registerProtectionRoutes(app, ctx, { auth, t, parse, guardRequest });
  registerDbRoutes(app, ctx, who, { auth, t });
  registerStorageRoutes(app, ctx, who, { auth, t });
  registerServerRoutes(app, ctx, { auth, t, parse });
  opts.extend?.(app, { auth, t, parse });
  if (ctx.cluster) registerClusterRoutes(app, ctx.cluster, { auth, t });

  app.setNotFoundHandler((req, reply) => reply.status(404).send({ error: { code: 'NotFound', message: `no endpoint ${req.method} ${req.url}` } }));
  return app;
}
