/**
 * The HTTP doors of database protection, registered by one call from http.ts. Input is
 * validated here (zod) and the work is done in db-points.ts; errors leave as everywhere else.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import type { DataContext } from './data.js';
import type { RouteAuth } from './route-auth.js';
import type { targets } from './route-targets.js';
import { commitDbPoint, dbChain, dbRanges, protectDb, startDbBackup } from './db-points.js';
import { dbPointMetaSchema } from './db-point-rows.js';

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CoffreError('BadRequest', `invalid request: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'malformed'}`);
  }
  return r.data;
}

const backupType = z.enum(['Full', 'Differential', 'Log']);
const counters = z.object({
  bytesScanned: z.number().int().nonnegative(), bytesNew: z.number().int().nonnegative(), bytesUploaded: z.number().int().nonnegative(),
  filesScanned: z.number().int().nonnegative(), filesChanged: z.number().int().nonnegative(),
});
const problem = z.object({ code: z.string(), message: z.string(), path: z.string().optional() });
const meta = dbPointMetaSchema;

/** How http.ts declares a route's operation and target (route-auth.ts). */
interface Doors {
  auth(op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean): { config: { auth: RouteAuth } };
  t: ReturnType<typeof targets>;
}

export function registerDbRoutes(app: FastifyInstance, ctx: DataContext, who: (req: FastifyRequest) => Promise<Principal>, { auth, t }: Doors): void {
  const params = (req: FastifyRequest) => req.params as Record<string, string>;

  // Protecting a database and backing it up are its machine's own work (its agent key).
  app.post('/v1/db/items', auth('backup.upload', t.ownVault), async (req) => {
    const body = parse(z.object({ name: z.string(), policy: z.string().optional() }), req.body);
    return protectDb(ctx, await who(req), body);
  });
  app.get('/v1/db/items/:item/chain', auth('view', t.item()), async (req) => dbChain(ctx, await who(req), params(req).item!));
  app.get('/v1/db/items/:item/ranges', auth('view', t.item()), async (req) => dbRanges(ctx, await who(req), params(req).item!));
  app.post('/v1/db/items/:item/backups', auth('backup.upload', t.ownVault), async (req) => {
    const body = parse(z.object({ type: backupType }), req.body);
    return startDbBackup(ctx, await who(req), params(req).item!, body.type);
  });
  app.post('/v1/db/points/:point/commit', auth('backup.upload', t.job('body', 'jobId')), async (req) => {
    const body = parse(z.object({
      jobId: z.string(), files: z.number().int().nonnegative(), bytes: z.number().int().nonnegative(),
      kind: z.enum(['Scheduled', 'OnDemand']), retainUntil: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).nullable().optional(),
      counters, warnings: z.array(problem), details: z.record(z.string(), z.unknown()).optional(), database: meta,
    }), req.body);
    return commitDbPoint(ctx, await who(req), params(req).point!, { ...body, consistency: 'app' });
  });
}
