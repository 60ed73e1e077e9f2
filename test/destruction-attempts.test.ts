/**
 * A stolen agent key and a Backup Operator's key try to delete or shorten everything they can
 * name. Every attempt is listed here and refused; afterwards every point is still there, the
 * settings are unchanged, the data verifies and restores byte for byte, and the audit log holds
 * each refused attempt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import type { VaultClient } from '../src/agent/client.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { PackWriter } from '../src/core/pack.js';
import { CoffreError } from '../src/core/errors.js';
import { backupOptions, clientFor, harness, rawRequest } from '../testkit/harness.js';

type Attempt = [string, (c: VaultClient) => Promise<unknown>];

/** What either key might try, by API call. Item "site" has points; "old" is stopped with its data. */
function attempts(ctx: { containerId: string; guardRequest: string }): Attempt[] {
  const v = 'testvault';
  const shorter = { timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 7 } } };
  return [
    ['delete the vault', (c) => c.deleteVault(v)],
    ['stop protection of site and delete its data', (c) => c.stopItem('site', true, v)],
    ['stop protection of site (retain data)', (c) => c.stopItem('site', false, v)],
    ['resume old (its kept points would expire)', (c) => c.resumeItem('old', undefined, v)],
    ['shorten DefaultPolicy to 7 days', (c) => c.setPolicy('DefaultPolicy', shorter, false, v)],
    ['create a 7-day policy', (c) => c.createPolicy('Short', shorter, v)],
    ['move site to the 7-day policy Week', (c) => c.assignPolicy('Week', 'site', v)],
    ['delete policy Week', (c) => c.deletePolicy('Week', v)],
    ['disable soft delete', (c) => c.setSecurity(v, { softDelete: 'Disabled' })],
    ['shorten the soft delete period', (c) => c.setSecurity(v, { softDeleteDays: 14 })],
    ['switch immutability off', (c) => c.setSecurity(v, { immutability: 'Disabled' })],
    ['remove the guard', (c) => c.setSecurity(v, { guard: null })],
    ['make itself the guard', (c) => c.setSecurity(v, { guard: 'operator' })],
    ['unregister the machine', (c) => c.unregisterMachine(v, 'web01')],
    ['prune now', (c) => c.prune(v)],
    ['collect garbage now', (c) => c.gc(v)],
    ['grant itself Owner', (c) => c.assignRole({ principal: 'operator', role: 'Owner', scope: '/' })],
    ['create a principal', (c) => c.createPrincipal('intruder')],
    ['delete the admin principal', (c) => c.deletePrincipal('admin')],
    ['replace the machine\'s wrapped keys', (c) => c.putKeys(ctx.containerId, { version: 1, kdf: {}, sealed: 'x' })],
    ['approve the pending request to delete site', (c) => c.approveGuardRequest(ctx.guardRequest)],
  ];
}

