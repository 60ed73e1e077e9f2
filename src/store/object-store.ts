/**
 * The object store holds packs, manifests, reference lists and the records the catalog can be
 * rebuilt from. It is the truth for data; the catalog is an index of it.
 *
 * An implementation must guarantee:
 * - `put` is atomic and durable: when it resolves, the object is complete and survives a
 *   crash or power loss; a reader never sees a partial object, and a crashed `put` leaves
 *   either the previous state or the new object. Concurrent puts of one key leave one of
 *   the written objects, whole.
 * - read-after-write: `get`, `stat` and `list` see an object once its `put` resolved.
 * - `get` with a range returns exactly those bytes, or throws NotFound for a missing key; a
 *   range reaching past the end of the object throws ChecksumMismatch (it was truncated).
 * - `delete` of a missing key succeeds (deletion is idempotent).
 * - `list(prefix)` yields every key below the folder `prefix` ("" for all), each exactly
 *   once, in no particular order, however many pages the backend needs.
 * Keys are relative paths of `[A-Za-z0-9._-]` segments separated by "/".
 *
 * Failures are CoffreErrors (see store-error.ts): NotFound for a missing object,
 * StorageFull when the store has no room, StorageUnavailable when it cannot be reached
 * (transient ones are retried by RetryStore, not by the drivers), StorageError for the
 * rest; each names the store and the key.
 */
/** A part of an object to read. */
export interface ByteRange {
  offset: number;
  length: number;
  /**
   * A buffer of at least `length` bytes the store may read into, the result then being a view
   * of it: a server reusing its buffers spares the fresh memory a new one costs per read (page
   * faults that cost more than the read itself). Stores that cannot read in place ignore it.
   */
  into?: Buffer;
}

export interface ObjectStore {
  put(key: string, data: Uint8Array): Promise<void>;
  get(key: string, range?: ByteRange): Promise<Buffer>;
  stat(key: string): Promise<{ size: number; mtime: Date } | null>;
  /** Every key under the prefix, each exactly once, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  delete(key: string): Promise<void>;
}

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function checkKey(key: string): void {
  if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..')) throw new RangeError(`invalid object key ${JSON.stringify(key)}`);
}

/** The folder part of a list prefix, without trailing slashes ("" lists everything). */
export function listBase(prefix: string): string {
  const base = prefix.replace(/\/+$/, '');
  if (base) checkKey(base);
  return base;
}
