/**
 * Where a restore reads a point's tree from, one folder at a time: the pages of a version 3
 * point, fetched from the vault in batches and checked before use; or, for the flat
 * manifests of versions 1 and 2, folders cut out of the list once (those points hold their
 * whole tree in their manifest anyway).
 */
import { decodeBlob } from '../core/blob.js';
import type { KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { decodeName, type AnyManifest, type Entry, type FileEntry, type Manifest } from '../core/manifest.js';
import { decodePage, readRefsPrefix, type TreeEntry } from '../core/tree.js';
import type { ReadOptions, VaultClient } from './client.js';
import { planRanges } from './pack-ranges.js';
import { fetchRanges } from './range-fetch.js';

export interface RestoreSource {
  /** The entries at the top of the point. */
  readonly roots: TreeEntry[];
  /** Files and bytes of the whole point (for progress). */
  readonly totals: { files: number; bytes: number };
  /**
   * The listing of each folder whose pages are asked for: a function that gives its entries in
   * name order, or the error that says why its pages are missing or damaged. Pages are fetched
   * for many folders at once but decoded only when their folder's turn comes: fetched, they
   * are a few KiB each; decoded, thousands of objects.
   */
  listings(folders: readonly string[][]): Promise<Map<string[], Listing>>;
  /** Reads from now on are the restore job's: a copy the vault repairs on the way is named on it. */
  forJob(jobId: string): void;
}

export type Listing = () => TreeEntry[] | CoffreError;

const PAGE_FETCHES = 4;

/** Pages of a version 3 point, from the vault. */
export class PageSource implements RestoreSource {
  readonly roots: TreeEntry[];
  readonly totals: { files: number; bytes: number };

  constructor(private readonly client: VaultClient, private readonly keys: KeySet, private readonly containerId: string, manifest: AnyManifest & { version: 3 },
    private read: ReadOptions = {}) {
    this.roots = manifest.roots;
    this.totals = { files: manifest.files, bytes: manifest.bytes };
  }

  forJob(jobId: string): void {
    this.read = { ...this.read, job: jobId };
  }

  async listings(folders: readonly string[][]): Promise<Map<string[], Listing>> {
    const wanted = [...new Set(folders.flat())];
    const locations = await this.client.locate(this.containerId, wanted);
    const stored = new Map<string, Buffer | CoffreError>();
    const ranges = planRanges(locations, () => 0);
    await fetchRanges({
      client: this.client, containerId: this.containerId, ranges, inFlight: PAGE_FETCHES, read: this.read,
      onRange: (r, data) => {
        // Copied out of the range: a range holds other blobs too, and may be a reused buffer.
        for (const b of r.blobs) stored.set(b.id, Buffer.from(data.subarray(b.offset - r.offset, b.offset - r.offset + b.length)));
      },
      onDamage: (r, e) => { for (const b of r.blobs) stored.set(b.id, e); },
    });
    const out = new Map<string[], Listing>();
    for (const ids of folders) out.set(ids, () => this.decode(ids, stored));
    return out;
  }

  /** A folder's entries from its stored pages: opened, checked against their ids, validated. */
  private decode(ids: readonly string[], stored: Map<string, Buffer | CoffreError>): TreeEntry[] | CoffreError {
    const entries: TreeEntry[] = [];
    let last: Buffer | null = null;
    for (const id of ids) {
      const page = stored.get(id);
      if (!page) return new CoffreError('ChunkMissing', `tree page ${id.slice(0, 16)} is missing from the vault`);
      if (page instanceof CoffreError) return page;
      try {
        const plain = decodeBlob(this.keys, Buffer.from(id, 'hex'), page.subarray(readRefsPrefix(page).length));
        // Names ascend across the pages of one folder too: no name can be given twice.
        const part = decodePage(plain, last);
        for (const e of part) entries.push(e);
        if (part.length) last = decodeName(part[part.length - 1]!.name);
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
        return e;
      }
    }
    return entries;
  }
}

/** A flat manifest (versions 1 and 2) seen as folders: each folder's key is a synthetic page. */
export class FlatSource implements RestoreSource {
  readonly roots: TreeEntry[];
  readonly totals: { files: number; bytes: number };
  private readonly children = new Map<string, TreeEntry[]>();

  // Everything is in the manifest: nothing is read from the vault after it.
  forJob(): void {}

  constructor(manifest: Manifest) {
    const entries = manifest.entries;
    const byPath = new Map<string, TreeEntry[]>();
    const key = (path: string[]) => `flat:${JSON.stringify(path)}`;
    let files = 0;
    let bytes = 0;
    // Version 1 and 2 name hard links by the index of their first name; here, by a shared inode key.
    const linked = new Set<number>();
    for (const e of entries) if (e.type === 'hardlink') linked.add(e.link);
    entries.forEach((e, i) => {
      const name = e.path[e.path.length - 1]!;
      const parent = key(e.path.slice(0, -1));
      let t: TreeEntry;
      const base = { name, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, ...(e.xattrs ? { xattrs: e.xattrs } : {}) };
      switch (e.type) {
        case 'dir': t = { ...base, type: 'dir', tree: [key(e.path)] }; break;
        case 'file':
          t = { ...base, type: 'file', size: e.size, chunks: e.chunks, ...(linked.has(i) ? { inode: `flat:${i}` } : {}) };
          files++;
          bytes += e.size;
          break;
        case 'hardlink': {
          const first = entries[e.link] as FileEntry;
          t = { ...base, type: 'file', size: first.size, chunks: first.chunks, inode: `flat:${e.link}` };
          break;
        }
        case 'symlink': t = { ...base, type: 'symlink', target: e.target }; break;
        case 'fifo': t = { ...base, type: 'fifo' }; break;
        default: t = { ...base, type: e.type, rdev: (e as Entry & { rdev: [number, number] }).rdev };
      }
      let list = byPath.get(parent);
      if (!list) byPath.set(parent, (list = []));
      list.push(t);
    });
    for (const [k, list] of byPath) {
      list.sort((a, b) => Buffer.compare(decodeName(a.name), decodeName(b.name)));
      this.children.set(k, list);
    }
    this.roots = this.children.get(key([])) ?? [];
    this.totals = { files, bytes };
  }

  async listings(folders: readonly string[][]): Promise<Map<string[], Listing>> {
    return new Map(folders.map((ids) => [ids, () => ids.flatMap((id) => this.children.get(id) ?? [])]));
  }
}

export function sourceFor(client: VaultClient, keys: KeySet, containerId: string, manifest: AnyManifest, read: ReadOptions = {}): RestoreSource {
  return manifest.version === 3 ? new PageSource(client, keys, containerId, manifest, read) : new FlatSource(manifest);
}
