/** previousRun, the mirror of nextRuns that recovery point objectives are measured against. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { validatePolicy, WEEK_DAYS, type Policy } from './policy.js';
import { nextRuns, previousRun } from './schedule.js';

function policy(schedule: unknown, timeZone = 'UTC'): Policy {
  return validatePolicy({ name: 'P', timeZone, schedule, retention: { monthly: { count: 1, days: [1] } } });
}

describe('previousRun', () => {
  it('is the latest run strictly before the instant', () => {
    const daily = policy({ frequency: 'Daily', times: ['02:30'] });
    assert.equal(previousRun(daily, new Date('2026-03-02T07:00:00Z')).toISOString(), '2026-03-02T02:30:00.000Z');
    assert.equal(previousRun(daily, new Date('2026-03-02T02:30:00Z')).toISOString(), '2026-03-01T02:30:00.000Z');
    const weekly = policy({ frequency: 'Weekly', weekDays: ['Sunday'], times: ['23:30'] }, 'Europe/Paris');
    // 2024-01-07 is a Sunday (23:30 CET = 22:30Z); on Saturday the previous run is the Sunday before.
    assert.equal(previousRun(weekly, new Date('2024-01-13T12:00:00Z')).toISOString(), '2024-01-07T22:30:00.000Z');
  });

  it('leaves no run between it and the instant (random schedules, zones and instants)', () => {
    const timeArb = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
      .map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);
    fc.assert(fc.property(
      fc.uniqueArray(timeArb, { minLength: 1, maxLength: 3 }),
      fc.option(fc.uniqueArray(fc.constantFrom(...WEEK_DAYS), { minLength: 1, maxLength: 7 }), { nil: undefined }),
      fc.constantFrom('UTC', 'Europe/Paris', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kolkata'),
      fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2040, 0, 1) }),
      (times, weekDays, zone, atMs) => {
        const p = policy(weekDays === undefined ? { frequency: 'Daily', times } : { frequency: 'Weekly', weekDays, times }, zone);
        const prev = previousRun(p, new Date(atMs));
        assert.ok(prev.getTime() < atMs);
        // The reference: every run of the 9 days before, from nextRuns, the last one before the instant.
        const runs = nextRuns(p, new Date(atMs - 9 * 86_400_000), 40).filter((r) => r.getTime() < atMs);
        assert.equal(prev.getTime(), runs[runs.length - 1]!.getTime());
        assert.ok(nextRuns(p, prev, 1)[0]!.getTime() >= atMs);
      },
    ), { numRuns: 300 });
  });
});
