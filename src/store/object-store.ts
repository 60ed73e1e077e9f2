/**
 * The object store holds packs, manifests and reference lists. It is the truth for data.
 *
 * An implementation must guarantee:
 * - `put` is atomic and durable: when it resolves, the object is complete and survives a
 *   crash or power loss; a reader never sees a partial object, and a crashed `put` leaves
 *   either the previous state or the new object.
 * - read-after-write: `get`, `stat` and `list` see an object once its `put` resolved.
 * - `get` with a range returns exactly those bytes, or throws NotFound for a missing key.
 * - `delete` of a missing key succeeds (deletion is idempotent).
 * Keys are relative paths of `[A-Za-z0-9._-]` segments separated by "/".
 */
export interface ObjectStore {
  put(key: string, data: Uint8Array): Promise<void>;
  get(key: string, range?: { offset: number; length: number }): Promise<Buffer>;
  stat(key: string): Promise<{ size: number; mtime: Date } | null>;
  /** Every key under the prefix, each exactly once, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  delete(key: string): Promise<void>;
}

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function checkKey(key: string): void {
  if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..')) throw new RangeError(`invalid object key ${JSON.stringify(key)}`);
}
