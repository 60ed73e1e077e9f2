/**
 * Retries transient store failures (timeouts, resets, 5xx, throttling) with exponential
 * backoff and jitter; permanent ones (missing object, full store, access denied) go straight
 * to the caller. One wrapper for every driver, so a driver only has to say which failures are
 * transient (store-error.ts).
 */
import type { ObjectStore } from './object-store.js';
import { isTransient } from './store-error.js';

export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts: number;
  /** Wait before the second try; each later wait is `factor` times longer, up to `maxDelayMs`. */
  baseDelayMs: number;
  factor: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 4, baseDelayMs: 200, factor: 4, maxDelayMs: 10_000 };

export class RetryStore implements ObjectStore {
  constructor(readonly inner: ObjectStore, private readonly opts: RetryOptions = DEFAULT_RETRY, private readonly sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))) {}

  private delay(attempt: number): number {
    const d = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * this.opts.factor ** attempt);
    // Full jitter: many writers retrying at once do not come back in step.
    return d / 2 + Math.random() * (d / 2);
  }

  private async retry<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (e) {
        if (!isTransient(e) || attempt + 1 >= this.opts.attempts) throw e;
        await this.sleep(this.delay(attempt));
      }
    }
  }

  put(key: string, data: Uint8Array): Promise<void> { return this.retry(() => this.inner.put(key, data)); }
  get(key: string, range?: { offset: number; length: number }): Promise<Buffer> { return this.retry(() => this.inner.get(key, range)); }
  stat(key: string): Promise<{ size: number; mtime: Date } | null> { return this.retry(() => this.inner.stat(key)); }
  delete(key: string): Promise<void> { return this.retry(() => this.inner.delete(key)); }

  /**
   * A listing that fails part-way starts again, skipping the keys already yielded, so that
   * each key is still yielded exactly once.
   */
  async *list(prefix: string): AsyncIterable<string> {
    const seen = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const key of this.inner.list(prefix)) {
          if (seen.has(key)) continue;
          seen.add(key);
          yield key;
        }
        return;
      } catch (e) {
        if (!isTransient(e) || attempt + 1 >= this.opts.attempts) throw e;
        await this.sleep(this.delay(attempt));
      }
    }
  }
}
