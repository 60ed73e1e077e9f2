/**
 * LVM and ZFS snapshots as command sequences against recorded outputs of the real tools
 * (test/fixtures/snapshot/README.md says how each was recorded): this kernel has neither
 * device-mapper nor ZFS. The backups run for real otherwise (vault, walk, restore); the
 * recorded `mount` and `zfs snapshot` put a prepared tree where the snapshot would be mounted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { restore } from '../src/agent/restore.js';
import { LvmSnapshotter } from '../src/agent/snapshot/lvm.js';
import { backupFiles, type SnapshotBackupOptions } from '../src/agent/snapshot/snapshot-backup.js';
import type { LvmVolume, SnapshotRef } from '../src/agent/snapshot/snapshotter.js';
import type { Mount } from '../src/agent/snapshot/volumes.js';
import { ZfsSnapshotter } from '../src/agent/snapshot/zfs.js';
import { CoffreError } from '../src/core/errors.js';
import { harness, type Harness, type TestAgent } from '../testkit/harness.js';
import { failed, ok, RecordedRunner, type Step } from '../testkit/recorded-runner.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'snapshot');
/** A fixture, with the recorded snapshot's name standing for the one this run makes. */
const fixture = async (name: string, as = '@SNAP0@') => (await readFile(join(FIXTURES, name), 'utf8')).replaceAll('coffre-4242-99-0-0', as);
const recorded = async (name: string) => readFile(join(FIXTURES, name), 'utf8');

const REPORT = ['--reportformat', 'json', '--units', 'b', '--nosuffix'];
const PROBE = ['lvs', ...REPORT, '-o', 'vg_name,lv_name,lv_attr,pool_lv,lv_kernel_major,lv_kernel_minor'];
const CHECK = (name: string, ...more: string[]) => ['lvs', ...REPORT, '-o', 'lv_name,lv_attr,snap_percent,data_percent,metadata_percent', `vgc/${name}`, ...more];
const NAMES = ['lvs', ...REPORT, '-o', 'lv_name', 'vgc'];
const ORIGINS = ['lvs', ...REPORT, '-o', 'lv_name,origin', 'vgc'];

let h: Harness;
let a: TestAgent;
let dir: string;
before(async () => {
  h = await harness();
  a = await h.agent();
  dir = h.dir;
});
after(async () => { await h.close(); });

function mount(mountPoint: string, fields: Partial<Mount>): Mount {
  return { id: 100, parentId: 1, device: '253:3', root: '/', mountPoint, mountOptions: ['rw'], fsType: 'ext4', source: '/dev/mapper/vgc-data', superOptions: ['rw'], ...fields };
}
const rootMount = mount('/', { device: '254:0', source: '/dev/vda' });

async function tree(path: string, files: Record<string, string>): Promise<string> {
  await mkdir(path, { recursive: true });
  for (const [name, body] of Object.entries(files)) await writeFile(join(path, name), body);
  return path;
}

function options(item: string, paths: string[], runner: RecordedRunner, mounts: Mount[], extra: Partial<SnapshotBackupOptions> = {}): SnapshotBackupOptions {
  return {
    client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item, paths,
    runner, mounts: async () => mounts, lvmMountBase: join(dir, 'lvm-mounts'), ...extra,
  };
}

async function restored(pointId: string, name: string): Promise<string> {
  const target = join(dir, `restore-${pointId}`);
  await restore({ client: a.client, keys: a.keys, pointId, target, paths: [], overwrite: 'rename' });
  return readFile(join(target, name, 'file.txt'), 'utf8');
}

/** The LVM sequence up to the read: probe, sweep (a dead run's snapshot is there), snapshot, mount. */
async function lvmUpToRead(live: string, snapshotTree: string): Promise<Step[]> {
  const base = join(dir, 'lvm-mounts');
  return [
    { argv: PROBE, out: ok(await recorded('lvs-probe.json')) },
    // A snapshot named by a process that no longer runs (pid 4242 started at tick 99): swept.
    { argv: ORIGINS, out: ok(await recorded('lvs-origins.raw.json')) },
    { argv: ['mountpoint', '-q', join(base, 'coffre-4242-99-0-0')], out: failed(1, '') },
    { argv: NAMES, out: ok(await recorded('lvs-names.raw.json')) },
    { argv: ['lvremove', '--yes', 'vgc/coffre-4242-99-0-0'], out: ok(await recorded('lvremove.stdout')) },
    { argv: ['lvcreate', '--snapshot', '--name', '@SNAP0@', '--extents', '20%ORIGIN', 'vgc/data'], out: ok('  Logical volume "@SNAP0@" created.\n') },
    {
      argv: ['mount', '-t', 'ext4', '-o', 'ro', '/dev/vgc/@SNAP0@', join(base, '@SNAP0@')], out: ok(),
      effect: async () => { await cp(snapshotTree, join(base, (await readdir(base)).find((n) => n.startsWith('coffre-'))!), { recursive: true }); },
    },
  ];
}

