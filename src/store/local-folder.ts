/** The embedded default store: one folder on a local file system. */
import { mkdir, open, rename, readdir, stat, unlink, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CoffreError } from '../core/errors.js';
import { checkKey, type ObjectStore } from './object-store.js';

export class LocalFolderStore implements ObjectStore {
  constructor(private readonly root: string) {}

  private path(key: string): string {
    checkKey(key);
    return join(this.root, key);
  }

  /** Write to a temporary name, fsync, rename, fsync the folder: atomic and durable. */
  async put(key: string, data: Uint8Array): Promise<void> {
    const final = this.path(key);
    const dir = dirname(final);
    await mkdir(dir, { recursive: true });
    const tmp = join(this.root, '.tmp', `${randomBytes(8).toString('hex')}.part`);
    await mkdir(dirname(tmp), { recursive: true });
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
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    let fh;
    try {
      fh = await open(this.path(key), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CoffreError('NotFound', `object ${key} is missing from the store`);
      throw e;
    }
    try {
      if (!range) return await fh.readFile();
      const buf = Buffer.allocUnsafe(range.length);
      let got = 0;
      while (got < range.length) {
        const { bytesRead } = await fh.read(buf, got, range.length - got, range.offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got !== range.length) throw new CoffreError('ChecksumMismatch', `object ${key} is shorter than expected (truncated?)`);
      return buf;
    } finally {
      await fh.close();
    }
  }

  async stat(key: string): Promise<{ size: number; mtime: Date } | null> {
    try {
      const s = await stat(this.path(key));
      return { size: s.size, mtime: s.mtime };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const base = prefix.replace(/\/+$/, '');
    const start = base ? this.path(base) : this.root;
    const walk = async function* (dir: string, rel: string): AsyncIterable<string> {
      let names;
      try {
        names = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw e;
      }
      for (const d of names) {
        if (!rel && d.name === '.tmp') continue;
        const r = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) yield* walk(join(dir, d.name), r);
        else if (d.isFile()) yield r;
      }
    };
    yield* walk(start, base);
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}
