/**
 * A throttle for uploads: paces the bytes of a request body so that they leave no faster than
 * the limit in force, asking for the limit before every slice (so a limit that follows the hours
 * of the day, src/policy/bandwidth.ts, takes effect in the middle of a long transfer).
 *
 * Each slice is paid for before it is written, starting from nothing: there is no burst
 * allowance, so sending B bytes at R bytes per second never takes less than B / R seconds.
 * Idle time earns no credit either, beyond a short pause (CARRY_MS) between two slices. Waits are measured on a monotonic clock and repeated until
 * really over (a timer may fire a millisecond early); the wall clock that chooses the limit is
 * injected, so tests drive the hours of the day without waiting for them.
 */
import { performance } from 'node:perf_hooks';
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';

/** Bytes written at once between two checks of the limit: ~1/32 s at 2 MiB/s. */
export const SLICE_BYTES = 64 * 1024;
/**
 * A pause shorter than this (a wait's overshoot, the next pack being read) is carried into the
 * next slices, so that a transfer uses its limit rather than losing every gap between packs:
 * at worst this much time's worth of bytes leaves at once, and a transfer never averages more
 * than the limit from its first byte.
 */
const CARRY_MS = 500;

export interface ThrottleOptions {
  /** The wall clock the limit is chosen by (default: the system's). */
  clock?: Clock;
  /** Monotonic milliseconds (default: performance.now). */
  monotonic?: () => number;
  sleep?: (ms: number) => Promise<void>;
  sliceBytes?: number;
}

export class Throttle {
  private readonly clock: Clock;
  private readonly monotonic: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly sliceBytes: number;
  /** When, on the monotonic clock, the bytes paid for so far may all have left. */
  private nextFree = 0;
  private started = false;
  /** Bytes passed through, and milliseconds spent waiting, since the throttle was made. */
  bytes = 0;
  waitedMs = 0;

  /** `rateAt` gives the limit at a wall-clock instant, in bytes per second; null is unlimited. */
  constructor(private readonly rateAt: (now: Date) => number | null, opts: ThrottleOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.monotonic = opts.monotonic ?? (() => performance.now());
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.sliceBytes = opts.sliceBytes ?? SLICE_BYTES;
  }

  /** Waits until `n` more bytes may leave under the limit in force now. */
  async take(n: number): Promise<void> {
    this.bytes += n;
    const rate = this.rateAt(this.clock.now());
    const now = this.monotonic();
    if (rate === null) {
      this.started = false;
      return;
    }
    // A short pause is carried, not lost (otherwise every slice would pay its rounding and every
    // pack its reading, and a transfer would run slower than its limit). A longer one starts
    // afresh, and so does the first slice: it pays its own time too.
    const carried = this.started && now - this.nextFree <= CARRY_MS ? this.nextFree : now;
    this.started = true;
    this.nextFree = carried + (n * 1000) / rate;
    for (let t = now; t < this.nextFree; t = this.monotonic()) {
      const ms = Math.ceil(this.nextFree - t);
      this.waitedMs += ms;
      await this.sleep(ms);
    }
  }

  /** The parts of a body as slices, each released when the limit lets it leave. */
  async *pace(parts: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
    for (const part of parts) {
      for (let o = 0; o < part.length; o += this.sliceBytes) {
        const slice = part.subarray(o, Math.min(part.length, o + this.sliceBytes));
        await this.take(slice.length);
        yield slice;
      }
    }
  }
}
