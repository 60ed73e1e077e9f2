/**
 * What a backup server's key may do in its vault: attach its machines and copy their points in,
 * nothing else. It cannot write to a machine it did not attach, read any data back, list the
 * vault, delete or stop anything; an agent key cannot act as a server; a machine registered
 * directly with other keys cannot be taken over; a vault with a registered server is not empty.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VaultClient } from '../src/agent/client.js';
import { CoffreError } from '../src/core/errors.js';
import { newKeySet, wrapKeys } from '../src/core/crypto.js';
import { PackWriter } from '../src/core/pack.js';
import { clientFor, credentialsFor, harness, PASSPHRASE, rawRequest } from '../testkit/harness.js';

async function refused(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof CoffreError && e.code === code);
}

test('a backup server\'s key copies into its own machines and does nothing else', async () => {
  const h = await harness({ vault: 'cloud' });
  try {
    const direct = await h.agent('direct');
    await h.admin.createPolicy('Online', { schedule: { frequency: 'Daily', times: ['22:00'] }, retention: { daily: { count: 30 } } });
    const cred = await credentialsFor(h.server, 'cloud');
    const reg = await new VaultClient(h.server.url, undefined, { fingerprint: h.server.fingerprint }).registerServer(cred.secret, 'bs01');
    assert.equal(reg.vault, 'cloud');
    const server = clientFor(h.server, reg.token);
    const wrapped = wrapKeys(newKeySet(), PASSPHRASE);
    const { containerId } = await server.attachMachine('m1', wrapped);
    // Attaching again with the same keys is the same machine.
    assert.deepEqual(await server.attachMachine('m1', wrapped), { containerId, machine: 'm1', created: false });

    // Another machine's keys under an existing name: refused, nothing taken over.
    await refused(server.attachMachine('direct', wrapKeys(newKeySet(), PASSPHRASE)), 'ServerContainerConflict');
    // Its own machine: it may upload; the directly registered one: not.
    const w = new PackWriter('data');
    w.add(Buffer.alloc(32, 7), Buffer.from('opaque sealed bytes'));
    const pack = w.finish().data;
    await server.putPack(containerId, 'a'.repeat(32), pack);
    await refused(server.putPack(direct.state.containerId, 'b'.repeat(32), pack), 'Forbidden');
    await refused(server.blobIds(direct.state.containerId), 'Forbidden');
    // It reads nothing back, not even from its own machines.
    await refused(server.readPack(containerId, 'a'.repeat(32), 0, 10), 'Forbidden');
    await refused(server.getKeys(containerId), 'Forbidden');
    // It lists nothing and changes nothing.
    await refused(server.listPoints({}), 'Forbidden');
    await refused(server.listJobs(), 'Forbidden');
    await refused(server.stopItem('anything', true, 'cloud'), 'Forbidden');
    await refused(server.createPolicy('Mine', { schedule: { frequency: 'Daily', times: ['01:00'] }, retention: { daily: { count: 7 } } }, 'cloud'), 'Forbidden');
    await refused(server.listServers('cloud'), 'Forbidden');
    await refused(server.gc('cloud'), 'Forbidden');
    // A copy into a machine it did not attach is refused at the door.
    await refused(server.startCopy({ container: direct.state.containerId, item: 'x', kind: 'files', policy: 'Online', point: 'c'.repeat(16), time: new Date().toISOString() }), 'Forbidden');

    // An agent's key is not a server's.
    await refused(direct.client.attachMachine('m9', wrapped), 'Forbidden');
    await refused(direct.client.startCopy({ container: direct.state.containerId, item: 'x', kind: 'files', policy: 'Online', point: 'd'.repeat(16), time: new Date().toISOString() }), 'Forbidden');
    const anonymous = await rawRequest(h.server, 'POST', '/v1/servers/self/machines', { body: { machine: 'm2', wrappedKeys: wrapped } });
    assert.equal(anonymous.status, 401);

    // Registration needs valid credentials; the server shows in the vault; the vault is not empty.
    await refused(new VaultClient(h.server.url, undefined, { fingerprint: h.server.fingerprint }).registerServer('cvc_wrong', 'bs02'), 'CredentialsInvalid');
    assert.deepEqual((await h.admin.listServers('cloud')).map((s) => [s.name, s.machines.map((m) => m.machine)]), [['bs01', ['m1']]]);
    await refused(h.admin.deleteVault('cloud'), 'VaultNotEmpty');
    const audit = await h.admin.audit();
    assert.ok(audit.some((e) => e.principal === 'server:bs01' && e.operation === 'server.copy' && e.result === 'Refused'));
  } finally {
    await h.close();
  }
});
