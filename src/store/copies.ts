/**
 * What the redundancy wrappers share: a store kept as several copies (the zones of a region,
 * a paired region), each readable on its own, and a durable queue of copies still to make.
 *
 * Reads of a redundant store fall back from a copy that lacks an object to the next one;
 * checking a copy's bytes and rewriting a damaged copy is self-healing.ts's job, and making
 * the copies the writes left for later is the Replicator's (replicator.ts).
 */
import type { ObjectStore } from './object-store.js';

/** `primary` copies take every write; `secondary` ones (the paired region) are filled asynchronously. */
export type CopyRole = 'primary' | 'secondary';

export interface StoreCopy {
  /** Stable name, "REGION/ZONE": it names the copy in errors, reports and the copy queue. */
  readonly name: string;
  readonly role: CopyRole;
  readonly store: ObjectStore;
}

export interface RedundantStore extends ObjectStore {
  /** Every copy, primary ones first, in the order reads prefer them. */
  copies(): readonly StoreCopy[];
}

/** One copy still to make (`put`: bring the object to `target`; `delete`: remove it there). */
export interface CopyTask { target: string; key: string; op: 'put' | 'delete'; bytes: number }

/**
 * Where redundant stores leave the copies they did not make at once. Durable: once `add`
 * resolved, the task survives a restart. Scoped: each vault's stores add to their own scope.
 */
export interface CopyQueue {
  add(tasks: CopyTask[]): Promise<void>;
}

/** A queued task, as the Replicator takes it. */
export interface QueuedCopy extends CopyTask { id: number; scope: string; queuedAt: Date; attempts: number }

/** The Replicator's side of the queue, across scopes. */
export interface CopyQueueWorker {
  /** Up to `limit` tasks due at `now` (all of them with `ignoreBackoff`), oldest first. */
  due(limit: number, now: Date, ignoreBackoff?: boolean): Promise<QueuedCopy[]>;
  done(ids: number[]): Promise<void>;
  /** The task failed; try again at `at`. */
  later(id: number, at: Date, error: string): Promise<void>;
}

/** A one-copy store (LRS) as a redundant store. */
export class SingleCopyStore implements RedundantStore {
  constructor(private readonly copy: StoreCopy) {}
  copies(): readonly StoreCopy[] { return [this.copy]; }
  put(key: string, data: Uint8Array): Promise<void> { return this.copy.store.put(key, data); }
  get(key: string, range?: { offset: number; length: number }): Promise<Buffer> { return this.copy.store.get(key, range); }
  stat(key: string): Promise<{ size: number; mtime: Date } | null> { return this.copy.store.stat(key); }
  list(prefix: string): AsyncIterable<string> { return this.copy.store.list(prefix); }
  delete(key: string): Promise<void> { return this.copy.store.delete(key); }
}
