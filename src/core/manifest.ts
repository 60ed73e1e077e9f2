/**
 * A manifest is the whole tree of one recovery point: every entry with its metadata and,
 * for files, the list of chunks. It is sealed with the container's key and bound to its point
 * id, so the vault can neither read nor swap it. Every point's manifest names every chunk it
 * needs: no restore replays a chain.
 *
 * Names are bytes on Linux. A component that is valid UTF-8 is stored as a string; any other
 * is stored as "\0" + base64 (NUL never occurs in a file name, so this is unambiguous).
 *
 * Version 2 added what a Linux tree holds beyond bytes and modes: extended attributes (which
 * carry POSIX ACLs and file capabilities), FIFOs and device nodes, and the names of owners.
 * Version 3 holds only the point's roots: folders name their pages (src/core/tree.ts), so a
 * manifest no longer grows with the tree. Versions 1 and 2 (flat lists of every entry) stay
 * readable; a reader that knows only an older version refuses a newer one rather than
 * restoring it without what it does not understand.
 */
import { open, seal, type KeySet } from './crypto.js';
import { compressChunk, decompressChunk } from './compress.js';
import { CoffreError } from './errors.js';
import { entryProblem, validateEntries, type TreeEntry } from './tree.js';

/** [chunk id hex, plaintext length]; a null id is a run of zero bytes, restored as a hole. */
export type ChunkRef = [string | null, number];

/**
 * An extended attribute: its name (e.g. `user.comment`, `system.posix_acl_access`,
 * `security.capability`) and its value as base64, since values are bytes (ACLs and
 * capabilities are binary) and may be empty.
 */
export type Xattr = [string, string];

interface EntryBase {
  /** Path components from the point's root; the first is the backed-up folder's name. */
  path: string[];
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, nanoseconds since the epoch, as a decimal string. */
  mtime: string;
  /** Extended attributes, sorted by name; absent when there are none. */
  xattrs?: Xattr[];
}
export interface DirEntry extends EntryBase { type: 'dir' }
export interface FileEntry extends EntryBase { type: 'file'; size: number; chunks: ChunkRef[] }
export interface SymlinkEntry extends EntryBase { type: 'symlink'; target: string }
/** A further name of a file seen earlier in the manifest (`link` = that entry's index). */
export interface HardlinkEntry extends EntryBase { type: 'hardlink'; link: number }
export interface FifoEntry extends EntryBase { type: 'fifo' }
/** A device node; `rdev` is [major, minor]. */
export interface DeviceEntry extends EntryBase { type: 'chardev' | 'blockdev'; rdev: [number, number] }
export type Entry = DirEntry | FileEntry | SymlinkEntry | HardlinkEntry | FifoEntry | DeviceEntry;

/** Names of the numeric owners seen in the tree (id as a decimal string -> name), for restores on other machines. */
export interface OwnerNames { users: Record<string, string>; groups: Record<string, string> }

/** A flat manifest: every entry of the point, parents first (versions 1 and 2). */
export interface Manifest {
  version: 1 | 2;
  item: string;
  time: string;
  entries: Entry[];
  owners?: OwnerNames;
}

/** A point's root record (version 3): the backed-up folders and files, their folders by their pages. */
export interface RootManifest {
  version: 3;
  item: string;
  time: string;
  /** One entry per backed-up path, in name order; its name is the path's last component. */
  roots: TreeEntry[];
  owners: OwnerNames;
  files: number;
  bytes: number;
}

export type AnyManifest = Manifest | RootManifest;

export function encodeName(name: Buffer): string {
  const text = name.toString('utf8');
  if (name[0] !== 0 && Buffer.from(text, 'utf8').equals(name)) return text;
  return '\0' + name.toString('base64');
}

export function decodeName(name: string): Buffer {
  return name.startsWith('\0') ? Buffer.from(name.slice(1), 'base64') : Buffer.from(name, 'utf8');
}

const SLASH = 0x2f;

/** A component a restore may create: no separators, no NUL, not "." or "..". */
export function isSafeComponent(name: Buffer): boolean {
  if (name.length === 0 || name.length > 4096) return false;
  if (name.includes(SLASH) || name.includes(0)) return false;
  const s = name.toString('latin1');
  return s !== '.' && s !== '..';
}

function manifestAd(pointId: string): Buffer {
  return Buffer.from(`coffre:manifest:v1:${pointId}`);
}

// Encodes a long string about twice as fast as Buffer.from (Node 20).
const utf8 = new TextEncoder();

