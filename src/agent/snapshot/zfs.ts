/**
 * ZFS: `zfs snapshot` of the dataset a path is mounted from, read through the dataset's
 * `.zfs/snapshot/<name>` folder (which the kernel mounts on first access, read-only), then
 * `zfs destroy`. Snapshots of several datasets of one pool are made by one command, which ZFS
 * makes atomic. Tested against recorded outputs of the real tool: this kernel has no ZFS.
 */
import { join, relative } from 'node:path';
import type { JobProblem } from '../../core/api.js';
import { CoffreError } from '../../core/errors.js';
import { describeFailure, type CommandRunner } from './runner.js';
import { SNAPSHOT_PREFIX, type SnapshotRef, type Snapshotter, type Volume, type ZfsVolume } from './snapshotter.js';
import type { Mount } from './volumes.js';

const snapshotOf = (ref: SnapshotRef) => `${(ref.volume as ZfsVolume).dataset}@${ref.name}`;
const poolOf = (dataset: string) => dataset.split('/')[0]!;

export class ZfsSnapshotter implements Snapshotter {
  readonly method = 'zfs' as const;

  constructor(private readonly runner: CommandRunner) {}

  async probe(path: string, mount: Mount): Promise<ZfsVolume | { unavailable: string }> {
    if (mount.fsType !== 'zfs') return { unavailable: `${path} is on ${mount.fsType} (${mount.source}), not ZFS` };
    const args = ['list', '-H', '-p', '-o', 'name,type', mount.source];
    const r = await this.runner.run('zfs', args);
    if (r.code === null) return { unavailable: 'the `zfs` command is not installed (Debian: apt-get install zfsutils-linux)' };
    if (r.code !== 0) return { unavailable: `cannot find the ZFS dataset of ${path}: ${describeFailure('zfs', args, r)}` };
    const [name, type] = r.stdout.split('\n')[0]!.split('\t');
    if (name !== mount.source || type !== 'filesystem') return { unavailable: `${mount.source} is a ZFS ${type ?? 'dataset'}, not a file system` };
    return { method: 'zfs', key: `zfs:${name}`, live: mount.mountPoint, dataset: name, mountPoint: mount.mountPoint, fsRoot: mount.root };
  }

  async create(refs: SnapshotRef[]): Promise<void> {
    const pools = new Map<string, SnapshotRef[]>();
    for (const ref of refs) {
      const pool = poolOf((ref.volume as ZfsVolume).dataset);
      pools.set(pool, [...(pools.get(pool) ?? []), ref]);
    }
    for (const group of pools.values()) {
      const args = ['snapshot', ...group.map(snapshotOf)];
      const r = await this.runner.run('zfs', args);
      if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot snapshot ${group.map((g) => g.volume.live).join(', ')}: ${describeFailure('zfs', args, r)}`);
    }
    for (const ref of refs) {
      if (!(await this.exists(ref))) throw new CoffreError('SnapshotFailed', `zfs reported the snapshot ${snapshotOf(ref)} made, but it is not listed`);
    }
  }

  /** The dataset's snapshots; a dataset that cannot be listed is an error, not an empty list. */
  private async snapshots(v: ZfsVolume): Promise<string[]> {
    const args = ['list', '-H', '-p', '-t', 'snapshot', '-o', 'name', '-d', '1', v.dataset];
    const r = await this.runner.run('zfs', args);
    if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot list the snapshots of ${v.dataset}: ${describeFailure('zfs', args, r)}`);
    return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  }

  private async exists(ref: SnapshotRef): Promise<boolean> {
    return (await this.snapshots(ref.volume as ZfsVolume)).includes(snapshotOf(ref));
  }

  copyOf(ref: SnapshotRef, path: string): string {
    const v = ref.volume as ZfsVolume;
    return join(v.mountPoint, '.zfs', 'snapshot', ref.name, v.fsRoot, relative(v.live, path));
  }

  async check(): Promise<JobProblem[]> {
    // A ZFS snapshot holds its blocks: writes meanwhile cannot spoil it (a full pool fails them instead).
    return [];
  }

  async remove(ref: SnapshotRef): Promise<boolean> {
    if (!(await this.exists(ref))) return false;
    const args = ['destroy', snapshotOf(ref)];
    const r = await this.runner.run('zfs', args);
    if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot remove the snapshot ${snapshotOf(ref)}: ${describeFailure('zfs', args, r)}`);
    return true;
  }

  async list(volume: Volume): Promise<SnapshotRef[]> {
    const v = volume as ZfsVolume;
    const prefix = `${v.dataset}@${SNAPSHOT_PREFIX}`;
    return (await this.snapshots(v)).filter((s) => s.startsWith(prefix)).map((s) => ({ name: s.slice(v.dataset.length + 1), volume: v }));
  }
}