test('a stolen agent key and a Backup Operator key cannot delete or shorten anything', async () => {
  const h = await harness();
  try {
    const a = await h.agent('web01');
    const b = await h.agent('web02');
    const src = join(h.dir, 'site');
    await mkdir(src);
    await writeFile(join(src, 'index.html'), '<h1>keep me</h1>');
    await writeFile(join(src, 'blob.bin'), randomBytes(512 * 1024));
    const first = await backup({ ...backupOptions(a, 'site', [src]), kind: 'Scheduled' });
    await backup({ ...backupOptions(a, 'old', [src]), kind: 'Scheduled' });
    await h.admin.stopItem('old', false);
    await h.admin.createPolicy('Week', { timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 7 } } });
    // A guarded vault with soft delete on: the roles alone must refuse everything below.
    await h.admin.createPrincipal('guardian');
    const { key: operatorKey } = await h.admin.createPrincipal('operator');
    await h.admin.assignRole({ principal: 'operator', role: 'Backup Operator', scope: '/subscriptions/default/vaults/testvault' });
    await h.admin.setSecurity('testvault', { guard: 'guardian', softDeleteDays: 30 });
    await b.client.startBackup('b-item', 'files', { paths: [src] });
    const packs = await h.server.db.selectFrom('packs').select('id').where('container_id', '=', a.state.containerId).execute();
    // A pending request of the administrator's, that only the guard may approve.
    const pending = await h.admin.stopItem('site', true).then(() => null, (e: CoffreError) => e);
    assert.equal(pending?.code, 'GuardApprovalRequired');
    const guardRequest = (pending.details as { requestId: string }).requestId;

    const before = { points: await h.admin.listPoints({}), items: await h.admin.listItems(), security: await h.admin.security('testvault'), policies: await h.admin.listPolicies() };
    const list = attempts({ containerId: a.state.containerId, guardRequest });
    const refusals: string[] = [];
    for (const [who, client] of [['stolen agent key', a.client], ['Backup Operator key', clientFor(h.server, operatorKey)]] as const) {
      for (const [what, act] of list) {
        const outcome = await act(client).then(() => null, (e: unknown) => e);
        assert.ok(outcome instanceof CoffreError, `${who}: "${what}" was allowed`);
        assert.equal(outcome.code, 'Forbidden', `${who}: "${what}" refused with ${outcome.code}: ${outcome.message}`);
        refusals.push(`${who.padEnd(20)} ${what.padEnd(48)} ${outcome.code}`);
      }
    }
    // The agent's own data path offers no way to destroy either.
    const garbage = new PackWriter();
    garbage.add(Buffer.alloc(32, 7), Buffer.from('not what was there'));
    const overwrite = await rawRequest(h.server, 'PUT', `/v1/containers/${a.state.containerId}/packs/${packs[0]!.id}`, {
      token: a.state.token, raw: garbage.finish().data,
    });
    assert.equal(overwrite.status, 200, 'a re-upload of a known pack id is accepted as already done');
    refusals.push(`${'stolen agent key'.padEnd(20)} ${'overwrite a pack with garbage'.padEnd(48)} ignored (pack kept)`);
    await assert.rejects(a.client.finishJob(first.jobId, { status: 'Failed' }), (e: unknown) => e instanceof CoffreError && e.code === 'BadRequest');
    refusals.push(`${'stolen agent key'.padEnd(20)} ${'mark a completed backup Failed'.padEnd(48)} BadRequest`);
    for (const route of [`/v1/points/${first.point.id}`, `/v1/vaults/testvault/points`, `/v1/containers/${a.state.containerId}/packs/${packs[0]!.id}`]) {
      const res = await rawRequest(h.server, 'DELETE', route, { token: a.state.token });
      assert.equal(res.status, 404, `DELETE ${route}`);
    }
    console.log(`\nattempts refused:\n${refusals.join('\n')}\n`);

    // Nothing changed, and the data is whole.
    assert.deepEqual(await h.admin.listPoints({}), before.points);
    assert.deepEqual(await h.admin.listItems(), before.items);
    assert.deepEqual(await h.admin.security('testvault'), before.security);
    assert.deepEqual(await h.admin.listPolicies(), before.policies);
    assert.equal((await h.admin.verify({})).status, 'Completed');
    const target = join(h.dir, 'restored');
    assert.deepEqual((await restore({ client: a.client, keys: a.keys, pointId: first.point.id, target })).errors, []);
    assert.deepEqual(await compareTrees(src, join(target, 'site')), []);
    // Each refused attempt is in the audit log, with who tried.
    const audit = await h.admin.audit();
    const refused = audit.filter((e) => e.result === 'Refused');
    assert.equal(refused.filter((e) => e.principal === 'agent:web01').length, list.length, `agent attempts audited: ${JSON.stringify(refused)}`);
    assert.equal(refused.filter((e) => e.principal === 'operator').length, list.length);
    assert.ok(refused.some((e) => e.principal === 'operator' && e.operation === 'protection.stopDelete' && e.code === 'Forbidden'));
  } finally {
    await h.close();
  }
});
