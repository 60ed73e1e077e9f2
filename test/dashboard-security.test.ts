/**
 * The dashboard's door, over plain HTTP (no browser): sign-in with a principal's key or the
 * admin token only, the session cookie's flags, CSRF token and Origin checks on every change,
 * the API's answers passed through unchanged, and only the dashboard's own files served.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { backup } from '../src/agent/backup.js';
import { registerAgent } from '../src/agent/register.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { startServer } from '../src/vault/server.js';
import { clientFor, credentialsFor, harness, PASSPHRASE, tempDir } from '../testkit/harness.js';

test('the dashboard signs in principals only, with an HttpOnly SameSite=Strict cookie, and refuses writes without its CSRF token and origin', { timeout: 60_000 }, async () => {
  // Plain HTTP on loopback (--insecure-http), so that every header can be set and read with fetch.
  const dir = await tempDir();
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', insecureHttp: true });
  try {
    await clientFor(server).createVault({ name: 'v' });
    const agentState = await registerAgent({ agentDir: join(dir, 'agent'), credentials: await credentialsFor(server, 'v'), passphrase: PASSPHRASE, machine: 'web01' });
    const base = server.url;
    const origin = base;
    const call = (path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}) => fetch(`${base}${path}`, {
      method: init.method ?? 'GET', redirect: 'manual',
      headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

    const page = await call('/');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    const html = await page.text();
    assert.match(html, /<script type="importmap">/);
    assert.doesNotMatch(html, /https?:\/\//, 'no asset from another origin');
    for (const asset of ['/assets/app/main.js', '/assets/vendor/preact.js', '/assets/vendor/preact-hooks.js', '/assets/vendor/htm.js', '/assets/vendor/uplot.js', '/assets/vendor/uplot.css', '/assets/style.css']) {
      const res = await call(asset);
      assert.equal(res.status, 200, asset);
      const etag = res.headers.get('etag')!;
      assert.equal((await call(asset, { headers: { 'if-none-match': etag } })).status, 304);
    }
    for (const bad of ['/assets/../package.json', '/assets/app/../../../package.json', '/assets/app/nope.js', '/assets/%2e%2e/package.json']) {
      assert.equal((await call(bad)).status, 404, bad);
    }

    // Sign-in: from this origin only, with a valid key that is not a machine's.
    assert.equal((await call('/ui/session', { method: 'POST', body: { key: server.adminToken } })).status, 403, 'no Origin');
    assert.equal((await call('/ui/session', { method: 'POST', body: { key: server.adminToken }, headers: { origin: 'http://evil.example' } })).status, 403);
    const wrong = await call('/ui/session', { method: 'POST', body: { key: 'cadm_wrong' }, headers: { origin } });
    assert.deepEqual([wrong.status, await errorCode(wrong)], [401, 'Unauthorized']);
    const machine = await call('/ui/session', { method: 'POST', body: { key: agentState.token }, headers: { origin } });
    assert.deepEqual([machine.status, await errorCode(machine)], [403, 'Forbidden']);
    assert.equal(machine.headers.get('set-cookie'), null);
    const signIn = await call('/ui/session', { method: 'POST', body: { key: server.adminToken }, headers: { origin } });
    assert.equal(signIn.status, 200);
    const setCookie = signIn.headers.get('set-cookie')!;
    assert.match(setCookie, /^coffre_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    const { principal, csrf } = await signIn.json() as { principal: string; csrf: string };
    assert.equal(principal, 'admin');
    const cookie = setCookie.split(';')[0]!;

    // Reads need the session; what comes back is the API's answer.
    assert.equal((await call('/ui/api/v1/vaults')).status, 401);
    const vaults = await call('/ui/api/v1/vaults', { headers: { cookie } });
    assert.equal(vaults.status, 200);
    assert.deepEqual(((await vaults.json()) as { name: string }[]).map((v) => v.name), ['v']);
    assert.equal((await call('/ui/api/v1/../metrics', { headers: { cookie } })).status, 404);
    assert.equal((await call('/ui/api/metrics', { headers: { cookie } })).status, 404);

    // Writes need the CSRF token and this origin.
    const create = (headers: Record<string, string>) => call('/ui/api/v1/vaults', { method: 'POST', body: { name: 'second' }, headers: { cookie, ...headers } });
    assert.equal((await create({ origin })).status, 403, 'no CSRF token');
    assert.equal((await create({ origin, 'x-csrf-token': 'forged' })).status, 403);
    assert.equal((await create({ origin: 'http://evil.example', 'x-csrf-token': csrf })).status, 403);
    assert.equal((await create({ 'x-csrf-token': csrf })).status, 403, 'no Origin nor Sec-Fetch-Site');
    assert.equal((await create({ 'sec-fetch-site': 'cross-site', 'x-csrf-token': csrf })).status, 403);
    const made = await create({ origin, 'x-csrf-token': csrf });
    assert.equal(made.status, 200);
    assert.equal(((await made.json()) as { name: string }).name, 'second');
    const refused = await call('/ui/api/v1/vaults', { method: 'POST', body: { name: 'bad name!' }, headers: { cookie, origin, 'x-csrf-token': csrf } });
    assert.deepEqual([refused.status, await errorCode(refused)], [400, 'InvalidArgument']);

    // Sign-out ends the session for good.
    assert.equal((await call('/ui/session', { method: 'DELETE', headers: { cookie, origin } })).status, 403, 'sign-out needs the CSRF token');
    const out = await call('/ui/session', { method: 'DELETE', headers: { cookie, origin, 'x-csrf-token': csrf } });
    assert.equal(out.status, 200);
    assert.match(out.headers.get('set-cookie')!, /Max-Age=0/);
    assert.equal((await call('/ui/api/v1/vaults', { headers: { cookie } })).status, 401);
    assert.equal((await call('/ui/session', { headers: { cookie } })).status, 401);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a principal signed in sees only the vaults its roles cover, and a refusal names the missing permission', { timeout: 60_000 }, async () => {
  const dir = await tempDir();
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', insecureHttp: true });
  try {
    const admin = clientFor(server);
    for (const vault of ['v', 'w']) {
      await admin.createVault({ name: vault });
      const agentDir = join(dir, `agent-${vault}`);
      const st = await registerAgent({ agentDir, credentials: await credentialsFor(server, vault), passphrase: PASSPHRASE, machine: `m-${vault}` });
      const src = join(dir, `src-${vault}`);
      await mkdir(src);
      await writeFile(join(src, 'f.txt'), vault);
      await backup({ client: clientFor(server, st.token), containerId: st.containerId, keys: keysFromJSON(st.keys), agentDir, vaultId: st.vaultId, item: `item-${vault}`, paths: [src] });
    }
    const reader = await admin.createPrincipal('auditor');
    await admin.assignRole({ principal: 'auditor', role: 'Reader', scope: '/subscriptions/default/vaults/v' });
    const origin = server.url;
    const signIn = await fetch(`${server.url}/ui/session`, { method: 'POST', headers: { origin, 'content-type': 'application/json' }, body: JSON.stringify({ key: reader.key }) });
    assert.equal(signIn.status, 200);
    const { principal, csrf } = await signIn.json() as { principal: string; csrf: string };
    assert.equal(principal, 'auditor');
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    const get = async (path: string) => fetch(`${server.url}/ui/api${path}`, { headers: { cookie } });
    const items = await (await get('/v1/monitor/items')).json() as { name: string }[];
    assert.deepEqual(items.map((i) => i.name), ['item-v']);
    const overview = await (await get('/v1/monitor/overview')).json() as { vaults: { vault: string }[] };
    assert.deepEqual(overview.vaults.map((v) => v.vault), ['v']);
    const report = await (await get('/v1/reports')).json() as { rows: { vault: string }[] };
    assert.deepEqual([...new Set(report.rows.map((r) => r.vault))], ['v']);
    const point = (await admin.listPoints({ item: 'item-v' }))[0]!;
    const refused = await fetch(`${server.url}/ui/api/v1/restore-requests`, {
      method: 'POST', headers: { cookie, origin, 'x-csrf-token': csrf, 'content-type': 'application/json' }, body: JSON.stringify({ point: point.id, target: '/tmp/x' }),
    });
    assert.equal(refused.status, 403);
    const err = (await refused.json()) as { error: { code: string; message: string; details: { permission: string } } };
    assert.equal(err.error.code, 'Forbidden');
    assert.equal(err.error.details.permission, 'restore');
    assert.equal((await get('/v1/alerts/settings')).status, 403);
    // The metrics are readable with the same key as a bearer token.
    assert.equal((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${reader.key}` } })).status, 200);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('over HTTPS (the default) the session cookie is Secure too', { timeout: 60_000 }, async () => {
  const h = await harness();
  try {
    const ca = await readFile(join(h.server.dataDir, 'tls', 'cert.pem'), 'utf8');
    const body = JSON.stringify({ key: h.server.adminToken });
    const setCookie = await new Promise<string>((resolve, reject) => {
      const req = https.request(`${h.server.url}/ui/session`, { method: 'POST', ca, headers: { origin: h.server.url, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(String(res.headers['set-cookie'])) : reject(new Error(`sign-in answered ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
    assert.match(setCookie, /^coffre_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
  } finally {
    await h.close();
  }
});
