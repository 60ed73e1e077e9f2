/**
 * Alerts under an injected clock: each rule fires and resolves, and a webhook receiver gets
 * exactly one notification per state change — including when its first answer is an error
 * and the notification is retried. Settings and listings go through the real CLI. The
 * replication lag rule watches a GRS vault whose paired region's store is taken away.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { ManualClock } from '../src/core/clock.js';
import type { AlertInfo, AlertSettings } from '../src/core/monitor-api.js';
import { registerAgent } from '../src/agent/register.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { startServer } from '../src/vault/server.js';
import { FIRST_RETRY_MS } from '../src/vault/webhooks.js';
import { cli, clientFor, credentialsFor, PASSPHRASE, storeFiles, tempDir } from '../testkit/harness.js';
import { WebhookReceiver } from '../testkit/webhook-receiver.js';

test('alert rules fire and resolve under an injected clock; the webhook gets exactly one notification per state change', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const clock = new ManualClock(new Date('2026-03-01T03:00:00Z'));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  const hook = await new WebhookReceiver().start();
  const env = { COFFRE_SERVER: server.url, COFFRE_TOKEN: server.adminToken, COFFRE_FINGERPRINT: server.fingerprint!, COFFRE_AGENT_DIR: join(dir, 'no-agent') };
  const coffre = async (...args: string[]) => {
    const r = await cli(args, env, { cwd: dir });
    assert.equal(r.code, 0, `coffre ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const active = async () => (JSON.parse(await coffre('alerts', '--json')) as AlertInfo[]);
  try {
    const admin = clientFor(server);
    await admin.createVault({ name: 'v' });
    const agentDir = join(dir, 'agent');
    const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: 'web01', credentials: await credentialsFor(server, 'v') });
    const agent = { client: clientFor(server, st.token), containerId: st.containerId, keys: keysFromJSON(st.keys), agentDir, vaultId: st.vaultId };
    const src = join(dir, 'site');
    await mkdir(src);
    await writeFile(join(src, 'index.html'), '<h1>hello</h1>\n'.repeat(100));
    await backup({ ...agent, item: 'site', paths: [src] });
    await admin.createPolicy('Nightly', { timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 30 } } });
    await admin.assignPolicy('Nightly', 'site');

    const settings = JSON.parse(await coffre('alerts', 'config', '--webhook', hook.url, '--webhook-secret', 's3cret', '--json')) as AlertSettings;
    assert.deepEqual(settings.webhooks, [{ url: hook.url, secret: 's3cret' }]);
    assert.deepEqual(await active(), []);

    // 1. A backup fails: JobFailed fires on the job's end. The receiver's first answer is 500.
    hook.answers.push(500);
    // Each event a minute after the last, as they happen (a failure and a success at the same instant have no order).
    const failBackup = async (message: string) => {
      clock.advance(60_000);
      const { job } = await agent.client.startBackup('site', 'files', { paths: [src] });
      await agent.client.finishJob(job.id, { status: 'Failed', errors: [{ code: 'SourceUnreadable', message }] });
    };
    await failBackup('the disk went away');
    await hook.until(1, false);
    assert.equal(hook.received[0]!.status, 500);
    assert.equal(hook.accepted.length, 0);
    // Not retried before the backoff has passed on the vault's clock (maintain waits for the evaluation in flight)...
    await server.maintain();
    assert.equal(hook.received.length, 1);
    // ...then retried: the same notification, accepted.
    clock.advance(FIRST_RETRY_MS + 1000);
    await server.maintain();
    await hook.until(1);
    assert.equal(hook.received.length, 2);
    assert.equal(hook.received[1]!.headers['x-coffre-delivery'], hook.received[0]!.headers['x-coffre-delivery']);
    const first = hook.accepted[0]!;
    assert.equal(first.headers['x-coffre-signature'], `sha256=${createHmac('sha256', 's3cret').update(first.raw).digest('hex')}`);
    assert.equal(first.body.event, 'fired');
    const fired = first.body.alert as AlertInfo;
    assert.equal(fired.rule, 'JobFailed');
    assert.equal(fired.item, 'site');
    assert.equal(fired.severity, 'warning');

    // 2. It fails again: the same alert, seen twice, and no new notification.
    await failBackup('the disk went away again');
    await server.maintain();
    let list = await active();
    assert.equal(list.length, 1);
    assert.equal(list[0]!.id, fired.id);
    assert.equal(list[0]!.occurrences, 2);
    assert.equal(hook.received.length, 2);

    // 3. A backup succeeds: resolved, once.
    clock.advance(60_000);
    await backup({ ...agent, item: 'site', paths: [src] });
    await hook.until(2);
    assert.deepEqual([hook.accepted[1]!.body.event, (hook.accepted[1]!.body.alert as AlertInfo).id, (hook.accepted[1]!.body.alert as AlertInfo).state], ['resolved', fired.id, 'Resolved']);
    assert.deepEqual(await active(), []);

    // 4. The machine is off: the 02:30 run of the next day is missed and the objective breached.
    // (The paired region has every copy first: a day's jump would otherwise age a copy in flight.)
    assert.equal(await server.drainReplication(), 0);
    clock.set(new Date('2026-03-02T07:00:00Z'));
    await server.maintain();
    await hook.until(4);
    list = await active();
    assert.deepEqual(list.map((a) => [a.rule, a.severity]).sort(), [['MissedSchedule', 'critical'], ['RpoBreach', 'critical']]);
    assert.deepEqual(hook.accepted.slice(2).map((r) => `${r.body.event} ${(r.body.alert as AlertInfo).rule}`).sort(), ['fired MissedSchedule', 'fired RpoBreach']);

    // 5. The next backup resolves both; evaluating again sends nothing more.
    clock.advance(60_000);
    await backup({ ...agent, item: 'site', paths: [src] });
    await hook.until(6);
    await server.maintain();
    assert.deepEqual(hook.accepted.slice(4).map((r) => `${r.body.event} ${(r.body.alert as AlertInfo).rule}`).sort(), ['resolved MissedSchedule', 'resolved RpoBreach']);

    // 6. Storage above a threshold, then the threshold lifted.
    await coffre('alerts', 'config', '--storage-threshold', '1');
    await hook.until(7);
    assert.equal((hook.accepted[6]!.body.alert as AlertInfo).rule, 'StorageAboveThreshold');
    await coffre('alerts', 'config', '--storage-threshold', 'none');
    await hook.until(8);
    assert.equal(hook.accepted[7]!.body.event, 'resolved');

    // 7. Verification finds a damaged pack; once the pack is whole again and verified, resolved.
    const packs = [...(await storeFiles(server.dataDir, 'packs')).keys()];
    const victim = packs[0]!;
    const original = await readFile(victim);
    const damaged = Buffer.from(original);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    await writeFile(victim, damaged);
    const verify1 = JSON.parse((await cli(['verify', '--json'], env, { cwd: dir })).stdout) as { status: string };
    assert.equal(verify1.status, 'Failed');
    await hook.until(9);
    assert.deepEqual([hook.accepted[8]!.body.event, (hook.accepted[8]!.body.alert as AlertInfo).rule, (hook.accepted[8]!.body.alert as AlertInfo).severity], ['fired', 'VerifyFailed', 'critical']);
    await writeFile(victim, original);
    await coffre('verify', '--json');
    await hook.until(10);
    assert.equal(hook.accepted[9]!.body.event, 'resolved');

    // 8. The paired region is away for more than the hour allowed: the GRS vault lags, once; back and caught up, resolved.
    const secondary = join(server.dataDir, 'regions', 'secondary', 'zone-1');
    await rename(secondary, `${secondary}.away`);
    await writeFile(join(src, 'late.txt'), 'written while the paired region is away\n');
    clock.advance(60_000);
    await backup({ ...agent, item: 'site', paths: [src] });
    clock.advance(30 * 60_000);
    await server.maintain();
    assert.deepEqual((await active()).map((a) => a.rule), [], 'half an hour behind is within the allowed lag');
    clock.advance(31 * 60_000);
    await server.maintain();
    await hook.until(11);
    const lag = hook.accepted[10]!.body.alert as AlertInfo;
    assert.deepEqual([hook.accepted[10]!.body.event, lag.rule, lag.severity, lag.vault], ['fired', 'ReplicationLag', 'warning', 'v']);
    assert.ok((lag.details.pendingObjects as number) > 0 && (lag.details.oldestPendingSeconds as number) > 3600, JSON.stringify(lag.details));
    await server.maintain();
    assert.equal(hook.accepted.length, 11, 'still lagging: no second notification');
    await rename(`${secondary}.away`, secondary);
    assert.equal(await server.drainReplication(), 0);
    await server.maintain();
    await hook.until(12);
    assert.deepEqual([hook.accepted[11]!.body.event, (hook.accepted[11]!.body.alert as AlertInfo).id], ['resolved', lag.id]);

    // Exactly one notification per state change: twelve changes, twelve deliveries, twelve ids.
    await server.maintain();
    assert.equal(hook.accepted.length, 12);
    assert.equal(new Set(hook.accepted.map((r) => r.body.id)).size, 12);
    const all = JSON.parse(await coffre('alerts', '--all', '--json')) as AlertInfo[];
    assert.equal(all.length, 6);
    assert.ok(all.every((a) => a.state === 'Resolved' && a.resolvedAt !== null));
    const shown = JSON.parse(await coffre('alerts', 'show', fired.id, '--json')) as { notifications: { event: string; attempts: number; deliveredAt: string | null }[] };
    assert.deepEqual(shown.notifications.map((n) => [n.event, n.attempts, n.deliveredAt !== null]), [['fired', 2, true], ['resolved', 1, true]]);
    assert.match(await coffre('alerts', '--all'), /JobFailed/);
  } finally {
    await hook.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
