import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CoffreError } from '../core/errors.js';
import { validatePolicy, WEEK_DAYS, type Policy, type WeekDay } from './policy.js';
import { nextRuns } from './schedule.js';

function policy(schedule: unknown, timeZone = 'UTC'): Policy {
  return validatePolicy({ name: 'P', timeZone, schedule, retention: { monthly: { count: 1, days: [1] } } });
}

const isoRuns = (p: Policy, from: string, count: number) => nextRuns(p, new Date(from), count).map((d) => d.toISOString());

describe('nextRuns', () => {
  it('lists daily runs strictly after `from`', () => {
    const daily = policy({ frequency: 'Daily', times: ['22:00'] });
    assert.deepEqual(isoRuns(daily, '2024-01-01T10:00:00Z', 3),
      ['2024-01-01T22:00:00.000Z', '2024-01-02T22:00:00.000Z', '2024-01-03T22:00:00.000Z']);
    // A run at exactly `from` is not "next".
    assert.deepEqual(isoRuns(daily, '2024-01-01T22:00:00Z', 1), ['2024-01-02T22:00:00.000Z']);
    assert.deepEqual(isoRuns(daily, '2024-01-01T21:59:59.999Z', 1), ['2024-01-01T22:00:00.000Z']);
  });

  it('orders several times a day whatever their order in the policy', () => {
    const thrice = policy({ frequency: 'Daily', times: ['18:00', '06:00', '12:00'] });
    assert.deepEqual(isoRuns(thrice, '2024-01-01T07:00:00Z', 4),
      ['2024-01-01T12:00:00.000Z', '2024-01-01T18:00:00.000Z', '2024-01-02T06:00:00.000Z', '2024-01-02T12:00:00.000Z']);
  });

  it('runs a weekly schedule only on its days, in local time', () => {
    const weekly = policy({ frequency: 'Weekly', weekDays: ['Wednesday', 'Sunday'], times: ['23:30'] }, 'Europe/Paris');
    // 2024-01-07 is a Sunday; 23:30 CET is 22:30Z.
    assert.deepEqual(isoRuns(weekly, '2024-01-07T00:00:00Z', 4),
      ['2024-01-07T22:30:00.000Z', '2024-01-10T22:30:00.000Z', '2024-01-14T22:30:00.000Z', '2024-01-17T22:30:00.000Z']);
  });

  it('runs a time in the spring-forward gap when the gap ends', () => {
    const paris = policy({ frequency: 'Daily', times: ['02:30'] }, 'Europe/Paris');
    assert.deepEqual(isoRuns(paris, '2024-03-29T12:00:00Z', 4), [
      '2024-03-30T01:30:00.000Z', // 02:30 CET
      '2024-03-31T01:30:00.000Z', // 02:30 does not exist: 03:30 CEST
      '2024-04-01T00:30:00.000Z', // 02:30 CEST
      '2024-04-02T00:30:00.000Z',
    ]);
  });

  it('merges two times of the same gap into one run and keeps later times in order', () => {
    const paris = policy({ frequency: 'Daily', times: ['02:30', '03:30', '03:15'] }, 'Europe/Paris');
    // On 2024-03-31, 02:30 → 03:30 CEST, the same instant as 03:30; 03:15 CEST comes first.
    assert.deepEqual(isoRuns(paris, '2024-03-30T23:00:00Z', 3),
      ['2024-03-31T01:15:00.000Z', '2024-03-31T01:30:00.000Z', '2024-04-01T00:30:00.000Z']);
  });

  it('runs an ambiguous fall-back time once, at its first occurrence', () => {
    const paris = policy({ frequency: 'Daily', times: ['02:30'] }, 'Europe/Paris');
    assert.deepEqual(isoRuns(paris, '2024-10-26T12:00:00Z', 2), ['2024-10-27T00:30:00.000Z', '2024-10-28T01:30:00.000Z']);
    // Between the two occurrences nothing more runs that day.
    assert.deepEqual(isoRuns(paris, '2024-10-27T00:30:00Z', 1), ['2024-10-28T01:30:00.000Z']);
  });

  it('handles weekly DST days in New York', () => {
    const ny = policy({ frequency: 'Weekly', weekDays: ['Sunday'], times: ['02:00'] }, 'America/New_York');
    assert.deepEqual(isoRuns(ny, '2024-03-01T00:00:00Z', 3),
      ['2024-03-03T07:00:00.000Z', '2024-03-10T07:00:00.000Z', '2024-03-17T06:00:00.000Z']);
  });

  it('returns nothing for count 0 and refuses a bad count', () => {
    const daily = policy({ frequency: 'Daily', times: ['22:00'] });
    assert.deepEqual(nextRuns(daily, new Date('2024-01-01T00:00:00Z'), 0), []);
    for (const bad of [-1, 1.5, Number.NaN]) {
      assert.throws(() => nextRuns(daily, new Date('2024-01-01T00:00:00Z'), bad),
        (error: unknown) => error instanceof CoffreError && error.code === 'InvalidArgument');
    }
  });

  it('matches a naive enumeration of scheduled instants (UTC and fixed-offset zones)', () => {
    const zones: [string, number][] = [['UTC', 0], ['Etc/GMT-3', 3], ['Etc/GMT+7', -7], ['Asia/Kolkata', 5.5]];
    const timeArb = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
      .map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);
    fc.assert(fc.property(
      fc.uniqueArray(timeArb, { minLength: 1, maxLength: 3 }),
      fc.option(fc.uniqueArray(fc.constantFrom(...WEEK_DAYS), { minLength: 1, maxLength: 7 }), { nil: undefined }),
      fc.constantFrom(...zones),
      fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2040, 0, 1) }),
      fc.integer({ min: 1, max: 20 }),
      (times, weekDays, [zone, offsetHours], fromMs, count) => {
        const p = policy(weekDays === undefined ? { frequency: 'Daily', times } : { frequency: 'Weekly', weekDays, times }, zone);
        const offset = offsetHours * 3_600_000;
        const expected: number[] = [];
        const firstDay = Math.floor((fromMs + offset) / 86_400_000) - 1;
        for (let day = firstDay; expected.length < count + 3; day += 1) {
          const weekday = WEEK_DAYS[new Date(day * 86_400_000).getUTCDay()] as WeekDay;
          if (weekDays !== undefined && !weekDays.includes(weekday)) continue;
          for (const time of times) {
            const [h = 0, m = 0] = time.split(':').map(Number);
            const ms = day * 86_400_000 + (h * 60 + m) * 60_000 - offset;
            if (ms > fromMs) expected.push(ms);
          }
        }
        expected.sort((a, b) => a - b);
        assert.deepEqual(nextRuns(p, new Date(fromMs), count).map((d) => d.getTime()), expected.slice(0, count));
      },
    ), { numRuns: 300 });
  });

  it('always returns increasing instants after `from` on scheduled local days (Paris)', () => {
    fc.assert(fc.property(
      fc.integer({ min: Date.UTC(2015, 0, 1), max: Date.UTC(2035, 0, 1) }),
      fc.uniqueArray(fc.constantFrom('00:30', '01:59', '02:00', '02:30', '03:00', '12:00', '23:59'), { minLength: 1, maxLength: 3 }),
      (fromMs, times) => {
        const runs = nextRuns(policy({ frequency: 'Weekly', weekDays: ['Sunday', 'Monday'], times }, 'Europe/Paris'), new Date(fromMs), 10);
        assert.equal(runs.length, 10);
        let previous = fromMs;
        for (const run of runs) {
          assert.ok(run.getTime() > previous);
          previous = run.getTime();
          const weekday = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Paris', weekday: 'long' }).format(run);
          assert.ok(weekday === 'Sunday' || weekday === 'Monday', weekday);
        }
      },
    ), { numRuns: 200 });
  });
});

