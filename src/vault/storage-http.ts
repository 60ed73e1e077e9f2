/** The API of vault storage settings: `GET /v1/vaults/:vault` (details and copy state) and `PATCH` (redundancy, cross-region restore). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import type { ReadFrom } from './data.js';
import { setVaultStorage, showVault } from './redundancy.js';
import type { VaultContext } from './vaults.js';
import type { RouteAuth } from './route-auth.js';
import type { targets } from './route-targets.js';

/** `?from=` of the read endpoints: any copy (default) or the paired region only. */
export function readFrom(value: string | undefined): ReadFrom {
  if (value === undefined || value === '' || value === 'any' || value === 'primary') return 'any';
  if (value === 'secondary') return 'secondary';
  throw new CoffreError('BadRequest', `from=${value}: read from "secondary" or leave it out`);
}

/** How http.ts declares a route's operation and target (route-auth.ts). */
interface Doors {
  auth(op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean): { config: { auth: RouteAuth } };
  t: ReturnType<typeof targets>;
}

export function registerStorageRoutes(app: FastifyInstance, ctx: VaultContext, who: (req: FastifyRequest) => Promise<Principal>, { auth, t }: Doors): void {
  app.get('/v1/vaults/:vault', auth('view', t.vault('params')), async (req) => showVault(ctx, await who(req), (req.params as { vault: string }).vault));
  app.patch('/v1/vaults/:vault', auth('redundancy.write', t.vault('params')), async (req) => {
    const r = z.object({ redundancy: z.enum(['LRS', 'ZRS', 'GRS']).optional(), crossRegionRestore: z.boolean().optional() }).strict().safeParse(req.body ?? {});
    if (!r.success) throw new CoffreError('BadRequest', `invalid request: ${r.error.issues[0]?.path.join('.') || 'body'}: ${r.error.issues[0]?.message ?? 'malformed'}`);
    return setVaultStorage(ctx, await who(req), (req.params as { vault: string }).vault, {
      ...(r.data.redundancy ? { redundancy: r.data.redundancy } : {}), ...(r.data.crossRegionRestore !== undefined ? { crossRegionRestore: r.data.crossRegionRestore } : {}),
    });
  });
}
