/**
 * Local snapshots of a VM's disks, kept for the instant-restore window. A backup stages its
 * work in `<root>/<item>/<point>.partial/` and on commit renames the folder to
 * `<root>/<item>/<point>/` with a `snapshot.json` naming, per disk, where the point's copy is:
 *
 * - `internal`: an internal snapshot inside the disk's own qcow2 image, taken by QEMU (or by
 *   qemu-img for an image no QEMU holds). Nothing is copied: the hypervisor's own snapshot.
 * - `reflink`: a reflink clone of the image file in the folder (no data copied).
 * - `copy`: a sparse copy of the image file in the folder: a full data copy, the last resort
 *   when the file system cannot clone (the backup's job says so).
 *
 * `sweepSnapshots` removes snapshots past their expiry (and staging folders a killed backup
 * left); every `coffre vm` command runs it first.
 */
import { constants as C } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../core/clock.js';
import { CoffreError } from '../../core/errors.js';
import { writeFileAtomic } from '../state.js';
import { listVmConfigs, vmRoot } from './config.js';
import type { DiskFormat } from './disk-manifest.js';
import { runCommand } from '../scripts.js';

export type CloneMethod = 'reflink' | 'copy';
export type SnapshotMethod = CloneMethod | 'internal';

/** An internal snapshot of a qcow2 image, and how to reach the QEMU holding the image (to delete it). */
export interface InternalSnapshot { image: string; name: string; qmp?: string; node?: string }

export interface SnapshotDisk {
  index: number;
  /** The copy's file in the snapshot folder ('' for an internal snapshot). */
  file: string;
  format: DiskFormat;
  /** Set when the copy is an internal snapshot of the disk's own image rather than a file here. */
  internal?: InternalSnapshot;
  /** Bytes of disk data in the file (a VHD's footer follows them). */
  dataSize: number;
  /** Size and modification time when the point was committed: a copy that changed since is not used. */
  fileSize: number;
  mtimeMs: number;
}

export interface SnapshotMeta {
  version: 1;
  item: string;
  pointId: string;
  vaultId: string;
  createdAt: string;
  expiresAt: string;
  method: SnapshotMethod;
  disks: SnapshotDisk[];
}

export interface HeldSnapshot extends SnapshotMeta { dir: string; bytesOnDisk: number }

const META = 'snapshot.json';
/** A staging folder older than this belongs to a backup that died; no backup runs this long on one point. */
const STALE_STAGING_MS = 2 * 86_400_000;

export const defaultSnapshotRoot = (agentDir: string) => join(vmRoot(agentDir), 'snapshots');
export const itemSnapshotDir = (root: string, item: string) => join(root, item);
export const stagingDir = (root: string, item: string, pointId: string) => join(root, item, `${pointId}.partial`);
export const snapshotDir = (root: string, item: string, pointId: string) => join(root, item, pointId);

/**
 * Clones `src` to `dst` (which must not exist): a reflink where the file system shares
 * blocks (instant, no space used until the VM writes), else `cp --sparse=always`, which
 * skips the source's holes and leaves zero runs as holes.
 */
export async function cloneDisk(src: string, dst: string, isDevice: boolean): Promise<CloneMethod> {
  if (!isDevice) {
    try {
      await copyFile(src, dst, C.COPYFILE_EXCL | C.COPYFILE_FICLONE_FORCE);
      await chmod(dst, 0o600);
      return 'reflink';
    } catch (e) {
      // EOPNOTSUPP / EXDEV / EINVAL / ENOSYS: no reflink between these places; copy instead.
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EEXIST') throw new CoffreError('InvalidArgument', `cannot snapshot ${src}: ${(e as Error).message}`);
      await rm(dst, { force: true });
    }
  }
  const r = await runCommand('cp', ['--sparse=always', '--reflink=never', '--', src, dst], { timeoutMs: 24 * 3_600_000 });
  if (!r.ok) {
    await rm(dst, { force: true });
    throw new CoffreError('Internal', `cannot snapshot ${src} into ${dst}: ${r.output || `cp exited with ${r.exitCode}`} (is there room for a copy of the disk?)`);
  }
  await chmod(dst, 0o600);
  return 'copy';
}

