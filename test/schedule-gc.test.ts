/**
 * A month of scheduled backups in milliseconds (the vault's clock is a dependency), a missed
 * run, retention shortened with a dry run, then prune and GC that give space back — and
 * garbage collection that never loses a live chunk, even running beside backups or crashing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { runDueOnce } from '../src/agent/daemon.js';
import { registerAgent } from '../src/agent/register.js';
import { requireState } from '../src/agent/state.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { ManualClock } from '../src/core/clock.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { startServer } from '../src/vault/server.js';
import { collectGarbage } from '../src/vault/gc.js';
import type { RedundantStore } from '../src/store/copies.js';
import { clientFor, credentialsFor, PASSPHRASE, storeBytes, tempDir } from '../testkit/harness.js';

const DAY = 86_400_000;

/** Deterministic, incompressible bytes for a given day and file. */
function bytesFor(day: number, name: string, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let block = createHash('sha256').update(`${day}:${name}`).digest();
  for (let o = 0; o < size; o += 32) {
    block.copy(out, o);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}


async function setup(start: string) {
  const dir = await tempDir();
  const clock = new ManualClock(new Date(start));
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  const admin = clientFor(server);
  await admin.createVault({ name: 'v' });
  const machine = async (name: string) => {
    const agentDir = join(dir, `agent-${name}`);
    const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: name, credentials: await credentialsFor(server, 'v') });
    const client = clientFor(server, st.token);
    return { agentDir, client, keys: keysFromJSON(st.keys), state: st };
  };
  return { dir, clock, server, admin, machine, async close() { await server.close(); await rm(dir, { recursive: true, force: true }); } };
}

test('a simulated month: the daemon runs the schedule, a missed run fails visibly, shortened retention prunes and GC shrinks the vault', async () => {
  const env = await setup('2026-03-01T03:00:00Z');
  try {
    const { clock, server, admin } = env;
    const m = await env.machine('web01');
    const src = join(env.dir, 'site');
    await mkdir(src);
    const writeDay = async (day: number) => {
      await writeFile(join(src, 'static.txt'), 'unchanged content\n'.repeat(1000));
      await writeFile(join(src, 'daily.bin'), bytesFor(day, 'daily', 1024 * 1024));
    };
    await writeDay(0);
    await admin.createPolicy('Nightly', { name: 'x', timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 30 } } });
    // The first, manual backup tells the vault what this item is.
    const first = await backup({ client: m.client, containerId: m.state.containerId, keys: m.keys, agentDir: m.agentDir, vaultId: m.state.vaultId, item: 'site', paths: [src] });
    await admin.assignPolicy('Nightly', 'site');
    const state = await requireState(m.agentDir);
    const daemon = { client: m.client, state, agentDir: m.agentDir };

    const dayOf = new Map<string, number>();
    for (let day = 1; day <= 30; day++) {
      const at = new Date(Date.UTC(2026, 2, 1 + day, 2, 31));
      clock.set(at);
      if (day === 10) { // the machine is off that night
        clock.set(new Date(at.getTime() + 6 * 3_600_000));
        await server.maintain();
        continue;
      }
      await writeDay(day);
      const ran = await runDueOnce(daemon);
      assert.equal(ran.length, 1, `day ${day}: one run is due`);
      assert.equal(ran[0]!.error, undefined);
      dayOf.set(ran[0]!.result!.point.id, day);
      assert.deepEqual(await runDueOnce(daemon), [], 'a run is handed out once');
    }
    const jobs = await admin.listJobs();
    const missed = jobs.filter((j) => j.errors.some((e) => e.code === 'MissedSchedule'));
    assert.equal(missed.length, 1);
    assert.equal(missed[0]!.status, 'Failed');
    assert.match(missed[0]!.errors[0]!.message, /2026-03-11T02:30:00.000Z/);
    const scheduled = (await admin.listPoints({ item: 'site' })).filter((p) => p.kind === 'Scheduled');
    assert.equal(scheduled.length, 29);

    // Keep one week of dailies: the dry run names exactly the points older than 7 days.
    const shorter = { name: 'x', timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 7 } } };
    const now = clock.now().getTime();
    const dry = await admin.setPolicy('Nightly', shorter, true);
    const expected = scheduled.filter((p) => now - Date.parse(p.time) >= 7 * DAY).map((p) => p.id).sort();
    assert.deepEqual(dry.change.deleted.map((d) => d.id).sort(), expected);
    assert.equal(expected.length, 22);

    const before = await storeBytes(server.dataDir);
    const applied = await admin.setPolicy('Nightly', shorter, false);
    assert.equal(applied.gc?.status, 'Completed');
    const after = await storeBytes(server.dataDir);
    assert.ok(after < before * 0.6, `the vault shrank from ${before} to ${after} bytes`);

    const left = await admin.listPoints({ item: 'site' });
    assert.deepEqual(left.map((p) => p.id).sort(), [first.point.id, ...scheduled.map((p) => p.id).filter((id) => !expected.includes(id))].sort());
    for (const p of left) {
      const target = join(env.dir, `r-${p.id}`);
      const r = await restore({ client: m.client, keys: m.keys, pointId: p.id, target });
      assert.deepEqual(r.errors, []);
      const day = dayOf.get(p.id) ?? 0;
      assert.ok((await readFile(join(target, 'site', 'daily.bin'))).equals(bytesFor(day, 'daily', 1024 * 1024)), `point ${p.id} holds day ${day}`);
    }
    assert.equal((await admin.verify({})).status, 'Completed');
  } finally {
    await env.close();
  }
});

