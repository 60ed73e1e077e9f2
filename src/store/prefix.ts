/** A folder of a store seen as a store of its own: each vault lives under `vaults/<id>/` of the zones. */
import { checkKey, listBase, type ObjectStore } from './object-store.js';

export class PrefixStore implements ObjectStore {
  private readonly prefix: string;

  constructor(readonly inner: ObjectStore, prefix: string) {
    checkKey(prefix);
    this.prefix = `${prefix}/`;
  }

  put(key: string, data: Uint8Array): Promise<void> { return this.inner.put(this.prefix + key, data); }
  get(key: string, range?: { offset: number; length: number }): Promise<Buffer> { return this.inner.get(this.prefix + key, range); }
  stat(key: string): Promise<{ size: number; mtime: Date } | null> { return this.inner.stat(this.prefix + key); }
  delete(key: string): Promise<void> { return this.inner.delete(this.prefix + key); }

  async *list(prefix: string): AsyncIterable<string> {
    const base = listBase(prefix);
    for await (const key of this.inner.list(this.prefix + base)) yield key.slice(this.prefix.length);
  }
}
