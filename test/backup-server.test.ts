/**
 * The two-tier architecture end to end (issue 19): a real vault and a real backup server on
 * loopback over HTTPS, on one injected clock; two machines registered with the backup server,
 * one backing up folders, the other a VM disk; both in one protection group with a short-term
 * policy every 6 hours and an online policy once a day. Restores from either tier are checked
 * byte for byte against a copy of the source taken at each backup; the online copy of an
 * unchanged point sends nothing, of a changed one only its new chunks; with the backup server's
 * data folder gone, the machines restore their online points from the vault directly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runDueOnce } from '../src/agent/daemon.js';
import { restore } from '../src/agent/restore.js';
import { backupFiles } from '../src/agent/snapshot/snapshot-backup.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { saveVmConfig, type VmConfig } from '../src/agent/vm/config.js';
import { backupVm } from '../src/agent/vm/vm-backup.js';
import { restoreVm } from '../src/agent/vm/vm-restore.js';
import { pointClosure } from '../src/backup-server/closure.js';
import { ManualClock } from '../src/core/clock.js';
import { CoffreError } from '../src/core/errors.js';
import { refsKey } from '../src/vault/data.js';
import { registerAgent } from '../src/agent/register.js';
import { credentialsFor, PASSPHRASE, type TestAgent } from '../testkit/harness.js';
import { SERVER_NAME, twoTiers, UPSTREAM_VAULT, type TwoTiers } from '../testkit/two-tiers.js';
import { cmp, MiB, seededBytes, seededText } from '../testkit/vm-fixtures.js';

const run = promisify(execFile);
const HOUR = 3_600_000;
/** A Monday evening, half an hour after a short-term run. */
const START = Date.parse('2026-03-02T18:30:00Z');
const SHORT_TERM = { timeZone: 'UTC', schedule: { frequency: 'Hourly', intervalHours: 6 }, retention: { daily: { count: 7 } } };
const ONLINE = { timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['23:00'] }, retention: { daily: { count: 30 }, weekly: { count: 12, weekDays: ['Sunday'] } } };

interface Machine { agent: TestAgent; item: string }

/** Copies of the sources as each point saw them, by point id. */
class States {
  constructor(private readonly dir: string) {}
  async keepTree(pointId: string, source: string): Promise<void> {
    await mkdir(join(this.dir, pointId), { recursive: true });
    await run('cp', ['-a', source, join(this.dir, pointId)]);
  }
  async keepFile(pointId: string, source: string): Promise<void> {
    await mkdir(join(this.dir, pointId), { recursive: true });
    await copyFile(source, join(this.dir, pointId, 'disk.img'));
  }
  tree(pointId: string, name: string): string { return join(this.dir, pointId, name); }
  file(pointId: string): string { return join(this.dir, pointId, 'disk.img'); }
}

async function assertSameTree(expected: string, actual: string): Promise<void> {
  assert.deepEqual(await compareTrees(expected, actual, { owners: false }), []);
}

/** Rewrites `length` bytes of a file at `offset` (a VM writing to its disk). */
async function patch(file: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(file, 'r+');
  try { await fh.write(data, 0, data.length, offset); } finally { await fh.close(); }
}

