/**
 * The API of registered backup servers (servers.ts, server-copies.ts): registration with vault
 * credentials, the machines a server copies, online copies in, its state reports, and the
 * listing administrators read (`coffre vault servers`). Registered by one call from http.ts;
 * like every route, each names its operation and target. A server's packs and point objects
 * go through the ordinary data routes, which its key may use on its own machines only.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { validatePolicy } from '../policy/policy.js';
import type { Principal } from './access.js';
import type { Target } from './authorize.js';
import type { DataContext } from './data.js';
import { principalOf, type RouteAuth, type TargetResolver } from './route-auth.js';
import type { targets } from './route-targets.js';
import { vaultScope } from './roles.js';
import { commitCopy, startCopy } from './server-copies.js';
import { attachMachine, listServers, registerServer, reportSchema, saveReport, serverMachines, unregisterServer, wrappedKeysSchema } from './servers.js';
import { resolveVault } from './vaults.js';

interface Door {
  auth: (op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean) => { config: { auth: RouteAuth } };
  t: ReturnType<typeof targets>;
  parse: <T>(schema: z.ZodType<T>, value: unknown) => T;
}

const POINT_ID = z.string().regex(/^[0-9a-f]{16,32}$/);
const counters = z.object({
  bytesScanned: z.number().int().nonnegative(), bytesNew: z.number().int().nonnegative(), bytesUploaded: z.number().int().nonnegative(),
  filesScanned: z.number().int().nonnegative(), filesChanged: z.number().int().nonnegative(),
});

export function registerServerRoutes(app: FastifyInstance, ctx: DataContext, { auth, t, parse }: Door): void {
  const params = (req: FastifyRequest) => req.params as Record<string, string>;

  const vaultTarget = async (vaultId: string, containerId?: string): Promise<Target> => {
    const v = await ctx.db.selectFrom('vaults').select(['name', 'subscription']).where('id', '=', vaultId).executeTakeFirst();
    if (!v) throw new CoffreError('VaultNotFound', 'the vault of this backup server no longer exists');
    return { scope: vaultScope(v.subscription, v.name), vaultId, ...(containerId ? { containerId } : {}) };
  };
  /** A server's own vault; for anyone else the root (no role grants a server's work). */
  const serverVault: TargetResolver = async (_req, p: Principal) => (p.kind === 'server' ? vaultTarget(p.vaultId) : { scope: '/' });
  /** The machine a copy writes to, named in the body. */
  const bodyContainer: TargetResolver = async (req) => {
    const id = (req.body as { container?: unknown } | null)?.container;
    const row = typeof id === 'string' ? await ctx.db.selectFrom('containers').select(['id', 'vault_id']).where('id', '=', id).executeTakeFirst() : undefined;
    if (!row) throw new CoffreError('NotFound', `no machine ${String(id)} in this vault`);
    return vaultTarget(row.vault_id, row.id);
  };

  // Registration authenticates with the credentials' secret, not a token (as a machine's does).
  app.post('/v1/servers/register', { config: { auth: { op: 'public', auditAs: 'machine.register' } } }, async (req) => {
    const body = parse(z.object({ secret: z.string().min(1), name: z.string() }), req.body);
    return registerServer(ctx, body.secret, body.name);
  });
  app.post('/v1/servers/self/machines', auth('server.copy', serverVault), async (req) => {
    const body = parse(z.object({ machine: z.string(), wrappedKeys: wrappedKeysSchema }), req.body);
    return attachMachine(ctx, principalOf(req), body);
  });
  app.get('/v1/servers/self/machines', auth('server.copy', serverVault), async (req) => serverMachines(ctx, principalOf(req)));
  app.get('/v1/servers/self/policies/:name', auth('server.copy', serverVault), async (req) => {
    const p = principalOf(req);
    const vaultId = p.kind === 'server' ? p.vaultId : '';
    const row = await ctx.db.selectFrom('policies').select('body').where('vault_id', '=', vaultId).where('name', '=', params(req).name!).executeTakeFirst();
    if (!row) throw new CoffreError('PolicyNotFound', `the vault has no policy ${params(req).name}; create it there with \`coffre policy create\``);
    return validatePolicy(JSON.parse(row.body));
  });
  app.post('/v1/servers/self/copies', auth('server.copy', bodyContainer), async (req) => {
    const body = parse(z.object({
      container: z.string(), item: z.string(), kind: z.string().min(1).max(32), policy: z.string().min(1), point: POINT_ID, time: z.string().datetime(),
    }), req.body);
    return startCopy(ctx, principalOf(req), body);
  });
  app.post('/v1/servers/self/copies/:point/commit', auth('server.copy', t.job('body', 'jobId')), async (req) => {
    const body = parse(z.object({
      jobId: z.string(), files: z.number().int().nonnegative(), bytes: z.number().int().nonnegative(),
      consistency: z.enum(['app', 'filesystem', 'crash']), counters, details: z.record(z.string(), z.unknown()).optional(),
    }), req.body);
    return commitCopy(ctx, principalOf(req), parse(POINT_ID, params(req).point), body);
  });
  // Sent after every round of copies: state, not an action; the copies themselves are audited.
  app.put('/v1/servers/self/report', auth('server.copy', serverVault, false), async (req) => saveReport(ctx, principalOf(req), parse(reportSchema, req.body)));

  app.get('/v1/vaults/:vault/servers', auth('view', t.vault('params')), async (req) => listServers(ctx, await resolveVault(ctx, principalOf(req), params(req).vault)));
  app.delete('/v1/vaults/:vault/servers/:name', auth('machine.unregister', t.vault('params')), async (req) =>
    unregisterServer(ctx, await resolveVault(ctx, principalOf(req), params(req).vault), params(req).name!));
}
