/**
 * `GET /v1/cluster` (`coffre server status`): what a node knows of the deployment it is part
 * of — itself, the nodes sharing its catalog (live or not), which node holds each lease, and
 * the catalog's engine and schema version. Any node answers the same (from the catalog), so a
 * load balancer may send the call anywhere.
 */
import type { FastifyInstance } from 'fastify';
import type { ClusterStatus } from '../core/cluster.js';
import type { RouteAuth } from './route-auth.js';
import type { targets } from './route-targets.js';

export type { ClusterStatus };

interface Doors {
  auth(op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean): { config: { auth: RouteAuth } };
  t: ReturnType<typeof targets>;
}

export function registerClusterRoutes(app: FastifyInstance, status: () => Promise<ClusterStatus>, { auth, t }: Doors): void {
  app.get('/v1/cluster', auth('view', t.root), async () => status());
}