export function sealManifest(keys: KeySet, pointId: string, manifest: AnyManifest): Buffer {
  const plain = utf8.encode(JSON.stringify(manifest));
  const { codec, data } = compressChunk(plain);
  const sealed = seal(keys.encKey, data, manifestAd(pointId));
  return Buffer.concat([Uint8Array.of(codec), sealed]);
}

export function openManifest(keys: KeySet, pointId: string, stored: Buffer): AnyManifest {
  const opened = open(keys.encKey, stored.subarray(1), manifestAd(pointId));
  if (!opened) throw new CoffreError('ChecksumMismatch', `the manifest of point ${pointId} is damaged or belongs to another point`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(decompressChunk(stored[0] ?? 0, opened).toString('utf8'));
  } catch {
    throw new CoffreError('ManifestInvalid', `the manifest of point ${pointId} cannot be decoded`);
  }
  return validateAnyManifest(parsed);
}

/** A manifest of any version a restore can read, checked as its version requires. */
export function validateAnyManifest(input: unknown): AnyManifest {
  if (typeof input === 'object' && input !== null && (input as { version?: unknown }).version === 3) return validateRootManifest(input);
  return validateManifest(input);
}

export function validateRootManifest(input: unknown): RootManifest {
  const bad = (why: string) => new CoffreError('ManifestInvalid', `manifest refused: ${why}`);
  const m = input as Record<string, unknown>;
  if (m.version !== 3 || typeof m.item !== 'string' || typeof m.time !== 'string' || !Array.isArray(m.roots)) throw bad('missing fields');
  if (!isInt(m.files) || !isInt(m.bytes)) throw bad('invalid totals');
  if (!validOwners(m.owners)) throw bad('invalid owner names');
  validateEntries(m.roots);
  return input as RootManifest;
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;

/**
 * Checks everything a restore relies on, so that a forged or corrupt manifest is refused
 * before any byte is written: safe names, parents before children, sane sizes and links.
 */
export function validateManifest(input: unknown): Manifest {
  const bad = (why: string) => new CoffreError('ManifestInvalid', `manifest refused: ${why}`);
  if (typeof input !== 'object' || input === null) throw bad('not an object');
  const m = input as Record<string, unknown>;
  if ((m.version !== 1 && m.version !== 2) || typeof m.item !== 'string' || typeof m.time !== 'string' || !Array.isArray(m.entries)) throw bad('missing fields');
  const dirs = new Set<string>();
  const seen = new Set<string>();
  const entries = m.entries as unknown[];
  entries.forEach((raw, index) => {
    if (typeof raw !== 'object' || raw === null) throw bad(`entry ${index} is not an object`);
    const e = raw as Record<string, unknown>;
    const path = e.path;
    if (!Array.isArray(path) || path.length === 0 || !path.every((p) => typeof p === 'string' && isSafeComponent(decodeName(p)))) {
      throw bad(`entry ${index} has an unsafe path`);
    }
    const key = (path as string[]).join('\0/');
    const parent = (path as string[]).slice(0, -1).join('\0/');
    if (path.length > 1 && !dirs.has(parent)) throw bad(`entry ${index} comes before its folder or lies under a non-folder`);
    if (seen.has(key)) throw bad(`entry ${index} repeats a path`);
    seen.add(key);
    if (e.type === 'hardlink') {
      if (!isInt(e.mode) || !isInt(e.uid) || !isInt(e.gid) || typeof e.mtime !== 'string' || !/^-?\d+$/.test(e.mtime)) throw bad(`entry ${index} has invalid metadata`);
      const target = isInt(e.link) ? entries[e.link] as Record<string, unknown> | undefined : undefined;
      if (!target || (e.link as number) >= index || target.type !== 'file') throw bad(`entry ${index} links to an invalid entry`);
      return;
    }
    const why = entryProblem(e, { tree: false });
    if (why) throw bad(`entry ${index} has ${why}`);
    if (e.type === 'dir') dirs.add(key);
  });
  if (m.owners !== undefined && !validOwners(m.owners)) throw bad('invalid owner names');
  return input as Manifest;
}

function validOwners(o: unknown): boolean {
  if (typeof o !== 'object' || o === null) return false;
  const { users, groups } = o as Record<string, unknown>;
  const valid = (map: unknown) => typeof map === 'object' && map !== null &&
    Object.entries(map).every(([id, name]) => /^\d+$/.test(id) && typeof name === 'string' && name.length > 0 && name.length <= 256 && !name.includes('\0'));
  return valid(users) && valid(groups);
}

/** Every distinct chunk id a flat manifest references, for the vault's reference list. */
export function referencedChunks(manifest: Manifest): string[] {
  const ids = new Set<string>();
  for (const e of manifest.entries) if (e.type === 'file') for (const [id] of e.chunks) if (id) ids.add(id);
  return [...ids];
}
