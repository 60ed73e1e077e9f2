/**
 * btrfs: `btrfs subvolume snapshot -r` of the subvolume that holds a path. The snapshot is made
 * in `.coffre-snapshots` at the file system's mount point (a folder of mode 0700, kept between
 * runs so that two runs never race to create and remove it) and read there directly: a btrfs
 * snapshot keeps inode numbers, times and ctimes, so the agent's metadata cache still knows
 * every unchanged file. A snapshot shows nested subvolumes as empty folders, so `nested` lists
 * them and each gets a snapshot of its own.
 */
import { lstat, mkdir, readdir } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { JobProblem } from '../../core/api.js';
import { CoffreError } from '../../core/errors.js';
import { describeFailure, type CommandRunner } from './runner.js';
import { SNAPSHOT_PREFIX, type BtrfsVolume, type SnapshotRef, type Snapshotter, type Volume } from './snapshotter.js';
import { isWithin, type Mount } from './volumes.js';

export const SNAPSHOT_DIR = '.coffre-snapshots';
/** A btrfs subvolume's root folder has this inode number (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INO = 256n;

const LIST_LINE = /^ID (\d+) gen \d+ top level (\d+) path (.*)$/;

export class BtrfsSnapshotter implements Snapshotter {
  readonly method = 'btrfs' as const;
  private tool: Promise<string | null> | null = null;

  constructor(private readonly runner: CommandRunner) {}

  /** Why the btrfs tool cannot be used, or null when it can. */
  private toolMissing(): Promise<string | null> {
    this.tool ??= this.runner.run('btrfs', ['--version']).then((r) => r.code === 0 ? null
      : 'the `btrfs` command is not installed (Debian: apt-get install btrfs-progs)');
    return this.tool;
  }

  async probe(path: string, mount: Mount): Promise<BtrfsVolume | { unavailable: string }> {
    if (mount.fsType !== 'btrfs') return { unavailable: `${path} is on ${mount.fsType} (${mount.source}), not btrfs` };
    if (mount.mountOptions.includes('ro') || mount.superOptions.includes('ro')) return { unavailable: `${path} is on a btrfs file system mounted read-only (${mount.mountPoint}): no snapshot can be made there` };
    if (process.getuid?.() !== 0) return { unavailable: 'btrfs snapshots need root: run the agent as root' };
    const missing = await this.toolMissing();
    if (missing) return { unavailable: missing };
    // The subvolume holding the path is its highest folder on the same device (each subvolume has its own).
    let folder = path;
    let s = await lstat(folder, { bigint: true });
    if (!s.isDirectory()) {
      folder = dirname(folder);
      s = await lstat(folder, { bigint: true });
    }
    const dev = s.dev;
    while (folder !== mount.mountPoint && folder !== '/') {
      const up = await lstat(dirname(folder), { bigint: true });
      if (up.dev !== dev) break;
      folder = dirname(folder);
      s = up;
    }
    if (s.ino !== SUBVOLUME_ROOT_INO) return { unavailable: `cannot find the btrfs subvolume holding ${path} (${folder} is not a subvolume root)` };
    return { method: 'btrfs', key: `btrfs:${dev}:${folder}`, live: folder, snapshotDir: join(mount.mountPoint, SNAPSHOT_DIR), mountPoint: mount.mountPoint, mountRoot: mount.root };
  }

  /**
   * `btrfs subvolume list -o` names a subvolume's direct children by their path from the file
   * system's top level; the subvolume's own such path is its mount's root plus its place
   * under the mount point.
   */
  async nested(volume: Volume, path: string): Promise<string[]> {
    const v = volume as BtrfsVolume;
    const out: string[] = [];
    const r = await this.runner.run('btrfs', ['subvolume', 'list', '-o', v.live]);
    if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot list the btrfs subvolumes inside ${v.live}: ${describeFailure('btrfs', ['subvolume', 'list', '-o', v.live], r)}`);
    const own = join(v.mountRoot, relative(v.mountPoint, v.live)).replace(/^\/+/, '');
    for (const line of r.stdout.split('\n')) {
      const m = LIST_LINE.exec(line.trim());
      if (!m) continue;
      const top = m[3]!;
      if (own !== '' && !top.startsWith(own + '/')) continue;
      const live = join(v.live, own === '' ? top : top.slice(own.length + 1));
      if (isWithin(live, v.snapshotDir)) continue;
      if (live !== path && isWithin(live, path)) out.push(live);
    }
    return out;
  }

  private pathOf(ref: SnapshotRef): string {
    return join((ref.volume as BtrfsVolume).snapshotDir, ref.name);
  }

  async create(refs: SnapshotRef[]): Promise<void> {
    for (const ref of refs) {
      const v = ref.volume as BtrfsVolume;
      await mkdir(v.snapshotDir, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw new CoffreError('SnapshotFailed', `cannot create ${v.snapshotDir} for the snapshot of ${v.live}: ${e.message}`);
      });
      const args = ['subvolume', 'snapshot', '-r', v.live, this.pathOf(ref)];
      const r = await this.runner.run('btrfs', args);
      if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot snapshot ${v.live}: ${describeFailure('btrfs', args, r)}`);
    }
  }

  copyOf(ref: SnapshotRef, path: string): string {
    return join(this.pathOf(ref), relative(ref.volume.live, path));
  }

  async check(): Promise<JobProblem[]> {
    // A btrfs snapshot shares the file system's space and cannot overflow on its own.
    return [];
  }

  async remove(ref: SnapshotRef): Promise<boolean> {
    const path = this.pathOf(ref);
    let s;
    try {
      s = await lstat(path, { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    if (s.ino !== SUBVOLUME_ROOT_INO) throw new CoffreError('SnapshotFailed', `${path} is not a btrfs snapshot: it was left as it is`);
    const args = ['subvolume', 'delete', path];
    const r = await this.runner.run('btrfs', args);
    if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot remove the snapshot ${path}: ${describeFailure('btrfs', args, r)}`);
    return true;
  }

  async list(volume: Volume): Promise<SnapshotRef[]> {
    const v = volume as BtrfsVolume;
    let names: string[];
    try {
      names = await readdir(v.snapshotDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names.filter((n) => n.startsWith(SNAPSHOT_PREFIX)).map((name) => ({ name, volume: v }));
  }
}