/** Unmount and remove the run's snapshot. */
function lvmRemoval(base: string, names: string): Step[] {
  return [
    { argv: ['mountpoint', '-q', join(base, '@SNAP0@')], out: ok() },
    {
      argv: ['umount', join(base, '@SNAP0@')], out: ok(),
      effect: async () => { for (const n of await readdir(base)) await rm(join(base, n, 'file.txt'), { force: true }); },
    },
    { argv: NAMES, out: ok(names) },
    { argv: ['lvremove', '--yes', 'vgc/@SNAP0@'], out: ok('  Logical volume "@SNAP0@" successfully removed.\n') },
  ];
}

test('LVM: probe, sweep a dead run\'s snapshot, lvcreate, mount read-only, read, check, unmount, lvremove; the point is the snapshot\'s', async () => {
  const live = await tree(join(dir, 'lvm-live'), { 'file.txt': 'live, changed after the snapshot\n' });
  const snap = await tree(join(dir, 'lvm-snap'), { 'file.txt': 'as at the snapshot\n' });
  const base = join(dir, 'lvm-mounts');
  const runner = new RecordedRunner([
    ...await lvmUpToRead(live, snap),
    { argv: CHECK('@SNAP0@'), out: ok(await fixture('lvs-check-ok.json')) },
    ...lvmRemoval(base, await fixture('lvs-names.raw.json')),
  ]);
  const r = await backupFiles(options('lvm-ok', [live], runner, [rootMount, mount(live, {})]));
  runner.assertDone();
  assert.equal(r.point.consistency, 'filesystem');
  assert.deepEqual(r.warnings, []);
  assert.equal(await restored(r.point.id, 'lvm-live'), 'as at the snapshot\n', 'read from the snapshot, recorded as the live path');
  const job = await a.client.getJob(r.jobId);
  assert.match(((job.details.notes as string[]) ?? []).join('\n'), /removed 1 snapshot\(s\) left by an earlier run that was killed: coffre-4242-99-0-0/);
  assert.deepEqual(await readdir(base), [], 'the mount point is removed');
  assert.deepEqual(await readdir(join(a.agentDir, 'snapshots')), []);
});

test('LVM: a snapshot that filled up during the read fails the backup; no point is committed; it is still removed', async () => {
  const live = await tree(join(dir, 'lvm-live2'), { 'file.txt': 'live\n' });
  const snap = await tree(join(dir, 'lvm-snap2'), { 'file.txt': 'garbage after the overflow\n' });
  const base = join(dir, 'lvm-mounts');
  const runner = new RecordedRunner([
    ...await lvmUpToRead(live, snap),
    { argv: CHECK('@SNAP0@'), out: ok(await fixture('lvs-check-filled.json')) },
    ...lvmRemoval(base, await fixture('lvs-names.raw.json')),
  ]);
  await assert.rejects(backupFiles(options('lvm-filled', [live], runner, [rootMount, mount(live, {})])), (e: unknown) => {
    assert.ok(e instanceof CoffreError && e.code === 'SnapshotInvalid', String(e));
    assert.match(e.message, /filled up during the read .* give it more with --snapshot-size/);
    return true;
  });
  runner.assertDone();
  assert.deepEqual(await h.admin.listPoints({ item: 'lvm-filled' }), []);
  const job = (await h.admin.listJobs()).find((j) => j.item === 'lvm-filled')!;
  assert.equal(job.status, 'Failed');
  assert.equal(job.errors[0]!.code, 'SnapshotInvalid');
  assert.deepEqual(await readdir(join(a.agentDir, 'snapshots')), []);
});

