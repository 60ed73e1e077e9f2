/**
 * Authorisation at the door, for every route: each route's options name its semantic
 * operation and how to find its target (`{ config: { op, target } }`). Hooks then
 * authenticate (before the body is read), resolve the target and call authorize() (before the
 * handler), and write the audit entry of every mutating call before its answer leaves.
 *
 * A route that names no operation cannot be registered at all: the onRoute hook throws, so the
 * server does not start with a door nobody decided about.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { authenticate, type Principal } from './access.js';
import { recordAudit } from './audit.js';
import { authorize, type Target } from './authorize.js';
import { operationLabel, type Operation } from './roles.js';

export type TargetResolver = (req: FastifyRequest, p: Principal) => Promise<Target>;

export interface RouteAuth {
  op: Operation;
  /** How the audit log names a public route's call (registration, authenticated by its secret). */
  auditAs?: Operation;
  /** For a route whose operation depends on the request (stop with or without the data). */
  chooseOp?: (req: FastifyRequest) => Operation;
  /** Where the operation applies; public routes need none. */
  target?: TargetResolver;
  /**
   * Mutating calls are audited unless this is false: the data path of a backup (packs, point
   * objects, progress) is recorded by its job and its commit instead, one entry per backup
   * rather than one per pack. A refused call is audited whatever this says.
   */
  audit?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig { auth?: RouteAuth }
  interface FastifyRequest { principal?: Principal; target?: Target; operation?: Operation; errorCode?: string; errorDetails?: unknown }
}

export class MissingOperationError extends Error {}

/** The principal of an authenticated request (every non-public route has one). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new CoffreError('Unauthorized', 'this call needs a token');
  return req.principal;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function installRouteAuth(app: FastifyInstance, ctx: { db: Kysely<Database>; clock: Clock }): void {
  app.addHook('onRoute', (route) => {
    const auth = (route.config as { auth?: RouteAuth } | undefined)?.auth;
    if (!auth?.op || !(operationLabel(auth.op))) {
      throw new MissingOperationError(`route ${String(route.method)} ${route.url} names no operation: every route declares { config: { auth: { op, target } } }`);
    }
    if (auth.op !== 'public' && !auth.target) throw new MissingOperationError(`route ${String(route.method)} ${route.url} names no target for ${auth.op}`);
  });

  app.addHook('onRequest', async (req) => {
    const auth = req.routeOptions.config.auth;
    if (!auth || auth.op === 'public') return;
    req.principal = await authenticate(ctx.db, req.headers.authorization);
  });

  app.addHook('preHandler', async (req) => {
    const auth = req.routeOptions.config.auth;
    if (!auth || auth.op === 'public' || !auth.target) return;
    const p = principalOf(req);
    req.target = await auth.target(req, p);
    req.operation = auth.chooseOp?.(req) ?? auth.op;
    await authorize(ctx.db, p, req.operation, req.target);
  });

  app.addHook('onSend', async (req, reply, payload) => {
    const auth = req.routeOptions.config?.auth;
    if (!auth || !MUTATING.has(req.method)) return payload;
    const refused = reply.statusCode === 401 || reply.statusCode === 403;
    if (auth.audit === false && !refused) return payload;
    await recordAudit(ctx, {
      principal: req.principal, operation: req.operation ?? auth.auditAs ?? auth.op, target: req.target ?? null, resource: req.url.split('?')[0]!,
      status: reply.statusCode, code: req.errorCode ?? null, guardRequest: req.headers['x-coffre-guard-request'],
      ...(req.errorDetails !== undefined ? { details: { error: req.errorDetails } } : {}),
    });
    return payload;
  });
}
