/**
 * Which file system and volume holds a path, from the kernel's own table of mounts
 * (/proc/self/mountinfo). Pure functions over that table's text, so they are tested on tables
 * written in the test; only `readMounts` and `realLivePath` touch the system.
 */
import { readFile } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { basename, dirname, relative, resolve, sep } from 'node:path';

/** One line of /proc/self/mountinfo (see proc(5)). */
export interface Mount {
  id: number;
  parentId: number;
  /** "major:minor" of the device (st_dev of files on it). */
  device: string;
  /** The folder of the file system shown at the mount point (a btrfs subvolume's path, a bind mount's source folder). */
  root: string;
  mountPoint: string;
  mountOptions: string[];
  fsType: string;
  /** The device or dataset (e.g. /dev/mapper/vg0-home, tank/home). */
  source: string;
  superOptions: string[];
}

/** The table escapes space, tab, newline and backslash as \ooo octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export function parseMountinfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (fields.length < 10 || dash < 0) continue;
    out.push({
      id: Number(fields[0]), parentId: Number(fields[1]), device: fields[2]!, root: unescape(fields[3]!), mountPoint: unescape(fields[4]!),
      mountOptions: fields[5]!.split(','), fsType: fields[dash + 1]!, source: unescape(fields[dash + 2]!), superOptions: (fields[dash + 3] ?? '').split(','),
    });
  }
  return out;
}

export async function readMounts(): Promise<Mount[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Whether `path` is `folder` or inside it (both absolute, normalised). */
export function isWithin(path: string, folder: string): boolean {
  return path === folder || folder === '/' || path.startsWith(folder + sep);
}

/** The path of `path` relative to `folder` ('' for the folder itself). */
export function below(folder: string, path: string): string {
  return relative(folder, path);
}

/**
 * The mount that holds `path`: the deepest mount point above it, and of several mounts on one
 * point the last (the one on top, which is what a path there shows).
 */
export function mountOf(path: string, mounts: Mount[]): Mount {
  let best: Mount | undefined;
  for (const m of mounts) {
    if (!isWithin(path, m.mountPoint)) continue;
    if (!best || m.mountPoint.length >= best.mountPoint.length) best = m;
  }
  if (!best) throw new Error(`no mount holds ${path}: /proc/self/mountinfo has no root mount`);
  return best;
}

/** Mounts strictly below `path` (the top one of each mount point), each before the mounts inside it. */
export function mountsBelow(path: string, mounts: Mount[]): Mount[] {
  const top = new Map<string, Mount>();
  for (const m of mounts) if (m.mountPoint !== path && isWithin(m.mountPoint, path)) top.set(m.mountPoint, m);
  return [...top.values()].sort((a, b) => a.mountPoint.length - b.mountPoint.length);
}

/**
 * The path as the mount table names it: symbolic links in its folders resolved (a path given
 * through /var/run → /run is on /run's mount), the last component kept as it is, since the
 * backup records a symbolic link as a link. A path whose folder does not exist comes back as
 * given; the walk then says it does not exist.
 */
export function realLivePath(path: string): string {
  const abs = resolve(path);
  if (abs === '/') return abs;
  try {
    return resolve(realpathSync(dirname(abs)), basename(abs));
  } catch {
    // The folder does not exist: the walk reports that with the path as the user gave it.
    return abs;
  }
}