test('LVM: lvcreate failing (real output of this kernel) fails the backup clearly and leaves nothing', async () => {
  const live = await tree(join(dir, 'lvm-live3'), { 'file.txt': 'live\n' });
  const base = join(dir, 'lvm-mounts');
  const runner = new RecordedRunner([
    { argv: PROBE, out: ok(await recorded('lvs-probe.json')) },
    { argv: ORIGINS, out: ok(await recorded('lvs-names-after.raw.json')) },
    { argv: ['lvcreate', '--snapshot', '--name', '@SNAP0@', '--size', '2G', 'vgc/data'], out: failed(3, await recorded('lvcreate-no-dm.stderr')) },
    { argv: ['mountpoint', '-q', join(base, '@SNAP0@')], out: failed(1, '') },
    { argv: NAMES, out: ok(await recorded('lvs-names-after.raw.json')) },
  ]);
  await assert.rejects(backupFiles(options('lvm-nodm', [live], runner, [rootMount, mount(live, {})], { snapshot: 'lvm', snapshotSize: '2G' })), (e: unknown) => {
    assert.ok(e instanceof CoffreError && e.code === 'SnapshotFailed', String(e));
    assert.match(e.message, /cannot snapshot vgc\/data .*exited with status 3: .*Required device-mapper target\(s\) not detected/);
    return true;
  });
  runner.assertDone();
  const job = (await h.admin.listJobs()).find((j) => j.item === 'lvm-nodm')!;
  assert.equal(job.status, 'Failed');
  assert.equal(job.errors[0]!.code, 'SnapshotFailed');
  assert.deepEqual(await readdir(join(a.agentDir, 'snapshots')), []);
});

