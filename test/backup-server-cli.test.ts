/**
 * The backup server from the command line: `coffre group`, `coffre online`, `coffre
 * backup-server status|throttle|run` against a real backup server, and `coffre vault servers`
 * against its vault. Every listing has --json; errors carry their code and exit status.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backupFiles } from '../src/agent/snapshot/snapshot-backup.js';
import type { BackupServerStatus, GroupInfo, OnlineCopyInfo, ServerInfo, ThrottleInfo } from '../src/core/api.js';
import { cli } from '../testkit/harness.js';
import { SERVER_NAME, twoTiers, UPSTREAM_VAULT } from '../testkit/two-tiers.js';
import { seededBytes, seededText } from '../testkit/vm-fixtures.js';

test('groups, online copies, bandwidth and the vault\'s list of servers from the CLI', async (t) => {
  const env = await twoTiers();
  try {
    const on = (s: { url: string; adminToken: string; fingerprint: string | null }) => ['--server', s.url, '--token', s.adminToken, '--fingerprint', s.fingerprint!];
    const bs = (...args: string[]) => cli([...on(env.bs.server), ...args]);
    const vault = (...args: string[]) => cli([...on(env.upstream), ...args]);
    const json = <T>(r: { code: number | null; stdout: string; stderr: string }): T => {
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as T;
    };
    await writeFile(join(env.dir, 'short.json'), JSON.stringify({ schedule: { frequency: 'Hourly', intervalHours: 4, windowStart: '06:00', windowHours: 16 }, retention: { daily: { count: 7 } } }));
    await writeFile(join(env.dir, 'online.json'), JSON.stringify({ schedule: { frequency: 'Daily', times: ['22:00'] }, retention: { daily: { count: 30 }, monthly: { count: 12, days: [1] } } }));
    assert.equal((await bs('policy', 'create', 'ShortTerm', '--file', join(env.dir, 'short.json'))).code, 0);
    assert.equal((await vault('policy', 'create', 'Online', '--file', join(env.dir, 'online.json'), '--vault', UPSTREAM_VAULT)).code, 0);
    const m1 = await env.agent('m1');
    const src = join(env.dir, 'src', 'docs');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.txt'), seededText('a', 300));
    await writeFile(join(src, 'b.bin'), seededBytes('b', 200_000));
    await backupFiles({ client: m1.client, containerId: m1.state.containerId, keys: m1.keys, agentDir: m1.agentDir, vaultId: m1.state.vaultId, item: 'docs', paths: [src], snapshot: 'none' });

    await t.test('group create, add, list and show', async () => {
      const created = json<GroupInfo>(await bs('group', 'create', 'g1', '--short-term', 'ShortTerm', '--online', 'Online', '--json'));
      assert.deepEqual([created.name, created.shortTermPolicy, created.onlinePolicy, created.items], ['g1', 'ShortTerm', 'Online', []]);
      const added = json<GroupInfo>(await bs('group', 'add', 'g1', '--machine', 'm1', '--item', 'docs', '--json'));
      assert.deepEqual(added.items.map((i) => [i.machine, i.item, i.kind, i.shortTermPoints, i.lastCopy]), [['m1', 'docs', 'files', 1, null]]);
      assert.match(added.items[0]!.nextOnlineRun!, /T22:00:00\.000Z$/);
      const list = json<GroupInfo[]>(await bs('group', 'list', '--json'));
      assert.deepEqual(list.map((g) => g.name), ['g1']);
      const text = await bs('group', 'show', 'g1');
      assert.equal(text.code, 0);
      assert.match(text.stdout, /m1\/docs/);
      // The item took the group's short-term policy on the backup server.
      const items = JSON.parse((await bs('item', 'list', '--json')).stdout) as { name: string; policy: string }[];
      assert.deepEqual(items.map((i) => [i.name, i.policy]), [['docs', 'ShortTerm']]);
    });

    await t.test('clear errors for what cannot be done', async () => {
      const noItem = await bs('group', 'add', 'g1', '--machine', 'm1', '--item', 'nothing');
      assert.equal(noItem.code, 1);
      assert.match(noItem.stderr, /\[ItemNotFound\]/);
      const noMachine = await bs('group', 'add', 'g1', '--machine', 'ghost', '--item', 'docs');
      assert.match(noMachine.stderr, /\[MachineNotFound\]/);
      const noPolicy = await bs('group', 'create', 'g2', '--short-term', 'ShortTerm', '--online', 'Missing');
      assert.equal(noPolicy.code, 1);
      assert.match(noPolicy.stderr, /vault cloud has no policy Missing.*\[PolicyNotFound\]/);
      assert.match((await bs('group', 'create', 'g1', '--short-term', 'ShortTerm', '--online', 'Online')).stderr, /\[GroupExists\]/);
      const notEmpty = await bs('group', 'delete', 'g1');
      assert.match(notEmpty.stderr, /\[GroupNotEmpty\]/);
      const badRate = await bs('backup-server', 'throttle', '--work-rate', 'fast');
      assert.equal(badRate.code, 2);
      assert.match(badRate.stderr, /\[InvalidArgument\]/);
      const unregistered = await cli(['backup-server', 'run', '--data', join(env.dir, 'fresh'), '--name', 'bs02', '--listen', '127.0.0.1:0']);
      assert.equal(unregistered.code, 1);
      assert.match(unregistered.stderr, /--vault-credentials.*\[NotRegistered\]/);
    });

    await t.test('online copy now, and the list of copies', async () => {
      const copy = json<OnlineCopyInfo>(await bs('online', 'copy', '--item', 'docs', '--json'));
      assert.equal(copy.status, 'Completed');
      assert.equal(copy.chunksSent, copy.chunksTotal);
      assert.ok(copy.bytesSent > 200_000);
      const again = await bs('online', 'copy', '--item', 'docs');
      assert.equal(again.code, 0);
      assert.match(again.stdout, /Completed .*\(0\/\d+ chunks sent, 0 B\)/);
      const copies = json<OnlineCopyInfo[]>(await bs('online', 'copies', '--item', 'docs', '--json'));
      assert.equal(copies.length, 2);
      assert.ok(copies.every((c) => c.point === copy.point && c.status === 'Completed'));
      const points = JSON.parse((await vault('points', '--vault', UPSTREAM_VAULT, '--json')).stdout) as { id: string; item: string; machine: string }[];
      assert.deepEqual(points.map((p) => [p.id, p.item, p.machine]), [[copy.point, 'docs', 'm1']]);
    });

    await t.test('bandwidth by the hours of the day, and the status', async () => {
      const set = json<ThrottleInfo>(await bs('backup-server', 'throttle', '--work-days', 'weekdays', '--work-hours', '08:00-18:00', '--work-rate', '20Mbit', '--other-rate', 'unlimited', '--time-zone', 'Europe/Paris', '--json'));
      assert.deepEqual(set.schedule, { timeZone: 'Europe/Paris', workDays: ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday'], workStart: '08:00', workEnd: '18:00', workBytesPerSecond: 2_500_000, otherBytesPerSecond: null });
      const shown = await bs('backup-server', 'throttle');
      assert.match(shown.stdout, /work hours\s+08:00-18:00 Europe\/Paris on Monday, Tuesday, Wednesday, Thursday, Friday: 2.50 MB\/s \(20 Mbit\/s\)/);
      const status = json<BackupServerStatus>(await bs('backup-server', 'status', '--json'));
      assert.equal(status.name, SERVER_NAME);
      assert.equal(status.localVault, SERVER_NAME);
      assert.deepEqual([status.upstream.vault, status.upstream.reachable, status.groups, status.copiesInProgress], [UPSTREAM_VAULT, true, 1, 0]);
      assert.equal(status.throttle.schedule.workBytesPerSecond, 2_500_000);
    });

    await t.test('the vault lists its backup servers, and can unregister one', async () => {
      await env.bs.tick(); // the round reports to the vault
      const servers = json<ServerInfo[]>(await vault('vault', 'servers', '--json'));
      assert.equal(servers.length, 1);
      const s = servers[0]!;
      assert.equal(s.name, SERVER_NAME);
      assert.deepEqual(s.groups.map((g) => [g.name, g.items.map((i) => `${i.machine}/${i.item}`)]), [['g1', ['m1/docs']]]);
      assert.deepEqual(s.machines.map((m) => [m.machine, m.items.map((i) => [i.item, i.policy, i.onlinePoints])]), [['m1', [['docs', 'Online', 1]]]]);
      assert.equal(s.throttle?.schedule.workBytesPerSecond, 2_500_000);
      const text = await vault('vault', 'servers');
      assert.match(text.stdout, /bs01.*g1.*m1\/docs.*Online/s);
      const gone = await vault('vault', 'unregister-server', SERVER_NAME, '--json');
      assert.equal(gone.code, 0, gone.stderr);
      assert.deepEqual(json<ServerInfo[]>(await vault('vault', 'servers', '--json')), []);
      // Its key no longer opens the vault; the machine's points stay there.
      const refused = await bs('online', 'copy', '--item', 'docs', '--json');
      assert.equal(refused.code, 1);
      assert.equal((JSON.parse(refused.stdout) as OnlineCopyInfo).error?.code, 'Unauthorized');
      assert.equal((JSON.parse((await vault('points', '--vault', UPSTREAM_VAULT, '--json')).stdout) as unknown[]).length, 1);
    });
  } finally {
    await env.close();
  }
});
