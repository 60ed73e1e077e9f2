/**
 * LVM: `lvcreate --snapshot` of the logical volume under a mounted file system, mounted
 * read-only under a folder of the agent's, read, checked, unmounted and removed.
 *
 * A classic snapshot has its own copy-on-write space (`--snapshot-size`, default 20% of the
 * origin): when writes to the origin during the read fill it, the kernel marks it invalid and
 * reads from it fail or return garbage. `check` therefore asks `lvs` after the read, and a
 * filled snapshot fails the backup (SnapshotInvalid) rather than committing a point read from
 * it. A thin snapshot shares its pool; a pool that filled fails the backup the same way.
 * Every step goes through the CommandRunner: this project's machines have no device-mapper,
 * so these sequences are tested against recorded outputs of the real tools.
 */
import { mkdir, rmdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { JobProblem } from '../../core/api.js';
import { CoffreError } from '../../core/errors.js';
import { describeFailure, type CommandRunner } from './runner.js';
import { SNAPSHOT_PREFIX, type LvmVolume, type SnapshotRef, type Snapshotter, type Volume } from './snapshotter.js';
import type { Mount } from './volumes.js';

/** Size of a classic snapshot's copy-on-write space unless the item says otherwise. */
export const DEFAULT_LVM_SNAPSHOT_SIZE = '20%ORIGIN';
/** Above this use of its space, a snapshot that held is still reported: the next one may not. */
const NEARLY_FULL_PERCENT = 80;

/** File systems that mount read-only from a copy of their device. */
const MOUNT_OPTIONS: Record<string, string> = { xfs: 'ro,nouuid', ext4: 'ro', ext3: 'ro', ext2: 'ro' };

/** One row of `lvs --reportformat json`: every field is a string. */
type LvRow = Record<string, string>;

export function parseLvsJson(stdout: string): LvRow[] {
  const doc = JSON.parse(stdout) as { report?: { lv?: LvRow[] }[] };
  return (doc.report ?? []).flatMap((r) => r.lv ?? []);
}

/** lvcreate's size argument: `--extents N%ORIGIN|FREE|VG` or `--size N[KMGT]`. */
export function lvmSizeArgs(size: string): string[] {
  if (/^\d{1,3}%(ORIGIN|FREE|VG)$/i.test(size)) return ['--extents', size.toUpperCase()];
  if (/^\d+(\.\d+)?[kmgt]?$/i.test(size)) return ['--size', size];
  throw new CoffreError('InvalidArgument', `--snapshot-size ${size} is neither a size (e.g. 2G) nor a share (e.g. 20%ORIGIN)`);
}

export function validLvmSize(size: string): string {
  lvmSizeArgs(size);
  return size;
}

const REPORT = ['--reportformat', 'json', '--units', 'b', '--nosuffix'];

export class LvmSnapshotter implements Snapshotter {
  readonly method = 'lvm' as const;

  constructor(private readonly runner: CommandRunner, private readonly opts: { mountBase: string; size?: string }) {}

  private async lvs(fields: string, ...names: string[]): Promise<{ rows: LvRow[] } | { failed: string }> {
    const args = [...REPORT, '-o', fields, ...names];
    const r = await this.runner.run('lvs', args);
    if (r.code === null) return { failed: 'the LVM tools are not installed (Debian: apt-get install lvm2)' };
    if (r.code !== 0) return { failed: describeFailure('lvs', args, r) };
    try {
      return { rows: parseLvsJson(r.stdout) };
    } catch (e) {
      return { failed: `lvs printed what is not its JSON report (${(e as Error).message})` };
    }
  }

  async probe(path: string, mount: Mount): Promise<LvmVolume | { unavailable: string }> {
    if (!mount.source.startsWith('/dev/')) return { unavailable: `${path} is on ${mount.fsType} (${mount.source}), not on a block device` };
    if (!(mount.fsType in MOUNT_OPTIONS)) return { unavailable: `${path} is on ${mount.fsType}, which Coffre does not mount from an LVM snapshot (ext2/3/4 and xfs only)` };
    const found = await this.lvs('vg_name,lv_name,lv_attr,pool_lv,lv_kernel_major,lv_kernel_minor');
    if ('failed' in found) return { unavailable: found.failed };
    const lv = found.rows.find((r) => `${r.lv_kernel_major}:${r.lv_kernel_minor}` === mount.device);
    if (!lv) return { unavailable: `${mount.source} is not an LVM logical volume` };
    if (/^[sS]/.test(lv.lv_attr ?? '')) return { unavailable: `${path} is on ${lv.vg_name}/${lv.lv_name}, itself an LVM snapshot` };
    return {
      method: 'lvm', key: `lvm:${lv.vg_name}/${lv.lv_name}`, live: mount.mountPoint, vg: lv.vg_name!, lv: lv.lv_name!, pool: lv.pool_lv ?? '',
      fsType: mount.fsType, fsRoot: mount.root, mountBase: this.opts.mountBase, size: this.opts.size ?? DEFAULT_LVM_SNAPSHOT_SIZE,
    };
  }

  private mountPointOf(ref: SnapshotRef): string {
    return join((ref.volume as LvmVolume).mountBase, ref.name);
  }

  async create(refs: SnapshotRef[]): Promise<void> {
    for (const ref of refs) {
      const v = ref.volume as LvmVolume;
      // A thin snapshot is skipped at activation unless told otherwise; a classic one needs its own space.
      const args = ['--snapshot', '--name', ref.name, ...(v.pool ? ['--setactivationskip', 'n'] : lvmSizeArgs(v.size)), `${v.vg}/${v.lv}`];
      const made = await this.runner.run('lvcreate', args);
      if (made.code !== 0) throw new CoffreError('SnapshotFailed', `cannot snapshot ${v.vg}/${v.lv} (${v.live}): ${describeFailure('lvcreate', args, made)}`);
      const at = this.mountPointOf(ref);
      await mkdir(at, { recursive: true, mode: 0o700 });
      const mountArgs = ['-t', v.fsType, '-o', MOUNT_OPTIONS[v.fsType]!, `/dev/${v.vg}/${ref.name}`, at];
      const mounted = await this.runner.run('mount', mountArgs);
      if (mounted.code !== 0) throw new CoffreError('SnapshotFailed', `cannot mount the snapshot of ${v.vg}/${v.lv}: ${describeFailure('mount', mountArgs, mounted)}`);
    }
  }

  copyOf(ref: SnapshotRef, path: string): string {
    const v = ref.volume as LvmVolume;
    return join(this.mountPointOf(ref), v.fsRoot, relative(v.live, path));
  }

  async check(ref: SnapshotRef): Promise<JobProblem[]> {
    const v = ref.volume as LvmVolume;
    const names = [`${v.vg}/${ref.name}`, ...(v.pool ? [`${v.vg}/${v.pool}`] : [])];
    const found = await this.lvs('lv_name,lv_attr,snap_percent,data_percent,metadata_percent', ...names);
    const invalid = (why: string) => new CoffreError('SnapshotInvalid', `the LVM snapshot ${v.vg}/${ref.name} of ${v.live} ${why}: what was read from it cannot be trusted, so no point was made`);
    if ('failed' in found) throw invalid(`could not be checked after the read (${found.failed})`);
    const snap = found.rows.find((r) => r.lv_name === ref.name);
    if (!snap) throw invalid('was gone after the read');
    const percent = (s: string | undefined) => (s ? Number.parseFloat(s) : 0);
    if (v.pool) {
      const pool = found.rows.find((r) => r.lv_name === v.pool);
      const full = !pool || percent(pool.data_percent) >= 100 || percent(pool.metadata_percent) >= 100 || /^[DMF]$/.test((pool.lv_attr ?? '')[8] ?? '');
      if (full) throw invalid(`lost writes: its thin pool ${v.vg}/${v.pool} filled up during the read; extend the pool`);
      return [];
    }
    // State 'I' (or 'S', suspended) is what the kernel reports of a snapshot that overflowed (lvs(8)).
    const state = (snap.lv_attr ?? '')[4];
    const used = percent(snap.snap_percent);
    if (state === 'I' || state === 'S' || used >= 100) {
      throw invalid(`filled up during the read (${v.size} of copy-on-write space was not enough for the writes meanwhile); give it more with --snapshot-size`);
    }
    if (used >= NEARLY_FULL_PERCENT) {
      return [{ code: 'SnapshotNearlyFull', message: `the LVM snapshot of ${v.vg}/${v.lv} used ${used}% of its ${v.size} copy-on-write space; a busier day would fail the backup: raise --snapshot-size` }];
    }
    return [];
  }

  async remove(ref: SnapshotRef): Promise<boolean> {
    const v = ref.volume as LvmVolume;
    const at = this.mountPointOf(ref);
    const isMounted = await this.runner.run('mountpoint', ['-q', at]);
    if (isMounted.code === 0) {
      const r = await this.runner.run('umount', [at]);
      if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot unmount the snapshot at ${at}: ${describeFailure('umount', [at], r)}`);
    }
    await rmdir(at).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    const found = await this.lvs('lv_name', v.vg);
    if ('failed' in found) throw new CoffreError('SnapshotFailed', `cannot tell whether the snapshot ${v.vg}/${ref.name} is still there: ${found.failed}`);
    if (!found.rows.some((r) => r.lv_name === ref.name)) return isMounted.code === 0;
    const args = ['--yes', `${v.vg}/${ref.name}`];
    const r = await this.runner.run('lvremove', args);
    if (r.code !== 0) throw new CoffreError('SnapshotFailed', `cannot remove the snapshot ${v.vg}/${ref.name}: ${describeFailure('lvremove', args, r)}`);
    return true;
  }

  async list(volume: Volume): Promise<SnapshotRef[]> {
    const v = volume as LvmVolume;
    const found = await this.lvs('lv_name,origin', v.vg);
    if ('failed' in found) throw new CoffreError('SnapshotFailed', `cannot list the logical volumes of ${v.vg}: ${found.failed}`);
    return found.rows.filter((r) => r.lv_name?.startsWith(SNAPSHOT_PREFIX) && r.origin === v.lv).map((r) => ({ name: r.lv_name!, volume: v }));
  }
}