test('LVM: the check after the read, for classic and thin snapshots', async () => {
  const volume: LvmVolume = { method: 'lvm', key: 'lvm:vgc/data', live: '/srv', vg: 'vgc', lv: 'data', pool: '', fsType: 'ext4', fsRoot: '/', mountBase: '/run/x', size: '20%ORIGIN' };
  const ref: SnapshotRef = { name: 'coffre-4242-99-0-0', volume };
  const check = async (out: string, v: LvmVolume = volume) => {
    const runner = new RecordedRunner([{ argv: CHECK('coffre-4242-99-0-0', ...(v.pool ? [`vgc/${v.pool}`] : [])), out: ok(out) }]);
    try {
      return await new LvmSnapshotter(runner, { mountBase: '/run/x' }).check({ ...ref, volume: v });
    } finally {
      runner.assertDone();
    }
  };
  assert.deepEqual(await check(await recorded('lvs-check-ok.json')), []);
  const nearly = await check(await recorded('lvs-check-nearly-full.json'));
  assert.deepEqual(nearly.map((w) => w.code), ['SnapshotNearlyFull']);
  assert.match(nearly[0]!.message, /used 86.1% of its 20%ORIGIN/);
  await assert.rejects(check(await recorded('lvs-check-filled.json')), (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotInvalid');
  await assert.rejects(check(await recorded('lvs-check-thin-full.json'), { ...volume, pool: 'pool0' }),
    (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotInvalid' && /thin pool vgc\/pool0 filled up/.test(e.message));
  // A snapshot lvs no longer lists cannot be vouched for.
  await assert.rejects(check(await recorded('lvs-names-after.raw.json')), (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotInvalid');
});

test('LVM: a thin volume gets a thin snapshot (no size, activated)', async () => {
  const runner = new RecordedRunner([
    { argv: PROBE, out: ok(await recorded('lvs-probe-thin.json')) },
    { argv: ['lvcreate', '--snapshot', '--name', 'coffre-1-1-0-0', '--setactivationskip', 'n', 'vgc/data'], out: ok() },
    { argv: ['mount', '-t', 'xfs', '-o', 'ro,nouuid', '/dev/vgc/coffre-1-1-0-0', join(dir, 'thin-base', 'coffre-1-1-0-0')], out: ok() },
  ]);
  const lvm = new LvmSnapshotter(runner, { mountBase: join(dir, 'thin-base') });
  const v = await lvm.probe('/srv/www', mount('/srv', { fsType: 'xfs' }));
  assert.ok(!('unavailable' in v));
  assert.equal(v.method === 'lvm' && v.pool, 'pool0');
  await lvm.create([{ name: 'coffre-1-1-0-0', volume: v }]);
  assert.equal(lvm.copyOf({ name: 'coffre-1-1-0-0', volume: v }, '/srv/www'), join(dir, 'thin-base', 'coffre-1-1-0-0', 'www'));
  runner.assertDone();
});

test('LVM: a file system not on a logical volume is read live under auto, and refused under --snapshot lvm', async () => {
  const live = await tree(join(dir, 'plain'), { 'file.txt': 'plain\n' });
  const mounts = [rootMount, mount(live, { device: '8:1', source: '/dev/sda1' })];
  const auto = new RecordedRunner([{ argv: PROBE, out: ok(await recorded('lvs-probe.json')) }]);
  const r = await backupFiles(options('plain', [live], auto, mounts));
  auto.assertDone();
  assert.equal(r.point.consistency, 'crash');
  const notes = (await a.client.getJob(r.jobId)).details.notes as string[];
  assert.match(notes.join('\n'), /read live, without a snapshot.*plain \(ext4 on \/dev\/sda1: \/dev\/sda1 is not an LVM logical volume\)/);
  const explicit = new RecordedRunner([{ argv: PROBE, out: ok(await recorded('lvs-probe.json')) }]);
  await assert.rejects(backupFiles(options('plain', [live], explicit, mounts, { snapshot: 'lvm' })),
    (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotUnavailable' && /cannot take a lvm snapshot of/.test(e.message));
});

test('ZFS: two datasets of one pool are snapshotted by one command, read under .zfs/snapshot, destroyed after', async () => {
  const liveA = await tree(join(dir, 'zfs-a'), { 'file.txt': 'a, live\n' });
  const liveB = await tree(join(dir, 'zfs-b'), { 'file.txt': 'b, live\n' });
  const mounts = [rootMount, mount(liveA, { device: '0:51', fsType: 'zfs', source: 'tank/a' }), mount(liveB, { device: '0:52', fsType: 'zfs', source: 'tank/b' })];
  const snapshotDirs = async () => {
    for (const [live, tag] of [[liveA, 'a'], [liveB, 'b']] as const) {
      const names = [...runner.names.values()];
      await tree(join(live, '.zfs', 'snapshot', names[tag === 'a' ? 0 : 1]!), { 'file.txt': `${tag}, at the snapshot\n` });
    }
  };
  const list = (ds: string) => ['zfs', 'list', '-H', '-p', '-t', 'snapshot', '-o', 'name', '-d', '1', ds];
  const runner: RecordedRunner = new RecordedRunner([
    { argv: ['zfs', 'list', '-H', '-p', '-o', 'name,type', 'tank/a'], out: ok('tank/a\tfilesystem\n') },
    { argv: ['zfs', 'list', '-H', '-p', '-o', 'name,type', 'tank/b'], out: ok('tank/b\tfilesystem\n') },
    { argv: list('tank/a'), out: ok('tank/a@daily-2026-05-01\n') },
    { argv: list('tank/b'), out: ok('') },
    { argv: ['zfs', 'snapshot', 'tank/a@@SNAP0@', 'tank/b@@SNAP1@'], out: ok(), effect: snapshotDirs },
    { argv: list('tank/a'), out: ok('tank/a@daily-2026-05-01\ntank/a@@SNAP0@\n') },
    { argv: list('tank/b'), out: ok('tank/b@@SNAP1@\n') },
    { argv: list('tank/a'), out: ok('tank/a@daily-2026-05-01\ntank/a@@SNAP0@\n') },
    { argv: ['zfs', 'destroy', 'tank/a@@SNAP0@'], out: ok() },
    { argv: list('tank/b'), out: ok('tank/b@@SNAP1@\n') },
    { argv: ['zfs', 'destroy', 'tank/b@@SNAP1@'], out: ok() },
  ]);
  const r = await backupFiles(options('zfs', [liveA, liveB], runner, mounts));
  runner.assertDone();
  assert.equal(r.point.consistency, 'filesystem');
  assert.equal(await restored(r.point.id, 'zfs-a'), 'a, at the snapshot\n');
  assert.equal(await readFile(join(dir, `restore-${r.point.id}`, 'zfs-b', 'file.txt'), 'utf8'), 'b, at the snapshot\n');

  // Removing a snapshot that is already gone does nothing: no destroy.
  const again = new RecordedRunner([{ argv: list('tank/a'), out: ok('tank/a@daily-2026-05-01\n') }]);
  const v = await new ZfsSnapshotter(new RecordedRunner([{ argv: ['zfs', 'list', '-H', '-p', '-o', 'name,type', 'tank/a'], out: ok('tank/a\tfilesystem\n') }])).probe(liveA, mounts[1]!);
  assert.ok(!('unavailable' in v));
  await new ZfsSnapshotter(again).remove({ name: 'coffre-1-1-0-0', volume: v });
  again.assertDone();
});

test('ZFS: a dataset zfs cannot find is refused under --snapshot zfs', async () => {
  const live = await tree(join(dir, 'zfs-gone'), { 'file.txt': 'x\n' });
  const runner = new RecordedRunner([
    { argv: ['zfs', 'list', '-H', '-p', '-o', 'name,type', 'tank/gone'], out: failed(1, "cannot open 'tank/gone': dataset does not exist\n") },
  ]);
  await assert.rejects(backupFiles(options('zfs-gone', [live], runner, [rootMount, mount(live, { fsType: 'zfs', source: 'tank/gone' })], { snapshot: 'zfs' })),
    (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotUnavailable' && /dataset does not exist/.test(e.message));
  runner.assertDone();
});