describe('nextRuns of an hourly schedule', () => {
  const hourly = (intervalHours: number, windowStart = '00:00', windowHours = 24, timeZone = 'UTC') =>
    policy({ frequency: 'Hourly', intervalHours, windowStart, windowHours }, timeZone);

  it('runs every 4 hours round the clock', () => {
    assert.deepEqual(isoRuns(hourly(4), '2024-01-01T05:00:00Z', 6), [
      '2024-01-01T08:00:00.000Z', '2024-01-01T12:00:00.000Z', '2024-01-01T16:00:00.000Z',
      '2024-01-01T20:00:00.000Z', '2024-01-02T00:00:00.000Z', '2024-01-02T04:00:00.000Z',
    ]);
  });

  it('stays inside its window, also one that crosses midnight', () => {
    assert.deepEqual(isoRuns(hourly(2, '08:00', 6), '2024-01-01T00:00:00Z', 4),
      ['2024-01-01T08:00:00.000Z', '2024-01-01T10:00:00.000Z', '2024-01-01T12:00:00.000Z', '2024-01-02T08:00:00.000Z']);
    // 22:00 for 5 hours every 2 hours: 22:00, 00:00, 02:00 of the next date.
    assert.deepEqual(isoRuns(hourly(2, '22:00', 5), '2024-01-01T12:00:00Z', 4),
      ['2024-01-01T22:00:00.000Z', '2024-01-02T00:00:00.000Z', '2024-01-02T02:00:00.000Z', '2024-01-02T22:00:00.000Z']);
  });

  it('follows the wall clock across a DST change (Paris): a run in the gap runs when it ends', () => {
    // 2024-03-31: 01:00 CET, then 02:00 does not exist (03:00 CEST, the instant of the 03:00 run: one run).
    assert.deepEqual(isoRuns(hourly(1, '01:00', 3, 'Europe/Paris'), '2024-03-30T23:30:00Z', 5), [
      '2024-03-31T00:00:00.000Z', '2024-03-31T01:00:00.000Z',
      '2024-03-31T23:00:00.000Z', '2024-04-01T00:00:00.000Z', '2024-04-01T01:00:00.000Z',
    ]);
  });

  it('matches a naive enumeration of window runs (UTC and fixed-offset zones)', () => {
    const zones: [string, number][] = [['UTC', 0], ['Etc/GMT-3', 3], ['Etc/GMT+7', -7], ['Asia/Kolkata', 5.5]];
    fc.assert(fc.property(
      fc.constantFrom(1, 2, 3, 4, 6, 8, 12),
      fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }),
      fc.integer({ min: 1, max: 24 }),
      fc.constantFrom(...zones),
      fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2040, 0, 1) }),
      fc.integer({ min: 1, max: 40 }),
      (interval, h, m, windowHours, [zone, offsetHours], fromMs, count) => {
        const start = `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`;
        const offset = offsetHours * 3_600_000;
        const expected: number[] = [];
        const firstDay = Math.floor((fromMs + offset) / 86_400_000) - 2;
        for (let day = firstDay; expected.length < count + 30; day += 1) {
          for (let k = 0; k * interval < windowHours; k++) {
            const ms = day * 86_400_000 + ((h + k * interval) * 60 + m) * 60_000 - offset;
            if (ms > fromMs) expected.push(ms);
          }
        }
        expected.sort((a, b) => a - b);
        assert.deepEqual(nextRuns(hourly(interval, start, windowHours, zone), new Date(fromMs), count).map((d) => d.getTime()), expected.slice(0, count));
      },
    ), { numRuns: 300 });
  });

  it('gives ceil(window / interval) distinct, increasing runs a day in Paris, whatever the day', () => {
    fc.assert(fc.property(
      fc.integer({ min: Date.UTC(2015, 0, 1), max: Date.UTC(2035, 0, 1) }),
      fc.constantFrom(1, 2, 3, 4, 6, 8, 12),
      (fromMs, interval) => {
        const runs = nextRuns(hourly(interval, '00:00', 24, 'Europe/Paris'), new Date(fromMs), 60);
        assert.equal(runs.length, 60);
        let previous = fromMs;
        for (const run of runs) {
          assert.ok(run.getTime() > previous);
          // Never more than an interval plus a DST hour apart.
          assert.ok(run.getTime() - previous <= (interval + 1) * 3_600_000 || previous === fromMs);
          previous = run.getTime();
        }
      },
    ), { numRuns: 200 });
  });
});
