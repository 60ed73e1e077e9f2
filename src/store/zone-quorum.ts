/**
 * ZRS: the zones of a region hold every object. A write is acknowledged once a quorum of
 * zones (2 of 3: a majority) holds it, so a zone can be lost without losing an acknowledged
 * object; the zones that missed it get a copy task, made by the Replicator when they are back
 * (and by `verify --repair`). Writes to the zones run in parallel and the put resolves when
 * they have all settled, so no write is still reading the caller's buffer afterwards.
 *
 * A zone that just failed is skipped for a short while (its tasks are queued at once) rather
 * than paying its retries and timeouts on every write.
 */
import { checkKey, type ObjectStore } from './object-store.js';
import type { CopyQueue, RedundantStore, StoreCopy } from './copies.js';
import { isNotFound, isUnavailable, notFound, storageFull, unavailable } from './store-error.js';
import { CoffreError } from '../core/errors.js';

export const ZONE_DOWN_MS = 15_000;

export class ZoneQuorumStore implements RedundantStore {
  readonly quorum: number;
  private readonly downUntil = new Map<string, number>();

  private readonly downMs: number;

  constructor(private readonly zones: readonly StoreCopy[], private readonly queue: CopyQueue, readonly name: string, opts: { quorum?: number; downMs?: number } = {}) {
    this.quorum = opts.quorum ?? Math.floor(zones.length / 2) + 1;
    this.downMs = opts.downMs ?? ZONE_DOWN_MS;
    if (this.quorum < 1 || this.quorum > zones.length) throw new RangeError(`a write quorum of ${this.quorum} needs as many zones (have ${zones.length})`);
  }

  copies(): readonly StoreCopy[] { return this.zones; }

  private isDown(z: StoreCopy): boolean {
    return (this.downUntil.get(z.name) ?? 0) > Date.now();
  }

  private markDown(z: StoreCopy, e: unknown): void {
    if (isUnavailable(e)) this.downUntil.set(z.name, Date.now() + this.downMs);
  }

  /** Zones that answer first: those not known to be down, then the others. */
  private ordered(): StoreCopy[] {
    return [...this.zones.filter((z) => !this.isDown(z)), ...this.zones.filter((z) => this.isDown(z))];
  }

  /** Runs `op` on zones in parallel until a quorum succeeded; returns the zones that did not. */
  private async everywhere(key: string, what: string, op: (s: ObjectStore) => Promise<void>): Promise<StoreCopy[]> {
    checkKey(key);
    const up = this.zones.filter((z) => !this.isDown(z));
    let pending = this.zones.filter((z) => this.isDown(z));
    const failed: { zone: StoreCopy; error: unknown }[] = [];
    let ok = 0;
    const attempt = async (zones: StoreCopy[]) => {
      const results = await Promise.allSettled(zones.map((z) => op(z.store)));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') { ok++; this.downUntil.delete(zones[i]!.name); } else { failed.push({ zone: zones[i]!, error: r.reason }); this.markDown(zones[i]!, r.reason); }
      });
    };
    await attempt(up);
    // Too few zones answered: the ones thought down may be back.
    if (ok < this.quorum && pending.length) { await attempt(pending); pending = []; }
    if (ok < this.quorum) {
      const full = failed.find((f) => f.error instanceof CoffreError && f.error.code === 'StorageFull');
      if (full) throw storageFull(full.zone.name, key, full.error);
      const why = failed.map((f) => `${f.zone.name}: ${(f.error as Error).message}`).join('; ');
      throw unavailable(this.name, key, `${what} reached ${ok} of ${this.zones.length} zones, ${this.quorum} are needed — ${why}`, false);
    }
    return [...failed.map((f) => f.zone), ...pending];
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const missed = await this.everywhere(key, 'the write', (s) => s.put(key, data));
    if (missed.length) await this.queue.add(missed.map((z) => ({ target: z.name, key, op: 'put' as const, bytes: data.byteLength })));
  }

  async delete(key: string): Promise<void> {
    const missed = await this.everywhere(key, 'the deletion', (s) => s.delete(key));
    if (missed.length) await this.queue.add(missed.map((z) => ({ target: z.name, key, op: 'delete' as const, bytes: 0 })));
  }

  /**
   * The object is known missing once enough zones say so that no quorum can hold it; until
   * then a zone that could not answer makes the read unavailable, not "missing".
   */
  private settle(key: string, missing: number, errors: unknown[]): never {
    if (missing >= this.zones.length - this.quorum + 1) throw notFound(this.name, key);
    const hard = errors.find((e) => !isUnavailable(e));
    if (hard) throw hard;
    throw unavailable(this.name, key, `too few zones answered: ${errors.map((e) => (e as Error).message).join('; ')}`, false);
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    let missing = 0;
    const errors: unknown[] = [];
    for (const z of this.ordered()) {
      try {
        return await z.store.get(key, range);
      } catch (e) {
        if (isNotFound(e)) missing++;
        else { errors.push(e); this.markDown(z, e); }
      }
    }
    return this.settle(key, missing, errors);
  }

  async stat(key: string): Promise<{ size: number; mtime: Date } | null> {
    let missing = 0;
    const errors: unknown[] = [];
    for (const z of this.ordered()) {
      try {
        const s = await z.store.stat(key);
        if (s) return s;
        missing++;
      } catch (e) {
        errors.push(e);
        this.markDown(z, e);
      }
    }
    try {
      this.settle(key, missing, errors);
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /** The union of the zones' keys: any acknowledged object is in every quorum of zones. */
  async *list(prefix: string): AsyncIterable<string> {
    const seen = new Set<string>();
    let listed = 0;
    const errors: unknown[] = [];
    for (const z of this.ordered()) {
      try {
        for await (const key of z.store.list(prefix)) {
          if (seen.has(key)) continue;
          seen.add(key);
          yield key;
        }
        listed++;
      } catch (e) {
        errors.push(e);
        this.markDown(z, e);
      }
    }
    if (listed < this.zones.length - this.quorum + 1) {
      throw unavailable(this.name, undefined, `only ${listed} of ${this.zones.length} zones could be listed: ${errors.map((e) => (e as Error).message).join('; ')}`, false);
    }
  }
}
