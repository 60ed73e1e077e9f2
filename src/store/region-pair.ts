/**
 * GRS: every object is written to the primary region and, asynchronously, copied to the
 * paired (secondary) region. A put resolves once the primary holds the object and a copy task
 * for the secondary is durable in the queue; the Replicator copies the bytes as they are
 * (encrypted packs stay encrypted) and resumes after a restart. Deletions travel the same way.
 *
 * The task is queued after the primary write, not before: every object is used only after
 * its put resolved (a pack is indexed, a point committed), so a crash in between leaves an
 * object nothing refers to, which garbage collection removes.
 */
import type { CopyQueue, RedundantStore, StoreCopy } from './copies.js';
import { isNotFound, isUnavailable } from './store-error.js';

export class RegionPairStore implements RedundantStore {
  constructor(readonly primary: RedundantStore, readonly secondary: RedundantStore, private readonly queue: CopyQueue) {}

  copies(): readonly StoreCopy[] { return [...this.primary.copies(), ...this.secondary.copies()]; }

  private tasks(key: string, op: 'put' | 'delete', bytes: number) {
    return this.secondary.copies().map((c) => ({ target: c.name, key, op, bytes }));
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    await this.primary.put(key, data);
    await this.queue.add(this.tasks(key, 'put', data.byteLength));
  }

  async delete(key: string): Promise<void> {
    await this.primary.delete(key);
    await this.queue.add(this.tasks(key, 'delete', 0));
  }

  /** From the primary; from the secondary when the primary lacks the object or cannot answer. */
  async get(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    try {
      return await this.primary.get(key, range);
    } catch (e) {
      if (!isNotFound(e) && !isUnavailable(e)) throw e;
      try {
        return await this.secondary.get(key, range);
      } catch (e2) {
        // Missing from the secondary too: what the primary said is the better answer.
        if (isNotFound(e2)) throw e;
        throw e2;
      }
    }
  }

  async stat(key: string): Promise<{ size: number; mtime: Date } | null> {
    let primaryError: unknown;
    try {
      const s = await this.primary.stat(key);
      if (s) return s;
    } catch (e) {
      if (!isUnavailable(e)) throw e;
      primaryError = e;
    }
    try {
      return await this.secondary.stat(key);
    } catch (e) {
      throw primaryError ?? e;
    }
  }

  /** The primary's keys (the secondary lags behind it); the secondary's while the primary is unreachable. */
  async *list(prefix: string): AsyncIterable<string> {
    let yielded = false;
    try {
      for await (const key of this.primary.list(prefix)) {
        yielded = true;
        yield key;
      }
      return;
    } catch (e) {
      if (yielded || !isUnavailable(e)) throw e;
    }
    yield* this.secondary.list(prefix);
  }
}
