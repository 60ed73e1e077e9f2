/**
 * One folder's entries as the backup's walk sees them: names in byte order and their stats,
 * read by one native call (posix.scanDir: readdir and an lstat per entry) into a few flat
 * arrays. Nothing is made per entry until asked for: a folder whose signature matches the
 * cache is walked for its sub-folders only, and its files cost no object, string or BigInt.
 *
 * The signature covers each kept entry's name and the fields that say it changed (mode, owner,
 * size, mtime, ctime, inode, device numbers), never the access time or the device it lies on
 * (a snapshot has another).
 */
import { constants as C, lstatSync } from 'node:fs';
import { constants as os } from 'node:os';
import { createHash } from 'node:crypto';
import type { JobProblem } from '../core/api.js';
import { encodeName } from '../core/manifest.js';
import { posix } from './posix.js';
import { entryStat, noExcludes, type EntryKind, type EntryStat } from './walk.js';

const FIELDS = 11;
const EXTRA = 3;
const NS = 1_000_000_000n;

function kindOf(mode: number): EntryKind | null {
  switch (mode & C.S_IFMT) {
    case C.S_IFDIR: return 'dir';
    case C.S_IFREG: return 'file';
    case C.S_IFLNK: return 'symlink';
    case C.S_IFIFO: return 'fifo';
    case C.S_IFCHR: return 'chardev';
    case C.S_IFBLK: return 'blockdev';
    default: return null;
  }
}

