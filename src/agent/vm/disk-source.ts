/**
 * A VM disk as a source: a raw image file, a fixed VHD (its data is backed up, its footer
 * kept aside), a qcow2 image (its guest data, read through qemu-nbd), or a block device.
 * Probing reads the size and format; it changes nothing.
 */
import { open, readFile, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import type { DiskFormat } from './disk-manifest.js';
import { runCommand } from '../scripts.js';
import { classifyImage, VHD_FOOTER_BYTES } from './vhd.js';
import { parseQcow2Header, QCOW2_HEADER_BYTES } from './qcow2-header.js';

export interface DiskProbe {
  /** The disk's real path (symlinks resolved). */
  path: string;
  kind: 'file' | 'device';
  format: DiskFormat;
  /** Bytes of disk data (a VHD's data, without its footer). */
  dataSize: number;
  /** Bytes of the whole file or device. */
  totalSize: number;
  vhdFooter?: Buffer;
}

/** A block device's size: from sysfs, else `blockdev --getsize64` (fs.stat says 0 for devices). */
async function deviceSize(path: string, rdev: number): Promise<number> {
  // Linux's dev_t: minor bits 0-7 and 20-31, major bits 8-19 (and above 32, never used here).
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 1048576) & 0xfff) << 8;
  try {
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    if (Number.isSafeInteger(sectors) && sectors >= 0) return sectors * 512;
  } catch {
    // No sysfs here (a container without /sys): ask blockdev below.
  }
  const r = await runCommand('blockdev', ['--getsize64', path], { timeoutMs: 30_000 });
  const n = Number(r.output);
  if (!r.ok || !Number.isSafeInteger(n)) throw new CoffreError('InvalidArgument', `cannot read the size of block device ${path}: ${r.output || 'blockdev failed'}`);
  return n;
}

async function readAt(path: string, offset: number, length: number): Promise<Buffer | null> {
  if (offset < 0) return null;
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return bytesRead === length ? b : null;
  } finally {
    await fh.close();
  }
}

const readTail = (path: string, size: number) => readAt(path, size - VHD_FOOTER_BYTES, VHD_FOOTER_BYTES);

/** A qcow2 image's guest size, or null when the file is not qcow2; refuses what qemu-nbd could not read for us. */
async function qcow2Size(path: string, shown: string): Promise<number | null> {
  const head = await readAt(path, 0, QCOW2_HEADER_BYTES);
  const h = head ? parseQcow2Header(head) : null;
  if (!h) return null;
  if (h.encrypted) throw new CoffreError('InvalidArgument', `${shown} is an encrypted qcow2 image; back up the running VM through QEMU instead (coffre vm protect NAME --qmp SOCKET)`);
  return h.size;
}

export async function probeDisk(path: string): Promise<DiskProbe> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (e) {
    throw new CoffreError('InvalidArgument', `disk ${path} cannot be opened: ${(e as Error).message}`);
  }
  const s = await stat(real);
  if (s.isBlockDevice()) {
    const size = await deviceSize(real, s.rdev);
    return { path: real, kind: 'device', format: 'device', dataSize: size, totalSize: size };
  }
  if (!s.isFile()) throw new CoffreError('InvalidArgument', `disk ${path} is neither an image file nor a block device`);
  const q = await qcow2Size(real, path);
  if (q !== null) return { path: real, kind: 'file', format: 'qcow2', dataSize: q, totalSize: s.size };
  const c = classifyImage(s.size, await readTail(real, s.size), path);
  return { path: real, kind: 'file', format: c.format, dataSize: c.dataSize, totalSize: s.size, ...(c.format === 'vhd' ? { vhdFooter: c.footer } : {}) };
}

/** How the disk's copy of a point is classified: like its source, from the copy's own bytes. */
export async function probeSnapshot(file: string, sourceKind: 'file' | 'device', sourcePath: string): Promise<Omit<DiskProbe, 'path' | 'kind'>> {
  const s = await stat(file);
  if (sourceKind === 'device') return { format: 'device', dataSize: s.size, totalSize: s.size };
  const c = classifyImage(s.size, await readTail(file, s.size), sourcePath);
  return { format: c.format, dataSize: c.dataSize, totalSize: s.size, ...(c.format === 'vhd' ? { vhdFooter: c.footer } : {}) };
}

/** File name stems for restored disks: the source's name without its extension, unique and safe. */
export function diskNames(paths: string[]): string[] {
  const used = new Set<string>();
  return paths.map((p, i) => {
    let stem = basename(p).replace(/\.(img|raw|vhd|vpc|bin|qcow2|qcow)$/i, '').replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[._-]+/, '').slice(0, 80);
    if (!stem) stem = `disk-${i}`;
    let name = stem;
    for (let n = 2; used.has(name); n++) name = `${stem}-${n}`;
    used.add(name);
    return name;
  });
}