test('two machines in a protection group: short-term every 6 hours, online copies daily, restores from either tier', async (t) => {
  const clock = new ManualClock(new Date(START));
  const env: TwoTiers = await twoTiers({ clock });
  try {
    const { vaultAdmin } = env;
    await env.bsAdmin.createPolicy('Every6h', SHORT_TERM);
    await vaultAdmin.createPolicy('Online', ONLINE, UPSTREAM_VAULT);
    const states = new States(join(env.dir, 'states'));

    // m1 backs up a folder; m2 is a hypervisor with one VM disk.
    const m1: Machine = { agent: await env.agent('m1'), item: 'docs' };
    const m2: Machine = { agent: await env.agent('m2'), item: 'web01' };
    const docs = join(env.dir, 'src-m1', 'docs');
    await mkdir(join(docs, 'notes'), { recursive: true });
    await writeFile(join(docs, 'notes', 'todo.txt'), seededText('todo', 400));
    await writeFile(join(docs, 'photo.raw'), seededBytes('photo', 700_000));
    await writeFile(join(docs, 'empty'), '');
    const disk = join(env.dir, 'src-m2', 'web01.img');
    await mkdir(join(env.dir, 'src-m2'));
    await writeFile(disk, seededBytes('disk', 3 * MiB));
    const now = new Date(clock.now()).toISOString();
    const vm: VmConfig = { version: 1, name: 'web01', disks: [{ path: disk }], scriptTimeoutSeconds: 30, blockSize: 256 * 1024, policyAssigned: false, createdAt: now, updatedAt: now };
    await saveVmConfig(m2.agent.agentDir, vm);
    const agentOpts = (a: TestAgent) => ({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId });

    // First backups make the items on the backup server; then they join the group.
    const firstDocs = await backupFiles({ ...agentOpts(m1.agent), item: 'docs', paths: [docs], snapshot: 'none' });
    await states.keepTree(firstDocs.point.id, docs);
    const firstVm = await backupVm({ ...agentOpts(m2.agent), config: vm });
    await states.keepFile(firstVm.point.id, disk);

    const group = await env.bsAdmin.createGroup({ name: 'g1', shortTermPolicy: 'Every6h', onlinePolicy: 'Online' });
    assert.deepEqual(group.items, []);
    await env.bsAdmin.addToGroup('g1', 'm1', 'docs');
    const g1 = await env.bsAdmin.addToGroup('g1', 'm2', 'web01');
    assert.deepEqual(g1.items.map((i) => [i.machine, i.item, i.kind]), [['m1', 'docs', 'files'], ['m2', 'web01', 'vm']]);
    assert.equal(g1.items[0]!.nextOnlineRun, '2026-03-02T23:00:00.000Z');

    // 30 hours, in steps of 6: scheduled short-term backups, changes, online rounds (two nights).
    const onlineJobs: string[] = [];
    for (let step = 1; step <= 5; step++) {
      clock.set(new Date(START + step * 6 * HOUR));
      if (step % 2 === 0) await appendFile(join(docs, 'notes', 'todo.txt'), seededText(`step-${step}`, 50));
      if (step % 3 === 0) await patch(disk, step * 256 * 1024, seededBytes(`vm-step-${step}`, 100_000));
      // The two machines back up at the same time, each on its own.
      await Promise.all([m1, m2].map(async (m) => {
        const ran = await runDueOnce({ client: m.agent.client, state: { ...m.agent.state, keySet: m.agent.keys }, agentDir: m.agent.agentDir });
        assert.equal(ran.length, 1, `one scheduled run of ${m.item} at step ${step}`);
        assert.equal(ran[0]!.error, undefined);
        const id = ran[0]!.result!.point.id;
        if (m === m1) await states.keepTree(id, docs);
        else await states.keepFile(id, disk);
      }));
      onlineJobs.push(...await env.bs.tick());
    }

    const bsPoints = (item: string) => env.bsAdmin.listPoints({ item });
    const vaultPoints = (item: string) => vaultAdmin.listPoints({ vault: UPSTREAM_VAULT, item });

    await t.test('short-term points land every 6 hours on the backup server, online copies once a day in the vault', async () => {
      for (const m of [m1, m2]) {
        const short = await bsPoints(m.item);
        assert.equal(short.length, 6, `${m.item}: the first backup and 5 scheduled ones`);
        assert.deepEqual(short.slice(1).map((p) => Date.parse(p.time) - START), Array.from({ length: 5 }, (_, i) => (i + 1) * 6 * HOUR));
        const online = await vaultPoints(m.item);
        // The rounds after 23:00 on each day copied the latest point: those of 00:30.
        assert.deepEqual(online.map((p) => p.time), ['2026-03-03T00:30:00.000Z', '2026-03-04T00:30:00.000Z']);
        const byTime = new Map(short.map((p) => [p.time, p]));
        for (const p of online) {
          assert.equal(p.id, byTime.get(p.time)!.id, 'a copy keeps the id of its point');
          assert.equal(p.kind, 'Scheduled');
          assert.equal(p.machine, m === m1 ? 'm1' : 'm2');
          assert.equal(p.itemKind, m === m1 ? 'files' : 'vm');
          // Kept by the vault's online policy: 30 days, not the 7 of the backup server.
          assert.equal(p.expiresAt, new Date(Date.parse(p.time) + 30 * 24 * HOUR).toISOString());
        }
      }
      assert.equal(onlineJobs.length, 4);
      const copies = await env.bsAdmin.listOnlineCopies();
      assert.ok(copies.every((c) => c.status === 'Completed'));
      const g = await env.bsAdmin.showGroup('g1');
      for (const i of g.items) {
        assert.equal(i.shortTermPoints, 6);
        assert.equal(i.lastOnlineRun, '2026-03-03T23:00:00.000Z');
        assert.equal(i.nextOnlineRun, '2026-03-04T23:00:00.000Z');
        assert.equal(i.lastCopy?.status, 'Completed');
      }
    });

    await t.test('the vault shows the backup server with its groups, items and the state of its online copies', async () => {
      const [s, ...others] = await vaultAdmin.listServers(UPSTREAM_VAULT);
      assert.equal(others.length, 0);
      assert.equal(s!.name, SERVER_NAME);
      assert.ok(s!.reportedAt);
      assert.deepEqual(s!.groups.map((g) => [g.name, g.shortTermPolicy, g.onlinePolicy, g.items.map((i) => `${i.machine}/${i.item}:${i.lastCopy?.status}`)]),
        [['g1', 'Every6h', 'Online', ['m1/docs:Completed', 'm2/web01:Completed']]]);
      assert.deepEqual(s!.machines.map((m) => [m.machine, m.items.map((i) => [i.item, i.kind, i.policy, i.state, i.onlinePoints, i.lastOnlinePoint])]), [
        ['m1', [['docs', 'files', 'Online', 'Protected', 2, '2026-03-04T00:30:00.000Z']]],
        ['m2', [['web01', 'vm', 'Online', 'Protected', 2, '2026-03-04T00:30:00.000Z']]],
      ]);
      assert.equal(s!.copiesInProgress, 0);
      assert.deepEqual(s!.throttle?.now, { bytesPerSecond: null, workHours: false, until: '2026-03-04T08:00:00.000Z' });
    });

    await t.test('a short-term point restores from the backup server byte for byte (files and VM)', async () => {
      const docsPoint = (await bsPoints('docs'))[3]!;
      const target = join(env.dir, 'restore-bs-docs');
      const r = await restore({ client: m1.agent.client, keys: m1.agent.keys, pointId: docsPoint.id, target });
      assert.equal(r.job.status, 'Completed');
      await assertSameTree(states.tree(docsPoint.id, 'docs'), join(target, 'docs'));
      const vmPoint = (await bsPoints('web01'))[4]!;
      const vmTarget = join(env.dir, 'restore-bs-vm');
      const v = await restoreVm({ client: m2.agent.client, keys: m2.agent.keys, agentDir: m2.agent.agentDir, pointId: vmPoint.id, target: vmTarget, source: 'vault' });
      assert.equal(v.disks.length, 1);
      assert.equal(v.source, 'vault');
      assert.ok(await cmp(states.file(vmPoint.id), v.disks[0]!.file), 'the VM disk restored from the backup server is identical');
    });

    await t.test('the online copy of an unchanged point sends nothing; of a changed point, only its new chunks', async () => {
      const opts = agentOpts(m1.agent);
      clock.advance(HOUR);
      const unchanged = await backupFiles({ ...opts, item: 'docs', paths: [docs], snapshot: 'none' });
      await states.keepTree(unchanged.point.id, docs);
      const c1 = await env.bsAdmin.copyOnline('docs');
      assert.equal(c1.status, 'Completed');
      assert.equal(c1.point, unchanged.point.id);
      assert.equal(c1.chunksSent, 0);
      assert.equal(c1.packsSent, 0);
      assert.ok(c1.chunksTotal > 0);
      assert.equal(c1.chunksPresent, c1.chunksTotal);

      clock.advance(HOUR);
      await writeFile(join(docs, 'new.bin'), seededBytes('new', 300_000));
      await appendFile(join(docs, 'notes', 'todo.txt'), 'one more line\n');
      const changed = await backupFiles({ ...opts, item: 'docs', paths: [docs], snapshot: 'none' });
      await states.keepTree(changed.point.id, docs);
      // What the changed point reaches that the unchanged one did not: its new chunks and pages.
      const db = env.bs.server.db;
      const store = env.bs.server.stores.forVault(env.bs.vault);
      const closureOf = async (id: string) => new Set((await pointClosure(db, m1.agent.state.containerId, await store.get(refsKey(id)))).ids);
      const before = await closureOf(unchanged.point.id);
      const fresh = [...await closureOf(changed.point.id)].filter((id) => !before.has(id));
      assert.ok(fresh.length >= 3, 'a new file, a changed file and the pages above them');
      const container = (await vaultAdmin.listServers(UPSTREAM_VAULT))[0]!.machines.find((m) => m.machine === 'm1')!.containerId;
      const vaultBlobs = async () => Number((await env.upstream.db.selectFrom('blobs').select((eb) => eb.fn.countAll<number>().as('n')).where('container_id', '=', container).executeTakeFirstOrThrow()).n);
      const blobsBefore = await vaultBlobs();
      const c2 = await env.bsAdmin.copyOnline('docs');
      assert.equal(c2.status, 'Completed');
      assert.equal(c2.chunksSent, fresh.length);
      assert.equal(c2.chunksPresent, c2.chunksTotal - fresh.length);
      assert.equal(await vaultBlobs(), blobsBefore + fresh.length);
      // The vault's job of the copy says the same.
      const job = await vaultAdmin.getJob(c2.upstreamJob!);
      assert.equal(job.status, 'Completed');
      assert.equal(job.pointId, changed.point.id);
      assert.equal(job.details.chunksSent, fresh.length);
      // The same point again: already there, nothing travels.
      const again = await env.bsAdmin.copyOnline('docs');
      assert.equal(again.status, 'Completed');
      assert.equal(again.chunksSent, 0);
      assert.equal(again.bytesSent, 0);
    });

    await t.test('the vault verifies clean: the copies, and the machines and items they made, with their records in its store', async () => {
      const v = await vaultAdmin.verify({ vault: UPSTREAM_VAULT });
      assert.equal(v.status, 'Completed');
      assert.deepEqual(v.errors, []);
    });

    await t.test('a database item is refused in a group, with what to do instead', async () => {
      await m1.agent.client.dbProtect('pg1');
      await assert.rejects(env.bsAdmin.addToGroup('g1', 'm1', 'pg1'), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument');
      assert.deepEqual((await env.bsAdmin.showGroup('g1')).items.map((i) => i.item), ['docs', 'web01']);
    });

    await t.test('with the backup server\'s data folder deleted, the machines restore their online points from the vault', async () => {
      await env.bs.close();
      await rm(env.bs.server.dataDir, { recursive: true, force: true });
      const v1 = await env.vaultAgent('m1');
      assert.equal(v1.reattached, true, 'm1 recovers its keys from the vault with its passphrase');
      const online = await vaultPoints('docs');
      assert.equal(online.length, 4);
      for (const p of [online[0]!, online[online.length - 1]!]) {
        const target = join(env.dir, `restore-vault-${p.id}`);
        const r = await restore({ client: v1.client, keys: v1.keys, pointId: p.id, target });
        assert.equal(r.job.status, 'Completed');
        await assertSameTree(states.tree(p.id, 'docs'), join(target, 'docs'));
      }
      const v2 = await env.vaultAgent('m2');
      assert.equal(v2.reattached, true);
      const vmPoint = (await vaultPoints('web01')).at(-1)!;
      const v = await restoreVm({ client: v2.client, keys: v2.keys, agentDir: v2.agentDir, pointId: vmPoint.id, target: join(env.dir, 'restore-vault-vm') });
      assert.equal(v.source, 'vault');
      assert.ok(await cmp(states.file(vmPoint.id), v.disks[0]!.file), 'the VM disk restored from the vault is identical');
    });

    await t.test('a rebuilt backup server of the same name takes its machines back: they recover their keys with their passphrase', async () => {
      await env.restartBackupServer();
      const bsVault = await env.bsAdmin.listMachines(SERVER_NAME);
      assert.deepEqual(bsVault.map((m) => [m.name, m.hasKeys]), [['m1', true], ['m2', true]]);
      // The machines taken back are recorded in the rebuilt server's store like any machine.
      const v = await env.bsAdmin.verify({});
      assert.equal(v.status, 'Completed');
      assert.deepEqual(v.errors, []);
      const again = await registerAgent({ agentDir: join(env.dir, 'agent-m1-again'), credentials: await credentialsFor(env.bs.server, SERVER_NAME), passphrase: PASSPHRASE, machine: 'm1' });
      assert.equal(again.reattached, true);
      assert.equal(again.keys.encKey, m1.agent.state.keys.encKey);
    });
  } finally {
    await env.close();
  }
});
