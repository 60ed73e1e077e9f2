/**
 * What the backup's walk (tree-backup.ts) keeps of each entry it meets: a compact stat, the
 * name a root gets in the point, and the exclude patterns. Names are handled as bytes (Linux
 * allows any byte but "/" and NUL).
 */
import { basename, resolve } from 'node:path';
import type { BigIntStats } from 'node:fs';
import picomatch from 'picomatch';

/**
 * What a backup needs of an entry's metadata. Kept instead of the BigIntStats (about twenty
 * BigInts and four Dates each), which made the heap of a walk of many files several times larger.
 */
export type EntryKind = 'dir' | 'file' | 'symlink' | 'fifo' | 'chardev' | 'blockdev';

export interface EntryStat {
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** dev:ino, which names a hard-linked file. */
  inode: string;
  mtimeNs: string;
  ctimeNs: string;
  /** Size, mtime, ctime and inode: equal keys mean an unchanged file (the metadata cache). */
  key: string;
  /** [major, minor] of a device node. */
  rdev?: [number, number];
}

/** glibc's encoding of dev_t (gnu_dev_major / gnu_dev_minor), which the kernel's stat returns. */
export function deviceNumbers(rdev: bigint): [number, number] {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return [major, minor];
}

/** Null for a socket: it is the running program's endpoint, nothing a restore could bring back. */
export function entryStat(s: BigIntStats): EntryStat | null {
  const kind: EntryKind | null = s.isDirectory() ? 'dir' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'symlink'
    : s.isFIFO() ? 'fifo' : s.isCharacterDevice() ? 'chardev' : s.isBlockDevice() ? 'blockdev' : null;
  if (!kind) return null;
  const mtimeNs = s.mtimeNs.toString();
  const ctimeNs = s.ctimeNs.toString();
  const stat: EntryStat = {
    kind, mode: Number(s.mode & 0o7777n), uid: Number(s.uid), gid: Number(s.gid), size: Number(s.size), nlink: Number(s.nlink),
    inode: `${s.dev}:${s.ino}`, mtimeNs, ctimeNs, key: `${s.size}:${mtimeNs}:${ctimeNs}:${s.ino}`,
  };
  if (kind === 'chardev' || kind === 'blockdev') stat.rdev = deviceNumbers(s.rdev);
  return stat;
}

export function rootName(root: string): string {
  const name = basename(resolve(root));
  return name === '' ? 'rootfs' : name;
}

/** The exclusion test of a backup without patterns: recognised, so that names are not decoded for it. */
export const noExcludes = (): boolean => false;

/**
 * Exclude patterns are globs matched against the path inside the point (e.g. `projects/a.log`)
 * and against the bare name, as users write them: `*.log`, `node_modules`, `**\/cache/**`.
 */
export function excluder(patterns: string[]): (display: string, name: string) => boolean {
  if (patterns.length === 0) return noExcludes;
  const matchers = patterns.map((p) => picomatch(p, { dot: true }));
  return (display, name) => matchers.some((m) => m(display) || m(name));
}

/**
 * A folder read from one place and recorded as another (src/agent/snapshot/): `read` is the
 * snapshot's copy of `record`. `grafts` maps an entry's path inside the point (its encoded
 * names, '/'-joined) to the folder its contents are read from instead (a nested volume's own
 * snapshot), or to null for a folder left out (the snapshots' own folder).
 */
export interface WalkRoot { read: string; record: string; grafts?: Map<string, string | null> }
