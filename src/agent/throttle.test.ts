import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import { bandwidthAt, validateBandwidthSchedule } from '../policy/bandwidth.js';
import { Throttle } from './throttle.js';

const MiB = 1024 * 1024;

/** A throttle on simulated time: sleeping advances both the monotonic and the wall clock. */
function simulated(rateAt: (now: Date) => number | null, start = '2026-03-02T07:00:00Z', sliceBytes?: number) {
  const clock = new ManualClock(new Date(start));
  let t = 0;
  const throttle = new Throttle(rateAt, {
    clock, monotonic: () => t, sleep: async (ms) => { t += ms; clock.advance(ms); }, ...(sliceBytes ? { sliceBytes } : {}),
  });
  return { throttle, clock, elapsed: () => t };
}

async function send(throttle: Throttle, bytes: number): Promise<number> {
  let out = 0;
  for await (const slice of throttle.pace([new Uint8Array(bytes)])) out += slice.length;
  return out;
}

describe('Throttle', () => {
  it('takes exactly the time a 2 MiB/s limit implies, with no initial burst', async () => {
    const { throttle, elapsed } = simulated(() => 2 * MiB);
    assert.equal(await send(throttle, 6 * MiB), 6 * MiB);
    assert.equal(elapsed(), 3000);
    assert.equal(throttle.bytes, 6 * MiB);
  });

  it('passes everything at once when unlimited, and earns no credit while idle (beyond a short pause)', async () => {
    let limited = false;
    const { throttle, elapsed, clock } = simulated(() => (limited ? MiB : null));
    await send(throttle, 10 * MiB);
    assert.equal(elapsed(), 0);
    clock.advance(3_600_000);
    limited = true;
    await send(throttle, MiB);
    assert.equal(elapsed(), 1000);
  });

  it('carries a short pause between two transfers, and a transfer never averages more than its limit', async () => {
    let t = 0;
    const throttle = new Throttle(() => MiB, { monotonic: () => t, sleep: async (ms) => { t += ms; } });
    await send(throttle, MiB);
    assert.equal(t, 1000);
    t += 300; // reading the next pack
    await send(throttle, MiB);
    // The 300 ms were not lost: the second MiB left 700 ms after the pause, 2 s after the first byte.
    assert.equal(t, 2000);
    t += 5000; // a long pause: no credit
    const from = t;
    await send(throttle, MiB);
    assert.equal(t - from, 1000);
  });

  it('follows the hours of the day in the middle of a transfer (injected clock)', async () => {
    // 20 Mbit/s (2.5 MB/s) until 18:00 Paris on workdays, unlimited after.
    const office = validateBandwidthSchedule({ timeZone: 'Europe/Paris', workBytesPerSecond: 2_500_000, otherBytesPerSecond: null });
    // Monday 2026-03-02 17:59:58 Paris (16:59:58Z): two seconds of work hours left.
    const { throttle, elapsed, clock } = simulated((now) => bandwidthAt(office, now).bytesPerSecond, '2026-03-02T16:59:58Z', 250_000);
    await send(throttle, 50_000_000);
    // 5 MB go at the limit in those two seconds; the other 45 MB leave at once after 18:00.
    assert.equal(elapsed(), 2000);
    assert.equal(clock.now().toISOString(), '2026-03-02T17:00:00.000Z');
  });

  it('never lets bytes out faster than the limit (any slices, any rates)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 20 }),
      fc.integer({ min: 64_000, max: 10 * MiB }),
      fc.integer({ min: 1024, max: 128 * 1024 }),
      async (sizes, rate, slice) => {
        const { throttle, elapsed } = simulated(() => rate, undefined, slice);
        let total = 0;
        for await (const s of throttle.pace(sizes.map((n) => new Uint8Array(n)))) {
          total += s.length;
          // At every moment, what has left fits in the time that has passed.
          assert.ok(total <= (elapsed() * rate) / 1000 + 1e-6, `${total} bytes after ${elapsed()} ms at ${rate} B/s`);
        }
        assert.equal(total, sizes.reduce((a, b) => a + b, 0));
        // ... and no slower than the limit either (each wait is rounded up to the millisecond).
        assert.ok(elapsed() <= (total * 1000) / rate + Math.ceil(total / slice) + sizes.length);
      },
    ), { numRuns: 100 });
  });
});
