/**
 * A point's tree, folder by folder (manifest version 3). Each folder's entries are stored as
 * one or more pages; a page is a blob like a chunk (compressed, sealed, named by the keyed
 * hash of its plaintext) and a folder entry names its pages. So:
 * - an unchanged folder has the same pages as before: a backup of an unchanged tree stores
 *   nothing but a small root record, and a changed file rewrites only the pages on its path;
 * - neither the backup nor the restore ever holds the whole tree: one folder at a time.
 * Pages end where a hash of an entry's name says (or at a size cap), so that adding one file
 * to a large folder changes one page, not every page after it.
 *
 * The vault cannot read pages, yet must know what a point references (to keep it, and to
 * refuse a point whose pieces are missing). A page is therefore stored with a clear-text prefix
 * listing the ids it references: its sub-folders' pages and its files' chunks. The prefix
 * reveals the tree's shape (which opaque ids belong together), not names or contents.
 */
import { ID_BYTES } from './crypto.js';
import { CoffreError } from './errors.js';
import { decodeName, isSafeComponent, type ChunkRef, type Xattr } from './manifest.js';

interface TreeEntryBase {
  /** The entry's name in its folder, encoded as manifest names are (encodeName). */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  mtime: string;
  xattrs?: Xattr[];
}
export interface TreeDir extends TreeEntryBase { type: 'dir'; tree: string[] }
/** `inode` ("dev:ino") is set on files with several names: a restore links those that share it. */
export interface TreeFile extends TreeEntryBase { type: 'file'; size: number; chunks: ChunkRef[]; inode?: string }
export interface TreeSymlink extends TreeEntryBase { type: 'symlink'; target: string }
export interface TreeFifo extends TreeEntryBase { type: 'fifo' }
export interface TreeDevice extends TreeEntryBase { type: 'chardev' | 'blockdev'; rdev: [number, number] }
export type TreeEntry = TreeDir | TreeFile | TreeSymlink | TreeFifo | TreeDevice;

/**
 * A page is cut after an entry whose name hashes to 0 mod this (128 entries on average; no
 * minimum, so where a page ends depends on names only, never on counts: a new name changes its
 * own page, and splits it when it is a cut itself)...
 */
const PAGE_CUT = 128;
/** ...or once it holds this many entries or this many bytes. */
const PAGE_MAX = 2048;
const PAGE_MAX_BYTES = 1024 * 1024;

/** FNV-1a of the name's UTF-16 code units: cheap, stable, and only has to spread names. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const PAGE_HEAD = '{"v":1,"entries":[';
const PAGE_TAIL = ']}';
const utf8 = new TextEncoder();

export interface Page { plain: Uint8Array; entries: readonly TreeEntry[] }

/**
 * The pages of a folder whose entries are given in name order: each page's plaintext and the
 * entries it holds. An empty folder has one empty page, so that every folder names one.
 */
export function paginate(entries: readonly TreeEntry[]): Page[] {
  const pages: Page[] = [];
  let parts: string[] = [];
  let bytes = 0;
  let from = 0;
  const cut = () => {
    pages.push({ plain: utf8.encode(PAGE_HEAD + parts.join(',') + PAGE_TAIL), entries: entries.slice(from, from + parts.length) });
    from += parts.length;
    parts = [];
    bytes = 0;
  };
  for (const e of entries) {
    const json = JSON.stringify(e);
    parts.push(json);
    bytes += json.length + 1;
    if (parts.length >= PAGE_MAX || bytes >= PAGE_MAX_BYTES || nameHash(e.name) % PAGE_CUT === 0) cut();
  }
  if (parts.length > 0 || pages.length === 0) cut();
  return pages;
}

/** What a page references: its sub-folders' pages and its files' stored chunks, each once. */
export function pageRefs(entries: readonly TreeEntry[]): { trees: string[]; chunks: string[] } {
  const trees = new Set<string>();
  const chunks = new Set<string>();
  for (const e of entries) {
    if (e.type === 'dir') for (const id of e.tree) trees.add(id);
    else if (e.type === 'file') for (const [id] of e.chunks) if (id) chunks.add(id);
  }
  return { trees: [...trees], chunks: [...chunks] };
}

/**
 * The clear-text prefix of a stored page: u32 trees ‖ u32 chunks ‖ ids (32 bytes each), trees
 * first. The vault reads it to know what the page keeps alive; the agent skips it.
 */
export function encodeRefsPrefix(refs: { trees: string[]; chunks: string[] }): Buffer {
  const out = Buffer.allocUnsafe(8 + (refs.trees.length + refs.chunks.length) * ID_BYTES);
  out.writeUInt32LE(refs.trees.length, 0);
  out.writeUInt32LE(refs.chunks.length, 4);
  let o = 8;
  for (const id of refs.trees) o += out.write(id, o, 'hex');
  for (const id of refs.chunks) o += out.write(id, o, 'hex');
  if (o !== out.length) throw new RangeError('a referenced id is not 32 bytes of hex');
  return out;
}

export interface RefsPrefix { trees: Buffer[]; chunks: Buffer[]; length: number }

