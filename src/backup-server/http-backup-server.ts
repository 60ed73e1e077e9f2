/**
 * The backup server's own routes, beside the vault API it serves to its agents: protection
 * groups, online copies and the bandwidth schedule. Declared through the vault's door
 * (route-auth.ts: every route names its semantic operation and target, and is audited), with
 * the same roles as the vault's: a group is a policy matter, adding an item to one is enabling
 * protection, an online copy now is an on-demand backup.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import type { RouteDoor } from '../vault/http.js';
import { principalOf, type TargetResolver } from '../vault/route-auth.js';
import { vaultScope } from '../vault/roles.js';
import { addToGroup, createGroup, deleteGroup, removeFromGroup } from './groups.js';
import type { OnlineProtection } from './protection.js';

const NAME = z.string().min(1).max(63);

/**
 * `engine` resolves once the server's own vault and online protection are ready (the service
 * answers a little before: its routes wait for them).
 */
export function registerBackupServerRoutes(app: FastifyInstance, { auth, parse }: RouteDoor, engine: Promise<OnlineProtection>): void {
  const params = (req: FastifyRequest) => req.params as Record<string, string>;
  const query = (req: FastifyRequest) => req.query as Record<string, string | undefined>;
  let ready: OnlineProtection | null = null;
  void engine.then((p) => { ready = p; }, () => undefined);
  const e = (): OnlineProtection => {
    // Handlers run after the target resolver below, which awaited the engine.
    if (!ready) throw new CoffreError('Internal', 'the backup server did not start');
    return ready;
  };
  // Everything acts on the backup server's own vault, whatever other vaults it may hold.
  const local: TargetResolver = async () => {
    const v = (await engine).vault;
    return { scope: vaultScope(v.subscription, v.name), vaultId: v.id };
  };

  app.get('/v1/backup-server', auth('view', local), async () => e().status());

  app.get('/v1/groups', auth('view', local), async () => e().groups());
  app.get('/v1/groups/:name', auth('view', local), async (req) => e().group(params(req).name!));
  app.post('/v1/groups', auth('policy.write', local), async (req) => {
    const body = parse(z.object({ name: NAME, shortTermPolicy: NAME, onlinePolicy: NAME }), req.body);
    const p = e();
    // The online policy must exist in the vault now, not at the first copy.
    await p.onlinePolicy(body.onlinePolicy).catch((err: unknown) => {
      if (err instanceof CoffreError && err.code === 'PolicyNotFound') throw new CoffreError('PolicyNotFound', `the vault ${p.link.vault} has no policy ${body.onlinePolicy}; create the online policy there with \`coffre policy create\``);
      throw err;
    });
    await createGroup(p.context, p.vault, body);
    return p.group(body.name);
  });
  app.delete('/v1/groups/:name', auth('policy.write', local), async (req) => {
    await deleteGroup(e().context, e().vault, params(req).name!);
    return { deleted: params(req).name! };
  });
  app.post('/v1/groups/:name/items', auth('protection.enable', local), async (req) => {
    const body = parse(z.object({ machine: NAME, item: NAME }), req.body);
    await addToGroup(e().context, principalOf(req), e().vault, params(req).name!, body.machine, body.item);
    return e().group(params(req).name!);
  });
  app.post('/v1/groups/:name/items/remove', auth('protection.stopRetain', local), async (req) => {
    const body = parse(z.object({ item: NAME }), req.body);
    await removeFromGroup(e().context, e().vault, params(req).name!, body.item);
    return e().group(params(req).name!);
  });

  app.post('/v1/online/copies', auth('backup.onDemand', local), async (req) => {
    const body = parse(z.object({ item: NAME, point: z.string().regex(/^[0-9a-f]{6,32}$/).optional() }), req.body);
    return e().copyNow(body.item, body.point);
  });
  app.get('/v1/online/copies', auth('view', local), async (req) => e().copies(query(req).item));
  app.get('/v1/online/throttle', auth('view', local), async () => e().throttleInfo());
  app.put('/v1/online/throttle', auth('policy.write', local), async (req) => e().setThrottle(req.body));
}