const ENOENT = os.errno.ENOENT;
const errnoName = (n: number) => Object.entries(os.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;

const nsOf = (sec: number, nsec: number) => (BigInt(sec) * NS + BigInt(nsec)).toString();

export interface ListedEntry { name: Buffer; abs: Buffer; stat: EntryStat }

export interface ScanContext {
  isExcluded(display: string, name: string): boolean;
  /** Entries read from elsewhere (a nested volume's snapshot) or left out (null), by their path in the point. */
  grafts: Map<string, string | null>;
  warn(p: JobProblem): void;
}

export class Listing {
  private constructor(
    private readonly parent: Buffer,
    private readonly names: Buffer,
    private readonly offsets: Uint32Array,
    private readonly stats: Float64Array,
    private readonly extra: Float64Array,
    /** Indices (into the scan) of the entries kept: not excluded, not sockets, still there. */
    private readonly kept: readonly number[],
    /** Entries whose stat and path come from elsewhere: a graft, or a root given by its path. */
    private readonly given: Map<number, ListedEntry>,
    readonly sig: string,
  ) {}

  get count(): number { return this.kept.length; }

  /** The folder's entries; a folder that cannot be listed is a warning and an empty listing. */
  static scan(abs: Buffer, display: string, path: readonly string[], ctx: ScanContext): Listing {
    let scan: ReturnType<typeof posix.scanDir>;
    try {
      scan = posix.scanDir(abs);
    } catch (e) {
      ctx.warn({ code: 'Unreadable', message: `cannot list folder ${display}: ${(e as Error).message}`, path: display });
      return Listing.of([]);
    }
    const { names, offsets, stats, extra } = scan;
    const kept: number[] = [];
    const given = new Map<number, ListedEntry>();
    const hash = createHash('sha256');
    const bytes = new Uint8Array(stats.buffer, stats.byteOffset, stats.byteLength);
    const n = offsets.length - 1;
    for (let i = 0; i < n; i++) {
      const name = names.subarray(offsets[i]!, offsets[i + 1]!);
      const errno = extra[i * EXTRA + 2]!;
      if (ctx.isExcluded !== noExcludes) {
        const text = name.toString('utf8');
        if (ctx.isExcluded(`${display}/${text}`, text)) continue;
      }
      if (ctx.grafts.size > 0) {
        const graft = ctx.grafts.get([...path, encodeName(name)].join('/'));
        if (graft === null) continue;
        if (graft !== undefined) {
          const stat = statOf(Buffer.from(graft), `${display}/${name.toString('utf8')}`, ctx);
          if (!stat) continue;
          given.set(kept.length, { name, abs: Buffer.from(graft), stat });
          kept.push(i);
          hash.update(name);
          hash.update(`\0${stat.key}:${stat.mode}:${stat.uid}:${stat.gid}\n`);
          continue;
        }
      }
      if (errno !== 0) {
        // Gone between readdir and lstat, or not ours to read.
        if (errno !== ENOENT) {
          const childDisplay = `${display}/${name.toString('utf8')}`;
          ctx.warn({ code: 'Unreadable', message: `cannot read ${childDisplay}: ${errnoName(errno)}`, path: childDisplay });
        }
        continue;
      }
      if (!kindOf(stats[i * FIELDS]!)) {
        const childDisplay = `${display}/${name.toString('utf8')}`;
        ctx.warn({ code: 'SpecialFileSkipped', message: `${childDisplay} is a socket; sockets are not backed up (the program that made it re-creates it)`, path: childDisplay });
        continue;
      }
      kept.push(i);
      hash.update(name);
      hash.update(bytes.subarray(i * FIELDS * 8, (i + 1) * FIELDS * 8));
    }
    return new Listing(abs, names, offsets, stats, extra, kept, given, hash.digest('base64'));
  }

  /** Entries already known (the roots of a backup), in the order given. */
  static of(entries: readonly ListedEntry[]): Listing {
    const hash = createHash('sha256');
    const given = new Map<number, ListedEntry>();
    entries.forEach((e, i) => {
      given.set(i, e);
      hash.update(e.name);
      hash.update(`\0${e.stat.key}:${e.stat.mode}:${e.stat.uid}:${e.stat.gid}\n`);
    });
    return new Listing(Buffer.alloc(0), Buffer.alloc(0), new Uint32Array(1), new Float64Array(0), new Float64Array(0),
      entries.map((_, i) => i), given, hash.digest('base64'));
  }

  name(k: number): Buffer {
    const g = this.given.get(k);
    if (g) return g.name;
    const i = this.kept[k]!;
    return this.names.subarray(this.offsets[i]!, this.offsets[i + 1]!);
  }

  kind(k: number): EntryKind {
    const g = this.given.get(k);
    return g ? g.stat.kind : kindOf(this.stats[this.kept[k]! * FIELDS]!)!;
  }

  uid(k: number): number { return this.given.get(k)?.stat.uid ?? this.stats[this.kept[k]! * FIELDS + 1]!; }
  gid(k: number): number { return this.given.get(k)?.stat.gid ?? this.stats[this.kept[k]! * FIELDS + 2]!; }

  abs(k: number): Buffer {
    const g = this.given.get(k);
    if (g) return g.abs;
    const sep = this.parent[this.parent.length - 1] === 0x2f ? 0 : 1;
    const name = this.name(k);
    const out = Buffer.allocUnsafe(this.parent.length + sep + name.length);
    this.parent.copy(out, 0);
    if (sep) out[this.parent.length] = 0x2f;
    name.copy(out, this.parent.length + sep);
    return out;
  }

  /** The entry's stat, made only for the entries a backup looks at one by one. */
  stat(k: number): EntryStat {
    const g = this.given.get(k);
    if (g) return g.stat;
    const i = this.kept[k]!;
    const f = this.stats.subarray(i * FIELDS, (i + 1) * FIELDS);
    const kind = kindOf(f[0]!)!;
    const mtimeNs = nsOf(f[4]!, f[5]!);
    const ctimeNs = nsOf(f[6]!, f[7]!);
    const size = f[3]!;
    const ino = f[8]!;
    const stat: EntryStat = {
      kind, mode: f[0]! & 0o7777, uid: f[1]!, gid: f[2]!, size, nlink: this.extra[i * EXTRA]!,
      inode: `${this.extra[i * EXTRA + 1]}:${ino}`, mtimeNs, ctimeNs, key: `${size}:${mtimeNs}:${ctimeNs}:${ino}`,
    };
    if (kind === 'chardev' || kind === 'blockdev') stat.rdev = [f[9]!, f[10]!];
    return stat;
  }
}

function statOf(abs: Buffer, display: string, ctx: ScanContext): EntryStat | null {
  let stat: EntryStat | null;
  try {
    stat = entryStat(lstatSync(abs as unknown as string, { bigint: true }));
  } catch (e) {
    ctx.warn({ code: 'Unreadable', message: `cannot read ${display}: ${(e as Error).message}`, path: display });
    return null;
  }
  if (!stat) ctx.warn({ code: 'SpecialFileSkipped', message: `${display} is a socket; sockets are not backed up (the program that made it re-creates it)`, path: display });
  return stat;
}
