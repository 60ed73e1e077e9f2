/**
 * TLS: the vault serves HTTPS with a self-signed certificate made on first start (or the
 * operator's), its fingerprint travels in the vault credentials, and the agent pins it. A
 * server with another certificate gets not one byte of a request; plain HTTP is for loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { VaultClient } from '../src/agent/client.js';
import { parseCredentials } from '../src/agent/register.js';
import { CoffreError } from '../src/core/errors.js';
import { fingerprintOfPem } from '../src/core/fingerprint.js';
import { startServer } from '../src/vault/server.js';
import { loadTlsIdentity } from '../src/vault/tls.js';
import { cli, clientFor, harness, tempDir } from '../testkit/harness.js';

const code = (c: string) => (e: unknown) => e instanceof CoffreError && e.code === c;

/** A TLS server with a certificate of its own that records every byte a client sends after the handshake. */
async function impostor(dir: string): Promise<{ url: string; received: () => number; close(): Promise<void> }> {
  const id = await loadTlsIdentity(join(dir, 'impostor'), { host: '127.0.0.1' });
  let bytes = 0;
  const server = tls.createServer({ cert: id.cert, key: id.key }, (socket) => {
    socket.on('data', (d: Buffer) => { bytes += d.length; });
    socket.on('error', () => undefined); // the client hangs up after the handshake: expected
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => bytes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

test('an agent with a wrong pinned fingerprint refuses to talk to the server, and sends it nothing', async () => {
  const h = await harness();
  const fake = await impostor(h.dir);
  try {
    // The vault serves HTTPS, its fingerprint is in the credentials, and the agent saved it.
    assert.match(h.server.url, /^https:/);
    assert.equal(h.credentials.fingerprint, h.server.fingerprint);
    assert.equal(h.server.fingerprint, fingerprintOfPem(await readFile(join(h.server.dataDir, 'tls', 'cert.pem'))));
    assert.equal((await stat(join(h.server.dataDir, 'tls', 'key.pem'))).mode & 0o777, 0o600);
    const a = await h.agent('web01');
    assert.equal(a.state.fingerprint, h.server.fingerprint);
    assert.equal((await a.client.listPoints({})).length, 0);

    // Someone else's server at the vault's address: the handshake completes, the request never leaves.
    const stolen = new VaultClient(fake.url, a.state.token, { fingerprint: h.server.fingerprint });
    await assert.rejects(stolen.listPoints({}), (e: unknown) => e instanceof CoffreError && e.code === 'CertificateMismatch' && /Nothing was sent/.test(e.message));
    await new Promise((r) => setTimeout(r, 50)); // let any stray bytes arrive before counting
    assert.equal(fake.received(), 0, 'no byte of the request (nor the token) reached the impostor');
    // The real server with a wrong pin: refused just the same.
    const wrong = new VaultClient(h.server.url, a.state.token, { fingerprint: 'AB:'.repeat(31) + 'AB' });
    await assert.rejects(wrong.listPoints({}), code('CertificateMismatch'));
    // No pin at all: a self-signed certificate is not trusted, and the message says how to pin it.
    await assert.rejects(new VaultClient(h.server.url, a.state.token).listPoints({}), (e: unknown) => e instanceof CoffreError && e.code === 'CertificateUntrusted' && /fingerprint/.test(e.message));

    // Through the CLI: an agent whose saved fingerprint is wrong stops with a clear error (exit 3).
    const statePath = join(a.agentDir, 'agent.json');
    const state = JSON.parse(await readFile(statePath, 'utf8')) as Record<string, unknown>;
    await writeFile(statePath, JSON.stringify({ ...state, fingerprint: 'CD:'.repeat(31) + 'CD' }));
    const r = await cli(['points', '--json'], { COFFRE_AGENT_DIR: a.agentDir, COFFRE_TOKEN: '', COFFRE_SERVER: '', COFFRE_FINGERPRINT: '' }, { cwd: h.dir });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /presented a certificate with fingerprint .*not the pinned CD:CD.*\[CertificateMismatch\]/);
    assert.equal(r.stdout, '');
    // A damaged fingerprint in a credentials file is refused before anything is sent.
    assert.throws(() => parseCredentials(JSON.stringify({ ...h.credentials, fingerprint: 'nope' })), code('CredentialsInvalid'));
  } finally {
    await fake.close();
    await h.close();
  }
});

test('the certificate is made once and kept; the operator may bring their own; plain HTTP only on loopback', async () => {
  const dir = await tempDir();
  try {
    const data = join(dir, 'data');
    const s1 = await startServer({ dataDir: data, listen: '127.0.0.1:0' });
    const first = s1.fingerprint;
    await s1.close();
    const s2 = await startServer({ dataDir: data, listen: '127.0.0.1:0' });
    assert.equal(s2.fingerprint, first, 'the same certificate after a restart');
    assert.deepEqual(JSON.parse(await readFile(join(data, 'server.json'), 'utf8')), { url: s2.url, fingerprint: first });
    await s2.close();

    // The operator's certificate and key (here: another self-signed pair, as files).
    const own = await loadTlsIdentity(join(dir, 'own'), { host: '127.0.0.1' });
    const s3 = await startServer({ dataDir: data, listen: '127.0.0.1:0', tlsCert: join(dir, 'own', 'tls', 'cert.pem'), tlsKey: join(dir, 'own', 'tls', 'key.pem') });
    try {
      assert.equal(s3.fingerprint, own.fingerprint);
      assert.equal((await clientFor(s3).health()).status, 'ok');
      await clientFor(s3).createVault({ name: 'v' });
      // Credentials carry no pin for an operator's certificate: it is trusted through its CA, and renewed freely.
      assert.equal((await clientFor(s3).createCredentials('v')).fingerprint, null);
    } finally {
      await s3.close();
    }
    await assert.rejects(startServer({ dataDir: data, listen: '127.0.0.1:0', tlsCert: join(dir, 'own', 'tls', 'cert.pem') }), code('InvalidArgument'));
    await assert.rejects(startServer({ dataDir: data, listen: '127.0.0.1:0', tlsCert: join(dir, 'own', 'tls', 'key.pem'), tlsKey: join(dir, 'own', 'tls', 'cert.pem') }), code('InvalidArgument'));

    // Plain HTTP: refused off loopback, served on it (and then credentials carry no fingerprint).
    await assert.rejects(startServer({ dataDir: data, listen: '0.0.0.0:0', insecureHttp: true }), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument' && /loopback/.test(e.message));
    const cmd = await cli(['server', '--data', data, '--listen', '0.0.0.0:0', '--insecure-http'], {}, { cwd: dir });
    assert.equal(cmd.code, 2);
    assert.match(cmd.stderr, /--insecure-http is for loopback addresses only.*\[InvalidArgument\]/);
    const plain = await startServer({ dataDir: data, listen: '127.0.0.1:0', insecureHttp: true });
    try {
      assert.match(plain.url, /^http:\/\/127\.0\.0\.1:/);
      assert.equal(plain.fingerprint, null);
      const c = new VaultClient(plain.url, plain.adminToken);
      assert.equal((await c.createCredentials('v')).fingerprint, null);
      // An https:// client knocking on a plain HTTP server is told which way round it is.
      await assert.rejects(new VaultClient(plain.url.replace('http:', 'https:'), plain.adminToken).listVaults(), (e: unknown) => e instanceof CoffreError && e.code === 'ServerUnreachable' && /plain HTTP/.test(e.message));
    } finally {
      await plain.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