/** Reads the prefix of a stored page; damage is a PackInvalid error naming the page. */
export function readRefsPrefix(stored: Uint8Array): RefsPrefix {
  const bad = () => new CoffreError('PackInvalid', 'a tree page\'s reference list is truncated or malformed');
  if (stored.length < 8) throw bad();
  const view = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  const nTrees = view.readUInt32LE(0);
  const nChunks = view.readUInt32LE(4);
  const length = 8 + (nTrees + nChunks) * ID_BYTES;
  if (!Number.isSafeInteger(length) || length > view.length) throw bad();
  const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => view.subarray(from + i * ID_BYTES, from + (i + 1) * ID_BYTES));
  return { trees: ids(8, nTrees), chunks: ids(8 + nTrees * ID_BYTES, nChunks), length };
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
const HEX_ID = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Attribute names as the kernel takes them (1-255 bytes, no NUL), values base64, no name twice. */
export function validXattrs(x: unknown): boolean {
  if (!Array.isArray(x)) return false;
  const names = new Set<string>();
  for (const a of x as unknown[]) {
    if (!Array.isArray(a) || a.length !== 2 || typeof a[0] !== 'string' || typeof a[1] !== 'string') return false;
    const name = a[0];
    if (name.length === 0 || Buffer.byteLength(name) > 255 || name.includes('\0') || names.has(name) || !BASE64.test(a[1])) return false;
    names.add(name);
  }
  return true;
}

/** Checks the fields every entry kind shares and those of its own kind; `why` says what is wrong, or null. */
export function entryProblem(e: Record<string, unknown>, opts: { tree: boolean }): string | null {
  if (!isInt(e.mode) || !isInt(e.uid) || !isInt(e.gid) || typeof e.mtime !== 'string' || !/^-?\d+$/.test(e.mtime)) return 'invalid metadata';
  if (e.xattrs !== undefined && !validXattrs(e.xattrs)) return 'invalid extended attributes';
  switch (e.type) {
    case 'dir':
      if (opts.tree && (!Array.isArray(e.tree) || e.tree.length === 0 || !e.tree.every((id) => typeof id === 'string' && HEX_ID.test(id)))) return 'a folder without valid pages';
      return null;
    case 'file': {
      if (!isInt(e.size) || !Array.isArray(e.chunks)) return 'an invalid size or chunk list';
      let total = 0;
      for (const c of e.chunks as unknown[]) {
        if (!Array.isArray(c) || c.length !== 2 || !isInt(c[1], 1) || !(c[0] === null || (typeof c[0] === 'string' && HEX_ID.test(c[0])))) return 'an invalid chunk reference';
        total += c[1] as number;
      }
      if (total !== e.size) return 'chunks that do not add up to the file size';
      if (e.inode !== undefined && (typeof e.inode !== 'string' || e.inode.length > 64)) return 'an invalid inode key';
      return null;
    }
    case 'symlink': return typeof e.target === 'string' ? null : 'no link target';
    case 'fifo': return null;
    case 'chardev':
    case 'blockdev':
      return Array.isArray(e.rdev) && e.rdev.length === 2 && e.rdev.every((n) => isInt(n) && n <= 0xffffffff) ? null : 'an invalid device number';
    default: return 'an unknown type';
  }
}

/**
 * Checks entries a restore is about to trust: safe names in strictly increasing byte order
 * (so no name twice, also across the pages of one folder: `after` is the last name of the
 * previous page), and sane fields. A forged or damaged page is refused before a byte is written.
 */
export function validateEntries(input: unknown, after: Buffer | null = null): TreeEntry[] {
  const bad = (why: string) => new CoffreError('ManifestInvalid', `tree refused: ${why}`);
  if (!Array.isArray(input)) throw bad('entries are not a list');
  let previous = after;
  input.forEach((raw, index) => {
    if (typeof raw !== 'object' || raw === null) throw bad(`entry ${index} is not an object`);
    const e = raw as Record<string, unknown>;
    if (typeof e.name !== 'string') throw bad(`entry ${index} has no name`);
    const name = decodeName(e.name);
    if (!isSafeComponent(name) || name.length > 255) throw bad(`entry ${index} has an unsafe name`);
    if (previous && Buffer.compare(previous, name) >= 0) throw bad(`entry ${index} is out of order or repeats a name`);
    previous = name;
    const why = entryProblem(e, { tree: true });
    if (why) throw bad(`entry ${index} has ${why}`);
  });
  return input as TreeEntry[];
}

/** A page's entries from its plaintext, validated. */
export function decodePage(plain: Uint8Array, after: Buffer | null = null): TreeEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength).toString('utf8'));
  } catch {
    throw new CoffreError('ManifestInvalid', 'a tree page cannot be decoded');
  }
  const page = parsed as { v?: unknown; entries?: unknown } | null;
  if (!page || page.v !== 1) throw new CoffreError('ManifestInvalid', 'a tree page has an unknown version');
  return validateEntries(page.entries, after);
}

/** Entries sort by the bytes of their names, as the walk lists them. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(decodeName(a), decodeName(b));
}
