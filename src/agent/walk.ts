/**
 * Walks the folders to back up. Names are handled as bytes (Linux allows any byte but "/" and
 * NUL), entries come parents first, and what cannot be read is reported, not fatal.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { BigIntStats } from 'node:fs';
import picomatch from 'picomatch';
import type { JobProblem } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { encodeName } from '../core/manifest.js';

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

export interface WalkEntry {
  /** Absolute path as bytes, for system calls. */
  abs: Buffer;
  /** Path inside the point, as encoded components. */
  path: string[];
  /** '/'-joined readable path, for messages and exclude patterns. */
  display: string;
  stat: EntryStat;
}

const SEP = Buffer.from('/');

function join(parent: Buffer, name: Buffer): Buffer {
  return parent[parent.length - 1] === 0x2f ? Buffer.concat([parent, name]) : Buffer.concat([parent, SEP, name]);
}

export function rootName(root: string): string {
  const name = basename(resolve(root));
  return name === '' ? 'rootfs' : name;
}

/**
 * Exclude patterns are globs matched against the path inside the point (e.g. `projects/a.log`)
 * and against the bare name, as users write them: `*.log`, `node_modules`, `**\/cache/**`.
 */
export function excluder(patterns: string[]): (display: string, name: string) => boolean {
  if (patterns.length === 0) return () => false;
  const matchers = patterns.map((p) => picomatch(p, { dot: true }));
  return (display, name) => matchers.some((m) => m(display) || m(name));
}

/**
 * A folder read from one place and recorded as another (src/agent/snapshot/): `read` is the
 * snapshot's copy of `record`. `grafts` maps an entry's path inside the point ('/'-joined
 * `WalkEntry.path`) to the folder its contents are read from instead (a nested volume's own
 * snapshot), or to null for a folder left out (the snapshots' own folder).
 */
export interface WalkRoot { read: string; record: string; grafts?: Map<string, string | null> }

export async function walk(roots: (string | WalkRoot)[], excludes: string[], warn: (p: JobProblem) => void): Promise<WalkEntry[]> {
  const isExcluded = excluder(excludes);
  const names = new Set<string>();
  const out: WalkEntry[] = [];
  for (const given of roots) {
    const { read, record: root, grafts } = typeof given === 'string' ? { read: given, record: given, grafts: undefined } : given;
    const abs = resolve(read);
    const name = rootName(root);
    if (names.has(name)) throw new CoffreError('InvalidArgument', `two folders to back up share the name ${name}; back them up as separate items`);
    names.add(name);
    let stat: EntryStat | null;
    try {
      stat = entryStat(lstatSync(abs, { bigint: true }));
    } catch (e) {
      throw new CoffreError('InvalidArgument', `cannot back up ${root}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`);
    }
    if (!stat || (stat.kind !== 'dir' && stat.kind !== 'file' && stat.kind !== 'symlink')) {
      throw new CoffreError('InvalidArgument', `cannot back up ${root}: it is a device, socket or FIFO; back up the folder that holds it`);
    }
    const rootEntry = { abs: Buffer.from(abs), path: [name], display: name, stat };
    out.push(rootEntry);
    if (stat.kind === 'dir') walkDir(rootEntry, out, isExcluded, warn, grafts?.size ? grafts : undefined);
  }
  return out;
}

/**
 * Synchronous on purpose: metadata comes from the kernel's caches in microseconds, while a
 * thread-pool round trip per entry made the walk of an unchanged tree several times slower.
 */
function walkDir(dir: WalkEntry, out: WalkEntry[], isExcluded: (d: string, n: string) => boolean, warn: (p: JobProblem) => void, grafts?: Map<string, string | null>): void {
  let children: Buffer[];
  try {
    children = readdirSync(dir.abs as unknown as string, { encoding: 'buffer' });
  } catch (e) {
    warn({ code: 'Unreadable', message: `cannot list folder ${dir.display}: ${(e as Error).message}`, path: dir.display });
    return;
  }
  // Sorted children make manifests deterministic and diffs between points meaningful.
  children.sort(Buffer.compare);
  for (const nameBuf of children) {
    const text = nameBuf.toString('utf8');
    const display = `${dir.display}/${text}`;
    if (isExcluded(display, text)) continue;
    let abs = join(dir.abs, nameBuf);
    const path = [...dir.path, encodeName(nameBuf)];
    const graft = grafts?.get(path.join('/'));
    if (graft === null) continue;
    if (graft !== undefined) abs = Buffer.from(graft);
    let stat: EntryStat | null;
    try {
      stat = entryStat(lstatSync(abs as unknown as string, { bigint: true }));
    } catch (e) {
      warn({ code: 'Unreadable', message: `cannot read ${display}: ${(e as Error).message}`, path: display });
      continue;
    }
    if (!stat) {
      warn({ code: 'SpecialFileSkipped', message: `${display} is a socket; sockets are not backed up (the program that made it re-creates it)`, path: display });
      continue;
    }
    const entry = { abs, path, display, stat };
    out.push(entry);
    if (stat.kind === 'dir') walkDir(entry, out, isExcluded, warn, grafts);
  }
}