export async function prepareStaging(root: string, item: string, pointId: string): Promise<string> {
  const dir = stagingDir(root, item, pointId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Turns a staging folder into the instant-restore copy of a committed point. */
export async function keepSnapshot(root: string, meta: SnapshotMeta): Promise<string> {
  const staging = stagingDir(root, meta.item, meta.pointId);
  const final = snapshotDir(root, meta.item, meta.pointId);
  const disks: SnapshotDisk[] = [];
  for (const d of meta.disks) {
    if (d.internal) {
      disks.push({ ...d, fileSize: 0, mtimeMs: 0 });
      continue;
    }
    const s = await stat(join(staging, d.file));
    disks.push({ ...d, fileSize: s.size, mtimeMs: s.mtimeMs });
  }
  await writeFileAtomic(join(staging, META), JSON.stringify({ ...meta, disks }, null, 2) + '\n');
  await rename(staging, final);
  return final;
}

async function readMeta(dir: string): Promise<SnapshotMeta | null> {
  try {
    const m = JSON.parse(await readFile(join(dir, META), 'utf8')) as SnapshotMeta;
    return m.version === 1 && typeof m.expiresAt === 'string' && Array.isArray(m.disks) ? m : null;
  } catch {
    // No or unreadable metadata: not a kept snapshot (the sweep removes such folders when stale).
    return null;
  }
}

async function sizeOnDisk(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).blocks * 512;
  return n;
}

/**
 * Deletes the internal snapshots of a kept snapshot; false when one could not be deleted.
 * Loaded on demand: only VMs with qcow2 disks pay for the QEMU modules.
 */
async function dropInternal(meta: SnapshotMeta): Promise<boolean> {
  const internal = meta.disks.flatMap((d) => (d.internal ? [d.internal] : []));
  if (internal.length === 0) return true;
  const { deleteInternalSnapshots } = await import('./internal-snapshots.js');
  return deleteInternalSnapshots(internal);
}

/** Every snapshot root in use: the agent folder's, and any a VM's settings name. */
async function roots(agentDir: string): Promise<string[]> {
  const all = new Set([defaultSnapshotRoot(agentDir)]);
  for (const c of await listVmConfigs(agentDir)) if (c.snapshotDir) all.add(c.snapshotDir);
  return [...all];
}

async function entries(root: string, item?: string): Promise<{ item: string; name: string; dir: string }[]> {
  const out: { item: string; name: string; dir: string }[] = [];
  let items: string[];
  try {
    items = item ? [item] : await readdir(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  for (const it of items) {
    let names: string[];
    try {
      names = await readdir(join(root, it));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
      throw e;
    }
    for (const name of names) out.push({ item: it, name, dir: join(root, it, name) });
  }
  return out;
}

/** Snapshots held on this machine, oldest first, optionally of one VM. */
export async function listSnapshots(agentDir: string, item?: string): Promise<HeldSnapshot[]> {
  const out: HeldSnapshot[] = [];
  for (const root of await roots(agentDir)) {
    for (const e of await entries(root, item)) {
      if (e.name.endsWith('.partial')) continue;
      const meta = await readMeta(e.dir);
      if (meta) out.push({ ...meta, dir: e.dir, bytesOnDisk: await sizeOnDisk(e.dir) });
    }
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** The kept snapshot of a point, if this machine still holds one. */
export async function findSnapshot(agentDir: string, item: string, pointId: string): Promise<HeldSnapshot | null> {
  return (await listSnapshots(agentDir, item)).find((s) => s.pointId === pointId) ?? null;
}

/**
 * Removes snapshots whose instant-restore window has passed (at `clock.now()`), and staging
 * folders a killed backup left behind. Returns what it removed.
 */
export async function sweepSnapshots(agentDir: string, clock: Clock): Promise<{ item: string; pointId: string; expiresAt: string | null }[]> {
  const now = clock.now();
  const removed: { item: string; pointId: string; expiresAt: string | null }[] = [];
  for (const root of await roots(agentDir)) {
    for (const e of await entries(root)) {
      if (e.name.endsWith('.partial')) {
        const s = await stat(e.dir);
        if (now.getTime() - s.mtimeMs > STALE_STAGING_MS) {
          await rm(e.dir, { recursive: true, force: true });
          removed.push({ item: e.item, pointId: e.name.slice(0, -'.partial'.length), expiresAt: null });
        }
        continue;
      }
      const meta = await readMeta(e.dir);
      if (meta && new Date(meta.expiresAt) <= now) {
        // An internal snapshot that cannot be deleted now (its QEMU busy or unreachable) keeps its record, to be tried again.
        if (!(await dropInternal(meta))) continue;
        await rm(e.dir, { recursive: true, force: true });
        removed.push({ item: meta.item, pointId: meta.pointId, expiresAt: meta.expiresAt });
      }
    }
  }
  return removed;
}
