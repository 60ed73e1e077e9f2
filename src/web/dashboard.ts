/**
 * The Backup center, the vault's web dashboard, served at `/` by `coffre server` on the API's
 * own origin. Registered by one call from the server's composition root (src/vault/server.ts).
 *
 * Shape, and why:
 * - Sign-in takes a principal's key (or the admin token) and checks it with the vault's one
 *   door from a key to a principal (`authenticate`, src/vault/access.ts); agent keys are
 *   refused, a machine has no business in the dashboard. The session (sessions.ts) keeps the
 *   key server-side; the page only holds an HttpOnly, SameSite=Strict cookie.
 * - The page calls `/ui/api/v1/...`, which forwards to the REST API in-process
 *   (`app.inject`) with the session's key as its bearer token. The dashboard therefore sees and
 *   does exactly what the principal could with the CLI: every check of the API applies
 *   unchanged, as roles grow, and a refusal reaches the page with its code and message.
 * - CSRF: every request that changes something must carry the session's CSRF token in
 *   `x-csrf-token` and come from this origin (Origin, or Sec-Fetch-Site for browsers that omit
 *   it); the cookie is SameSite=Strict as well.
 * - The browser code is plain TypeScript modules compiled by tsc (src/web/client), rendered with
 *   Preact (4 kB, React's API, kept by an active team) through htm tagged templates, so there
 *   is no bundler and no JSX build step; charts use uPlot (45 kB, canvas, fast on thousands of
 *   points, MIT, actively maintained). All are served from node_modules by this server, never a
 *   CDN, under a strict Content-Security-Policy (assets.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CoffreError } from '../core/errors.js';
import { principalName, type Principal } from '../vault/access.js';
import { contentSecurityPolicy, loadAssets } from './assets.js';
import { clearedCookie, sameSecret, sessionCookie, SessionStore, type Session } from './sessions.js';

export interface DashboardOptions {
  /** The vault's door from a key to a principal; throws Unauthorized for an unknown key. */
  authenticate(key: string): Promise<Principal>;
  /** Wall-clock milliseconds for session expiry (tests may replace it). */
  now?: () => number;
}

const API_PREFIX = '/ui/api';
/**
 * These routes check the session cookie themselves; to an API door that authenticates bearer
 * keys route by route they are public (the API calls they forward carry the principal's key
 * and are checked and audited there).
 */
const OWN_AUTH = { config: { auth: { op: 'public' as const, audit: false } } };
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
export const CSRF_HEADER = 'x-csrf-token';

/** A request from this dashboard's own pages: its Origin is this server's, or the browser says same-origin. */
function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin !== undefined) return origin === `${req.protocol}://${req.headers.host ?? ''}`;
  return req.headers['sec-fetch-site'] === 'same-origin';
}

export function registerDashboard(app: FastifyInstance, opts: DashboardOptions): void {
  const assets = loadAssets();
  const csp = contentSecurityPolicy();
  const sessions = new SessionStore(opts.now);
  const secure = (req: FastifyRequest) => req.protocol === 'https';

  const guardWrite = (req: FastifyRequest) => {
    if (!sameOrigin(req)) throw new CoffreError('Forbidden', 'this request did not come from the Backup center\'s own page (Origin check)');
  };
  const session = (req: FastifyRequest): Session => {
    const s = sessions.get(req.headers.cookie);
    if (!s) throw new CoffreError('Unauthorized', 'sign in to the Backup center (your session ended or never began)');
    return s;
  };
  const guardCsrf = (req: FastifyRequest, s: Session) => {
    guardWrite(req);
    const token = req.headers[CSRF_HEADER];
    if (!sameSecret(typeof token === 'string' ? token : undefined, s.csrf)) throw new CoffreError('Forbidden', 'missing or wrong CSRF token: reload the Backup center');
  };

  const serve = (path: string, reply: FastifyReply, req: FastifyRequest) => {
    const a = assets.get(path);
    if (!a) throw new CoffreError('NotFound', `no file ${path}`);
    reply.header('content-security-policy', csp).header('x-content-type-options', 'nosniff').header('x-frame-options', 'DENY')
      .header('referrer-policy', 'same-origin').header('cache-control', 'no-cache').header('etag', a.etag).type(a.type);
    if (req.headers['if-none-match'] === a.etag) return reply.status(304).send();
    return reply.send(a.body);
  };
  app.get('/', OWN_AUTH, async (req, reply) => serve('/', reply, req));
  app.get('/assets/*', OWN_AUTH, async (req, reply) => serve(req.url.split('?')[0]!, reply, req));

  app.post('/ui/session', OWN_AUTH, async (req, reply) => {
    guardWrite(req);
    const body = req.body as { key?: unknown } | undefined;
    const key = typeof body?.key === 'string' ? body.key.trim() : '';
    if (!key) throw new CoffreError('BadRequest', 'give a principal\'s key or the admin token');
    const p = await opts.authenticate(key);
    if (p.kind === 'agent') throw new CoffreError('Forbidden', 'a machine\'s agent key cannot open the Backup center: sign in with a principal\'s key or the admin token');
    const s = sessions.create(key, principalName(p));
    reply.header('set-cookie', sessionCookie(s.id, secure(req))).header('cache-control', 'no-store');
    return { principal: s.principal, csrf: s.csrf };
  });
  app.get('/ui/session', OWN_AUTH, async (req, reply) => {
    const s = session(req);
    reply.header('cache-control', 'no-store');
    return { principal: s.principal, csrf: s.csrf };
  });
  app.delete('/ui/session', OWN_AUTH, async (req, reply) => {
    const s = session(req);
    guardCsrf(req, s);
    sessions.end(s.id);
    reply.header('set-cookie', clearedCookie(secure(req)));
    return { ok: true };
  });

  const forward = async (req: FastifyRequest, reply: FastifyReply) => {
    const s = session(req);
    if (MUTATING.has(req.method)) guardCsrf(req, s);
    const url = req.url.slice(API_PREFIX.length);
    const path = url.split('?')[0]!;
    if (!path.startsWith('/v1/') || path.split('/').some((seg) => seg === '..' || seg === '.')) throw new CoffreError('NotFound', `no endpoint ${req.method} ${req.url}`);
    const hasBody = req.body !== undefined && req.body !== null;
    if (hasBody && Buffer.isBuffer(req.body)) throw new CoffreError('BadRequest', 'the Backup center sends JSON only');
    const res = await app.inject({
      method: req.method as 'GET' | 'POST' | 'PUT' | 'DELETE', url,
      headers: { authorization: `Bearer ${s.key}`, ...(hasBody ? { 'content-type': 'application/json' } : {}) },
      ...(hasBody ? { payload: JSON.stringify(req.body) } : {}),
    });
    if (res.statusCode === 401) {
      // The key was revoked or replaced: the session cannot act any more.
      sessions.end(s.id);
      reply.header('set-cookie', clearedCookie(secure(req)));
    }
    for (const h of ['content-type', 'content-disposition'] as const) {
      const v = res.headers[h];
      if (typeof v === 'string') reply.header(h, v);
    }
    reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff');
    return reply.status(res.statusCode).send(res.rawPayload);
  };
  for (const method of ['GET', 'POST', 'PUT', 'DELETE'] as const) app.route({ method, url: `${API_PREFIX}/*`, handler: forward, ...OWN_AUTH });
}
