import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import { planRead, type PlanInput } from './plan.js';
import type { SnapshotMethod, SnapshotRef, Snapshotter, Volume } from './snapshotter.js';
import type { Mount } from './volumes.js';

/** A snapshotter of one method for file systems of that type; its copies lie under /snap/<name>. */
function fake(method: SnapshotMethod, nested: Record<string, string[]> = {}): Snapshotter {
  return {
    method,
    async probe(path, mount) {
      if (mount.fsType !== method) return { unavailable: `${path} is not ${method}` };
      const live = nested[path] !== undefined || Object.values(nested).some((subs) => subs.includes(path)) ? path : mount.mountPoint;
      return { method: 'btrfs', key: `${method}:${live}`, live, snapshotDir: join(mount.mountPoint, '.coffre-snapshots'), mountPoint: mount.mountPoint, mountRoot: '/' } as Volume;
    },
    async nested(volume, path) { return (nested[volume.live] ?? []).filter((s) => s.startsWith(path + '/')); },
    async create() {},
    copyOf(ref: SnapshotRef, path: string) { return join('/snap', ref.name, relative(ref.volume.live, path)); },
    async check() { return []; },
    async remove() { return false; },
    async list() { return []; },
  };
}

function mount(mountPoint: string, fsType: string, source = '/dev/x'): Mount {
  return { id: 1, parentId: 1, device: '0:1', root: '/', mountPoint, mountOptions: ['rw'], fsType, source, superOptions: ['rw'] };
}

async function setup() {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-plan-'));
  const root = join(dir, 'data');
  for (const d of ['fast', 'sub', 'cache/proc', 'nested/deep']) await mkdir(join(root, d), { recursive: true });
  return { dir, root };
}

const input = (paths: string[], mounts: Mount[], snapshotters: Partial<Record<SnapshotMethod, Snapshotter>>, extra: Partial<PlanInput> = {}): PlanInput => ({
  paths, mode: 'auto', excludes: [], mounts, ownMounts: ['/run/coffre/snapshots'], nameFor: (n) => `s${n}`,
  snapshotters: { btrfs: fake('btrfs'), lvm: fake('lvm'), zfs: fake('zfs'), ...snapshotters }, ...extra,
});

test('a live root with a btrfs mount below: the mount is grafted from its snapshot, the root read live; excluded mounts are not planned', async () => {
  const { dir, root } = await setup();
  try {
    const mounts = [mount('/', 'ext4', '/dev/vda'), mount(join(root, 'fast'), 'btrfs'), mount(join(root, 'cache', 'proc'), 'proc', 'proc'), mount('/run/coffre/snapshots/s9', 'ext4')];
    const plan = await planRead(input([root], mounts, {}, { excludes: ['cache'] }));
    assert.deepEqual(plan.roots, [{ read: root, record: root, grafts: new Map<string, string | null>([['data/fast', '/snap/s0'], ['data/fast/.coffre-snapshots', null]]) }]);
    assert.deepEqual(plan.snapshots.map((s) => s.volume.live), [join(root, 'fast')]);
    assert.deepEqual(plan.live.map((l) => l.path), [root], 'the excluded proc mount does not lower the label');
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('a btrfs root: nested subvolumes get their own snapshots, the snapshots folder is left out, two paths share a volume', async () => {
  const { dir, root } = await setup();
  try {
    const btrfs = fake('btrfs', { [root]: [join(root, 'sub'), join(root, 'nested')], [join(root, 'nested')]: [join(root, 'nested', 'deep')] });
    const mounts = [mount('/', 'ext4', '/dev/vda'), mount(root, 'btrfs')];
    const plan = await planRead(input([root, join(root, 'fast')], mounts, { btrfs }));
    assert.deepEqual(plan.snapshots.map((s) => [s.name, s.volume.live]), [['s0', root], ['s1', join(root, 'sub')], ['s2', join(root, 'nested')], ['s3', join(root, 'nested', 'deep')]]);
    assert.deepEqual(plan.roots[0], {
      read: '/snap/s0', record: root,
      grafts: new Map<string, string | null>([['data/sub', '/snap/s1'], ['data/nested/deep', '/snap/s3'], ['data/nested', '/snap/s2'], ['data/.coffre-snapshots', null]]),
    });
    assert.equal(plan.roots[1]!.read, '/snap/s0/fast', 'the second path reads from the same snapshot');
    assert.deepEqual(plan.live, []);
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('an explicit kind that cannot snapshot a path fails before anything is made', async () => {
  const { dir, root } = await setup();
  try {
    await assert.rejects(planRead(input([root], [mount('/', 'ext4', '/dev/vda')], {}, { mode: 'btrfs' })),
      (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotUnavailable' && e.message.includes(`${root} is not btrfs`));
    // A missing path is left to the walk, which names it as the user gave it.
    const plan = await planRead(input([join(dir, 'nope')], [mount('/', 'btrfs')], {}));
    assert.deepEqual(plan.roots, [{ read: join(dir, 'nope'), record: join(dir, 'nope') }]);
  } finally {
    await rm(dir, { recursive: true });
  }
});
