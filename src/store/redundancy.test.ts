/**
 * The redundancy wrappers over real local folders: each keeps the store contract, ZRS
 * acknowledges on a quorum of zones and repairs the zone that missed a write, GRS copies to
 * the paired region asynchronously and resumes without copying again, reads heal damaged
 * copies, and transient failures are retried while permanent ones are not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoffreError } from '../core/errors.js';
import { SingleCopyStore, type StoreCopy } from './copies.js';
import { LocalFolderStore } from './local-folder.js';
import { objectStoreContract } from './object-store.contract.js';
import type { ObjectStore } from './object-store.js';
import { PrefixStore } from './prefix.js';
import { RegionPairStore } from './region-pair.js';
import { Replicator } from './replicator.js';
import { RetryStore } from './retry.js';
import { healingRead, type CopyCheck } from './self-healing.js';
import { unavailable } from './store-error.js';
import { ZoneQuorumStore } from './zone-quorum.js';
import { MemoryCopyQueue } from '../../testkit/memory-copy-queue.js';

const root = await mkdtemp(join(tmpdir(), 'coffre-redundancy-'));
test.after(() => rm(root, { recursive: true, force: true }));
let n = 0;

async function folder(name = `s${n++}`): Promise<LocalFolderStore> {
  const s = new LocalFolderStore(join(root, name), name);
  await s.create();
  return s;
}
const copy = (name: string, store: ObjectStore, role: 'primary' | 'secondary' = 'primary'): StoreCopy => ({ name, role, store });
const FAST = { attempts: 3, baseDelayMs: 1, factor: 2, maxDelayMs: 5 };

async function zones(count = 3) {
  const base = `zrs${n++}`;
  const folders = await Promise.all(Array.from({ length: count }, (_, i) => folder(`${base}-z${i + 1}`)));
  const queue = new MemoryCopyQueue();
  const copies = folders.map((f, i) => copy(`r/z${i + 1}`, f));
  return { folders, queue, copies, store: new ZoneQuorumStore(copies, queue.scoped('v1'), 'r', { downMs: 0 }), dirs: folders.map((_, i) => join(root, `${base}-z${i + 1}`)) };
}

async function pair() {
  const p = await folder();
  const s = await folder();
  const queue = new MemoryCopyQueue();
  const primary = new SingleCopyStore(copy('west/1', p));
  const secondary = new SingleCopyStore(copy('east/1', s, 'secondary'));
  return { p, s, queue, store: new RegionPairStore(primary, secondary, queue.scoped('v1')) };
}

objectStoreContract('retry wrapper', async () => new RetryStore(await folder(), FAST), { manyKeys: 300 });
objectStoreContract('prefix wrapper', async () => new PrefixStore(await folder(), 'vaults/abc'), { manyKeys: 300 });
objectStoreContract('zone quorum (ZRS)', async () => (await zones()).store, { manyKeys: 300 });
objectStoreContract('region pair (GRS)', async () => (await pair()).store, { manyKeys: 300 });

test('ZRS: a write succeeds with one zone gone, the zone is repaired when it returns; with two gone it fails', async () => {
  const z = await zones();
  await rename(z.dirs[1]!, `${z.dirs[1]}.away`);
  await z.store.put('packs/p1', Buffer.from('pack one'));
  assert.deepEqual(z.queue.tasks.map((t) => [t.target, t.key, t.op, t.bytes]), [['r/z2', 'packs/p1', 'put', 8]]);
  assert.equal((await z.store.get('packs/p1')).toString(), 'pack one');
  assert.equal(await z.folders[0]!.stat('packs/p1').then((s) => s?.size), 8);
  assert.equal(await z.folders[2]!.stat('packs/p1').then((s) => s?.size), 8);

  const replicator = new Replicator({ queue: z.queue, copiesOf: async () => z.copies, retryBaseMs: 1 });
  assert.equal(await replicator.drain(), 1, 'the zone is still away: the task stays');
  await rename(`${z.dirs[1]}.away`, z.dirs[1]!);
  assert.equal(await replicator.drain(), 0);
  assert.equal((await z.folders[1]!.get('packs/p1')).toString(), 'pack one', 'the zone that missed the write has it now');

  await rename(z.dirs[1]!, `${z.dirs[1]}.away`);
  await rename(z.dirs[2]!, `${z.dirs[2]}.away`);
  await assert.rejects(z.store.put('packs/p2', Buffer.from('two')), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && /1 of 3 zones, 2 are needed/.test(e.message));
  // A read still finds an acknowledged object in the one zone left; a missing one is not "missing" but unavailable.
  assert.equal((await z.store.get('packs/p1')).toString(), 'pack one');
  await assert.rejects(z.store.get('packs/never'), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable');
  await assert.rejects((async () => { for await (const _ of z.store.list('')) void _; })(), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable');
});

test('ZRS: a deletion that misses a zone is queued for it', async () => {
  const z = await zones();
  await z.store.put('k', Buffer.from('x'));
  await rename(z.dirs[0]!, `${z.dirs[0]}.away`);
  await z.store.delete('k');
  assert.deepEqual(z.queue.tasks.map((t) => [t.target, t.op]), [['r/z1', 'delete']]);
  await rename(`${z.dirs[0]}.away`, z.dirs[0]!);
  await new Replicator({ queue: z.queue, copiesOf: async () => z.copies }).drain();
  assert.equal(await z.folders[0]!.stat('k'), null);
  await assert.rejects(z.store.get('k'), (e: unknown) => e instanceof CoffreError && e.code === 'NotFound');
});

test('GRS: the primary holds a write at once, the secondary after replication; a restart does not copy again', async () => {
  const g = await pair();
  await g.store.put('packs/a', Buffer.alloc(5000, 1));
  await g.store.put('points/x/manifest', Buffer.alloc(300, 2));
  assert.equal(await g.s.stat('packs/a'), null, 'not yet in the secondary');
  assert.equal(g.queue.tasks.length, 2);
  let copied = 0;
  const counting = (s: ObjectStore): ObjectStore => ({ ...s, get: s.get.bind(s), stat: s.stat.bind(s), list: s.list.bind(s), delete: s.delete.bind(s), put: async (k, d) => { copied++; return s.put(k, d); } });
  const copiesOf = async () => [copy('west/1', g.p), copy('east/1', counting(g.s), 'secondary')];
  // A copy made, then the process stops before the queue learned it (a crash): the task is still there.
  await g.s.put('packs/a', await g.p.get('packs/a'));
  const replicator = new Replicator({ queue: g.queue, copiesOf });
  assert.equal(await replicator.drain(), 0);
  assert.equal(copied, 1, 'what was already in the secondary is not copied again');
  assert.deepEqual(await g.s.get('points/x/manifest'), Buffer.alloc(300, 2));
  await g.store.delete('packs/a');
  assert.notEqual(await g.s.stat('packs/a'), null);
  await replicator.drain();
  assert.equal(await g.s.stat('packs/a'), null, 'the deletion reached the secondary');
  // Reads fall back to the secondary when the primary lacks an object.
  await g.p.delete('points/x/manifest');
  assert.deepEqual(await g.store.get('points/x/manifest'), Buffer.alloc(300, 2));
});

test('GRS: large objects copied one after another through the replicator\'s reused buffers each arrive whole', async () => {
  const g = await pair();
  const MiB = 1024 * 1024;
  // Different sizes and contents, more objects than lanes: each read lands in a buffer an earlier copy used.
  const objects = Array.from({ length: 7 }, (_, i) => ({ key: `packs/p${i}`, data: Buffer.alloc((i % 3 + 1) * MiB + i * 1000, 17 + i) }));
  for (const o of objects) await g.store.put(o.key, o.data);
  const replicator = new Replicator({ queue: g.queue, copiesOf: async () => [copy('west/1', g.p), copy('east/1', g.s, 'secondary')] });
  assert.equal(await replicator.drain(), 0);
  for (const o of objects) assert.ok((await g.s.get(o.key)).equals(o.data), o.key);
});

test('GRS: a damaged primary copy is not spread to the secondary', async () => {
  const g = await pair();
  await g.store.put('packs/a', Buffer.from('good bytes'));
  await writeFile(join(root, g.p.name, 'packs', 'a'), 'evil bytes');
  const replicator = new Replicator({ queue: g.queue, copiesOf: async () => [copy('west/1', g.p), copy('east/1', g.s, 'secondary')], check: (_k, d) => d.toString() === 'good bytes', retryBaseMs: 1 });
  assert.equal(await replicator.drain(), 1, 'the task waits for an intact source');
  assert.equal(await g.s.stat('packs/a'), null);
  assert.match(g.queue.tasks[0]!.error ?? '', /intact/);
});

test('the replicator runs by itself in the background and stops cleanly', async () => {
  const g = await pair();
  const replicator = new Replicator({ queue: g.queue, copiesOf: async () => [copy('west/1', g.p), copy('east/1', g.s, 'secondary')], idleMs: 10_000 });
  replicator.start();
  const arrived = new Promise<void>((resolve) => {
    const orig = g.s.put.bind(g.s);
    g.s.put = async (k, d) => { await orig(k, d); resolve(); };
  });
  await g.store.put('k', Buffer.from('v'));
  replicator.nudge();
  await arrived;
  await replicator.stop();
  assert.equal((await g.s.get('k')).toString(), 'v');
});

test('self-healing read: a damaged or missing copy is served from another copy and rewritten', async () => {
  const z = await zones();
  const good = Buffer.from('0123456789'.repeat(100));
  await z.store.put('packs/p', good);
  await writeFile(join(z.dirs[0]!, 'packs', 'p'), Buffer.from('X'.repeat(1000)));
  await rm(join(z.dirs[1]!, 'packs', 'p'));
  const check: CopyCheck = {
    part: (d, r) => d.equals(good.subarray(r?.offset ?? 0, (r?.offset ?? 0) + (r?.length ?? good.length))),
    whole: (d) => d.equals(good),
  };
  const r = await healingRead(z.copies, 'packs/p', { offset: 100, length: 50 }, check);
  assert.deepEqual(r.data, good.subarray(100, 150));
  assert.deepEqual(r.repairs.map((x) => [x.store, x.problem, x.repaired]), [['r/z1', 'damaged', true], ['r/z2', 'missing', true]]);
  for (const d of z.dirs) assert.deepEqual(await readFile(join(d, 'packs', 'p')), good, `${d} is whole again`);
  // Every copy damaged: the read fails, naming them, and nothing is rewritten.
  for (const d of z.dirs) await writeFile(join(d, 'packs', 'p'), Buffer.from('Y'.repeat(1000)));
  await assert.rejects(healingRead(z.copies, 'packs/p', undefined, check), (e: unknown) => e instanceof CoffreError && e.code === 'ChecksumMismatch' && /r\/z1, r\/z2, r\/z3/.test(e.message));
});

test('retry wrapper: transient failures are retried, permanent ones are not; a list cut short still yields each key once', async () => {
  const base = await folder();
  for (const k of ['a', 'b', 'c', 'd']) await base.put(`l/${k}`, Buffer.from(k));
  let calls = 0;
  let listFailed = false;
  const flaky: ObjectStore = {
    put: async (k, d) => { if (++calls < 3) throw unavailable('flaky', k, 'ECONNRESET', true); return base.put(k, d); },
    get: async (k) => { calls++; throw unavailable('flaky', k, 'bucket gone', false); },
    stat: (k) => base.stat(k),
    delete: (k) => base.delete(k),
    list: async function* (p) {
      let i = 0;
      for await (const k of base.list(p)) {
        yield k;
        if (++i === 2 && !listFailed) { listFailed = true; throw unavailable('flaky', undefined, 'ETIMEDOUT', true); }
      }
    },
  };
  const r = new RetryStore(flaky, FAST);
  await r.put('x', Buffer.from('1'));
  assert.equal(calls, 3, 'two transient failures, then success');
  calls = 0;
  await assert.rejects(r.get('x'), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable');
  assert.equal(calls, 1, 'a permanent failure is not retried');
  const listed: string[] = [];
  for await (const k of r.list('l')) listed.push(k);
  assert.ok(listFailed);
  assert.deepEqual(listed.sort(), ['l/a', 'l/b', 'l/c', 'l/d']);
});
