/**
 * A store in one folder of a local file system: the embedded default, and `file://` zones.
 *
 * The folder itself must exist: a zone whose folder is gone (a disk not mounted, a folder
 * removed) is unavailable, and writing would otherwise fill whatever disk holds the parent.
 * `create()` makes it, once, when a topology is set up.
 */
import { mkdir, open, rename, readdir, stat, unlink, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { checkKey, listBase, type ByteRange, type ObjectStore } from './object-store.js';
import { notFound, storageError, storageFull, truncated, unavailable, type StoreFailure } from './store-error.js';

const TMP = '.tmp';
/** errnos after which the same call may well succeed. */
const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EINTR', 'ETIMEDOUT']);

export class LocalFolderStore implements ObjectStore {
  readonly name: string;

  constructor(private readonly root: string, name?: string) {
    this.name = name ?? root;
  }

  /** Makes the store's folder (and its parents) if missing. */
  async create(): Promise<void> {
    await mkdir(join(this.root, TMP), { recursive: true, mode: 0o700 });
  }

  private path(key: string): string {
    checkKey(key);
    return join(this.root, key);
  }

  private async failure(e: unknown, key: string | undefined): Promise<StoreFailure> {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENOSPC' || code === 'EDQUOT') return storageFull(this.name, key, e);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      if (!(await this.rootExists())) return unavailable(this.name, key, `its folder ${this.root} is missing: is the disk mounted?`, false, e);
      if (key !== undefined) return notFound(this.name, key);
    }
    if (code === 'EROFS') return storageError(this.name, key, `${this.root} is read-only`, false, e);
    if (code === 'EACCES' || code === 'EPERM') return storageError(this.name, key, `permission denied in ${this.root}`, false, e);
    return storageError(this.name, key, `${code || 'error'}: ${(e as Error).message}`, TRANSIENT.has(code), e);
  }

  private async rootExists(): Promise<boolean> {
    try {
      return (await stat(this.root)).isDirectory();
    } catch {
      // Any failure to see the folder means it is not usable as a store.
      return false;
    }
  }

  /** Write to a temporary name, fsync, rename, fsync the folder: atomic and durable. */
  async put(key: string, data: Uint8Array): Promise<void> {
    const final = this.path(key);
    const dir = dirname(final);
    const tmp = join(this.root, TMP, `${randomBytes(8).toString('hex')}.part`);
    try {
      // Not recursive: a missing store folder must fail here rather than be created.
      await mkdir(join(this.root, TMP)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
      await mkdir(dir, { recursive: true });
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } catch (e) {
        await fh.close();
        await rm(tmp, { force: true });
        throw e;
      }
      await fh.close();
      await rename(tmp, final);
      const dh = await open(dir, 'r');
      try { await dh.sync(); } finally { await dh.close(); }
    } catch (e) {
      throw await this.failure(e, key);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    let fh;
    try {
      fh = await open(this.path(key), 'r');
    } catch (e) {
      throw await this.failure(e, key);
    }
    try {
      if (!range) return await fh.readFile();
      const buf = range.into && range.into.length >= range.length ? range.into.subarray(0, range.length) : Buffer.allocUnsafe(range.length);
      let got = 0;
      while (got < range.length) {
        const { bytesRead } = await fh.read(buf, got, range.length - got, range.offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got !== range.length) throw truncated(this.name, key);
      return buf;
    } catch (e) {
      if ((e as StoreFailure).store === this.name) throw e;
      throw await this.failure(e, key);
    } finally {
      await fh.close();
    }
  }

  async stat(key: string): Promise<{ size: number; mtime: Date } | null> {
    try {
      const s = await stat(this.path(key));
      return { size: s.size, mtime: s.mtime };
    } catch (e) {
      const f = await this.failure(e, key);
      if (f.code === 'NotFound') return null;
      throw f;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const base = listBase(prefix);
    if (!(await this.rootExists())) throw unavailable(this.name, undefined, `its folder ${this.root} is missing: is the disk mounted?`, false);
    const failure = (e: unknown) => this.failure(e, undefined);
    const walk = async function* (dir: string, rel: string): AsyncIterable<string> {
      let names;
      try {
        names = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw await failure(e);
      }
      for (const d of names) {
        if (!rel && d.name === TMP) continue;
        const r = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) yield* walk(join(dir, d.name), r);
        else if (d.isFile()) yield r;
      }
    };
    yield* walk(base ? join(this.root, base) : this.root, base);
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (e) {
      const f = await this.failure(e, key);
      if (f.code !== 'NotFound') throw f;
    }
  }
}