test('GC running beside backups never removes a chunk a live point or a running backup needs', async () => {
  const env = await setup('2026-05-01T00:00:00Z');
  try {
    const { admin, server } = env;
    const a = await env.machine('alpha');
    const b = await env.machine('beta');
    const srcA = join(env.dir, 'a');
    const srcB = join(env.dir, 'b');
    await mkdir(srcA);
    await mkdir(srcB);
    const opts = (m: typeof a, item: string, src: string, retainUntil?: string) =>
      ({ client: m.client, containerId: m.state.containerId, keys: m.keys, agentDir: m.agentDir, vaultId: m.state.vaultId, item, paths: [src], ...(retainUntil ? { retainUntil } : {}) });

    // Beta makes points that expire soon, so GC has real garbage to take while alpha works.
    for (let i = 0; i < 3; i++) {
      await writeFile(join(srcB, 'data.bin'), bytesFor(100 + i, 'b', 3 * 1024 * 1024));
      await backup(opts(b, 'beta', srcB, '2026-05-02'));
    }
    await writeFile(join(srcB, 'data.bin'), bytesFor(200, 'b', 3 * 1024 * 1024));
    const keptB = await backup(opts(b, 'beta', srcB, '2026-12-31'));
    env.clock.set(new Date('2026-05-03T00:00:00Z'));

    let stop = false;
    const gcRuns: string[] = [];
    const gcLoop = (async () => {
      while (!stop) {
        await admin.prune();
        gcRuns.push((await admin.gc()).status);
      }
    })();
    const pointsA: { id: string; day: number }[] = [];
    for (let i = 0; i < 6; i++) {
      // Alternate between new content and content seen before (dedup against chunks GC may be judging).
      await writeFile(join(srcA, 'data.bin'), bytesFor(i % 3, 'a', 4 * 1024 * 1024));
      await writeFile(join(srcA, `extra-${i}.bin`), bytesFor(i, 'extra', 512 * 1024));
      const r = await backup(opts(a, 'alpha', srcA));
      pointsA.push({ id: r.point.id, day: i });
    }
    stop = true;
    await gcLoop;
    assert.ok(gcRuns.length >= 1);
    assert.ok(gcRuns.every((s) => s === 'Completed' || s === 'CompletedWithWarnings'), gcRuns.join(','));
    await admin.gc();

    // Every live point restores byte for byte.
    const liveA = await admin.listPoints({ item: 'alpha' });
    assert.equal(liveA.length, 6);
    const last = join(env.dir, 'ra');
    const r = await restore({ client: a.client, keys: a.keys, pointId: pointsA[5]!.id, target: last });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(await compareTrees(srcA, join(last, 'a')), []);
    for (const p of pointsA) {
      const t = join(env.dir, `ra-${p.id}`);
      assert.deepEqual((await restore({ client: a.client, keys: a.keys, pointId: p.id, target: t })).errors, []);
      assert.ok((await readFile(join(t, 'a', 'data.bin'))).equals(bytesFor(p.day % 3, 'a', 4 * 1024 * 1024)));
    }
    const liveB = await admin.listPoints({ item: 'beta' });
    assert.deepEqual(liveB.map((p) => p.id), [keptB.point.id]);
    const tb = join(env.dir, 'rb');
    assert.deepEqual((await restore({ client: b.client, keys: b.keys, pointId: keptB.point.id, target: tb })).errors, []);
    assert.ok((await readFile(join(tb, 'b', 'data.bin'))).equals(bytesFor(200, 'b', 3 * 1024 * 1024)));
    assert.equal((await admin.verify({})).status, 'Completed');
    void server;
  } finally {
    await env.close();
  }
});

/** A store that fails (as a crash would stop GC) after a number of writes or deletes. */
class FailingStore implements RedundantStore {
  constructor(private readonly inner: RedundantStore, private budget: number) {}
  copies() { return this.inner.copies(); }
  private spend(): void { if (this.budget-- <= 0) throw new Error('simulated crash'); }
  async put(key: string, data: Uint8Array) { this.spend(); return this.inner.put(key, data); }
  get(key: string, range?: { offset: number; length: number }) { return this.inner.get(key, range); }
  stat(key: string) { return this.inner.stat(key); }
  list(prefix: string) { return this.inner.list(prefix); }
  async delete(key: string) { this.spend(); return this.inner.delete(key); }
}

