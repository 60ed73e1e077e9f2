/** Keys, passphrases, credentials and who may reach what. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { ManualClock } from '../src/core/clock.js';
import { startServer } from '../src/vault/server.js';
import { backupOptions, clientFor, harness, PASSPHRASE, rawRequest, tempDir } from '../testkit/harness.js';

const code = (c: string) => (e: unknown) => e instanceof CoffreError && e.code === c;

test('a new machine restores with the credentials and the passphrase alone; a wrong passphrase is refused', async () => {
  const h = await harness();
  try {
    const a = await h.agent('web01');
    const src = join(h.dir, 'site');
    await mkdir(src);
    await writeFile(join(src, 'index.html'), '<h1>hello</h1>');
    const { point } = await backup(backupOptions(a, 'site', [src]));

    await assert.rejects(registerAgent({ agentDir: join(h.dir, 'thief'), credentials: h.credentials, passphrase: 'not the right passphrase', machine: 'web01' }), code('PassphraseWrong'));
    await assert.rejects(registerAgent({ agentDir: join(h.dir, 'short'), credentials: h.credentials, passphrase: 'short', machine: 'web01' }), code('PassphraseTooShort'));

    const agentDir = join(h.dir, 'new-machine');
    const state = await registerAgent({ agentDir, credentials: h.credentials, passphrase: PASSPHRASE, machine: 'web01' });
    assert.equal(state.reattached, true);
    const client = clientFor(h.server, state.token);
    const target = join(h.dir, 'restored');
    await restore({ client, keys: keysFromJSON(state.keys), pointId: point.id, target });
    assert.equal(await readFile(join(target, 'site', 'index.html'), 'utf8'), '<h1>hello</h1>');
  } finally {
    await h.close();
  }
});

test('the vault never receives plaintext: stored objects do not contain the source bytes', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'plain');
    await mkdir(src);
    const marker = 'TOP-SECRET-MARKER-'.repeat(2000);
    await writeFile(join(src, 'secret-name-marker.txt'), marker);
    await backup(backupOptions(a, 'plain', [src]));
    const walk = async (dir: string): Promise<string[]> => {
      const out: string[] = [];
      for (const d of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, d.name);
        if (d.isDirectory()) out.push(...await walk(p)); else out.push(p);
      }
      return out;
    };
    const files = await walk(join(h.server.dataDir, 'regions'));
    assert.ok(files.length > 0);
    for (const f of files) {
      const data = await readFile(f);
      assert.equal(data.includes('TOP-SECRET-MARKER'), false, `${f} holds plaintext`);
      assert.equal(data.includes('secret-name-marker'), false, `${f} holds a file name`);
    }
    const catalog = await readFile(join(h.server.dataDir, 'catalog.sqlite'));
    assert.equal(catalog.includes(PASSPHRASE), false);
  } finally {
    await h.close();
  }
});

test('an agent key reaches only its own items and cannot delete or reset keys', async () => {
  const h = await harness();
  try {
    const a = await h.agent('alpha');
    const b = await h.agent('beta');
    const src = join(h.dir, 'a');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'alpha data');
    const { point } = await backup(backupOptions(a, 'alpha-item', [src]));
    await assert.rejects(b.client.getPoint(point.id), code('Forbidden'));
    await assert.rejects(b.client.manifest(point.id), code('Forbidden'));
    await assert.rejects(b.client.blobIds(a.state.containerId), code('Forbidden'));
    assert.deepEqual(await b.client.listPoints({}), []);
    // Item names are the vault's: another machine cannot write into alpha's item.
    await assert.rejects(backup(backupOptions(b, 'alpha-item', [src])), code('ItemOwnedElsewhere'));
    // Keys cannot be replaced (that would lock the owner out of its points).
    await assert.rejects(a.client.putKeys(a.state.containerId, { version: 1, kdf: {}, sealed: 'x' }), code('Forbidden'));
    // Administration is not for agents.
    await assert.rejects(a.client.createVault({ name: 'rogue' }), code('Forbidden'));
    await assert.rejects(a.client.createCredentials('testvault'), code('Forbidden'));
    // No API route deletes points or data for anyone but through retention (none exists for agents).
    const del = await rawRequest(h.server, 'DELETE', `/v1/points/${point.id}`, { token: a.state.token });
    assert.equal(del.status, 404);
    assert.equal((await a.client.listPoints({})).length, 1);
  } finally {
    await h.close();
  }
});

test('only the health check answers without a token', async () => {
  const h = await harness();
  try {
    assert.equal((await rawRequest(h.server, 'GET', '/v1/health')).status, 200);
    for (const path of ['/v1/vaults', '/v1/points', '/v1/jobs']) {
      const res = await rawRequest(h.server, 'GET', path);
      assert.equal(res.status, 401);
      const body = res.body as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'Unauthorized');
      assert.ok(body.error.message.length > 10);
    }
    const bad = await rawRequest(h.server, 'GET', '/v1/vaults', { token: 'nope' });
    assert.equal(bad.status, 401);
  } finally {
    await h.close();
  }
});

test('vault credentials expire after 10 days and are then refused clearly', async () => {
  const dir = await tempDir();
  const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  try {
    const admin = clientFor(server);
    await admin.createVault({ name: 'v' });
    const c = await admin.createCredentials('v');
    assert.equal(c.expiresAt, '2026-01-11T00:00:00.000Z');
    clock.set(new Date('2026-01-11T00:00:01Z'));
    await assert.rejects(admin.register(c.secret, 'late'), (e: unknown) => e instanceof CoffreError && e.code === 'CredentialsExpired' && /expired/.test(e.message));
    await assert.rejects(admin.register('cvc_forged', 'x'), code('CredentialsInvalid'));
  } finally {
    await server.close();
  }
});

test('a subscription holds at most 500 vaults: the 501st is refused with VaultLimitReached', async () => {
  const h = await harness();
  try {
    // The harness made one vault in subscription "default".
    for (let i = 1; i < 500; i++) await h.admin.createVault({ name: `v${i}` });
    await assert.rejects(h.admin.createVault({ name: 'one-too-many' }), (e: unknown) => e instanceof CoffreError && e.code === 'VaultLimitReached' && /500/.test(e.message));
    // Another subscription is not affected, and every vault got its DefaultPolicy.
    const other = await h.admin.createVault({ name: 'one-too-many', subscription: 'team-b' });
    assert.equal(other.redundancy, 'GRS');
    assert.equal((await h.admin.listVaults()).length, 501);
    const policies = await h.server.db.selectFrom('policies').select((eb) => eb.fn.countAll<number>().as('n')).where('name', '=', 'DefaultPolicy').executeTakeFirstOrThrow();
    assert.equal(Number(policies.n), 501);
  } finally {
    await h.close();
  }
});