test('a GC that crashes at any step loses no live data, and the next GC finishes the job', async () => {
  // Crash after 0, 1, 2, ... store writes or deletes, until GC has room to finish.
  let finishedAt = -1;
  for (let budget = 0; finishedAt < 0 && budget < 20; budget++) {
    const env = await setup('2026-06-01T00:00:00Z');
    try {
      const { admin, server, clock } = env;
      const m = await env.machine('m');
      const src = join(env.dir, 'src');
      await mkdir(src);
      const opts = (retainUntil: string) => ({ client: m.client, containerId: m.state.containerId, keys: m.keys, agentDir: m.agentDir, vaultId: m.state.vaultId, item: 'i', paths: [src], retainUntil });
      // Old points share one pack with the kept point's data: GC must rewrite, not drop, it.
      // (Small files are read together, so both land in the same pack.)
      await writeFile(join(src, 'keep.bin'), bytesFor(1, 'keep', 128 * 1024));
      await writeFile(join(src, 'drop.bin'), bytesFor(1, 'drop', 900 * 1024));
      await backup(opts('2026-06-02'));
      await rm(join(src, 'drop.bin'));
      const kept = await backup(opts('2099-12-31'));
      clock.set(new Date('2026-06-05T00:00:00Z'));
      await admin.prune();
      const ctx = { db: server.db, stores: server.stores.wrapped((s) => new FailingStore(s, budget)), clock };
      const crashed = await collectGarbage(ctx, { kind: 'system' }, 'v');
      if (crashed.status !== 'Failed') finishedAt = budget;
      const t1 = join(env.dir, 'after-crash');
      assert.deepEqual((await restore({ client: m.client, keys: m.keys, pointId: kept.point.id, target: t1 })).errors, [], `budget ${budget}`);
      assert.deepEqual(await compareTrees(src, join(t1, 'src')), []);
      // Objects the catalog does not know are removed after a grace period (an upload may be in flight).
      clock.set(new Date(Date.now() + 2 * 3_600_000));
      const done = await admin.gc();
      assert.equal(done.status, 'Completed');
      const t2 = join(env.dir, 'after-gc');
      assert.deepEqual((await restore({ client: m.client, keys: m.keys, pointId: kept.point.id, target: t2 })).errors, []);
      assert.deepEqual(await compareTrees(src, join(t2, 'src')), []);
      assert.equal((await admin.verify({})).status, 'Completed');
      // The dropped file's 900 KiB are gone from the store.
      assert.ok(await storeBytes(server.dataDir) < 512 * 1024, `budget ${budget}`);
    } finally {
      await env.close();
    }
  }
  // Rewriting the shared pack takes a write and a delete: both crash points were exercised.
  assert.ok(finishedAt >= 2, `GC finished with a budget of ${finishedAt}`);
});

test('the daemon runs a protected VM on its policy schedule too', async () => {
  const env = await setup('2026-07-01T03:00:00Z');
  try {
    const { admin, clock } = env;
    const m = await env.machine('hv01');
    const disk = join(env.dir, 'web01.img');
    await writeFile(disk, bytesFor(1, 'disk', 4 * 1024 * 1024));
    const { saveVmConfig } = await import('../src/agent/vm/config.js');
    const { backupVm } = await import('../src/agent/vm/vm-backup.js');
    const now = clock.now().toISOString();
    const config = { version: 1 as const, name: 'web01', disks: [{ path: disk }], scriptTimeoutSeconds: 30, blockSize: 1024 * 1024, policyAssigned: false, createdAt: now, updatedAt: now };
    await saveVmConfig(m.agentDir, config);
    const common = { client: m.client, containerId: m.state.containerId, keys: m.keys, agentDir: m.agentDir, vaultId: m.state.vaultId, clock };
    await backupVm({ ...common, config });
    await admin.createPolicy('VmNightly', { name: 'x', timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 7 } } });
    await admin.assignPolicy('VmNightly', 'web01');

    await writeFile(disk, bytesFor(2, 'disk', 4 * 1024 * 1024));
    clock.set(new Date('2026-07-02T02:31:00Z'));
    const state = await requireState(m.agentDir);
    const ran = await runDueOnce({ client: m.client, state, agentDir: m.agentDir });
    assert.equal(ran.length, 1);
    assert.equal(ran[0]!.error, undefined);
    const points = await admin.listPoints({ item: 'web01' });
    assert.deepEqual(points.map((p) => [p.kind, p.itemKind]), [['OnDemand', 'vm'], ['Scheduled', 'vm']]);
    assert.equal(points[1]!.id, ran[0]!.result!.point.id);
  } finally {
    await env.close();
  }
});
