import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  addDays, addMonths, addYears, dayNumber, daysInMonth, fromDayNumber, fromLocal, isValidTimeZone,
  parseLocalDate, toLocal, weekdayOf,
} from './zoned-time.js';

const iso = (date: Date) => date.toISOString();

describe('toLocal', () => {
  it('reads Paris wall clocks in winter (+1) and summer (+2)', () => {
    assert.deepEqual(toLocal(new Date('2024-01-15T12:34:56.789Z'), 'Europe/Paris'),
      { year: 2024, month: 1, day: 15, hour: 13, minute: 34, second: 56, millisecond: 789, weekday: 1 });
    assert.deepEqual(toLocal(new Date('2024-07-14T23:30:00Z'), 'Europe/Paris'),
      { year: 2024, month: 7, day: 15, hour: 1, minute: 30, second: 0, millisecond: 0, weekday: 1 });
  });

  it('crosses the date line the right way', () => {
    const local = toLocal(new Date('2024-12-31T20:00:00Z'), 'Pacific/Kiritimati'); // UTC+14
    assert.deepEqual([local.year, local.month, local.day, local.hour], [2025, 1, 1, 10]);
    const west = toLocal(new Date('2024-01-01T05:00:00Z'), 'America/New_York');
    assert.deepEqual([west.year, west.month, west.day, west.hour, west.weekday], [2024, 1, 1, 0, 1]);
  });
});

describe('fromLocal', () => {
  it('converts ordinary wall times', () => {
    assert.equal(iso(fromLocal({ year: 2024, month: 1, day: 15, hour: 2, minute: 30 }, 'Europe/Paris')), '2024-01-15T01:30:00.000Z');
    assert.equal(iso(fromLocal({ year: 2024, month: 7, day: 15, hour: 2, minute: 30 }, 'Europe/Paris')), '2024-07-15T00:30:00.000Z');
    assert.equal(iso(fromLocal({ year: 2024, month: 2, day: 29 }, 'UTC')), '2024-02-29T00:00:00.000Z');
  });

  it('moves a time in the spring-forward gap forward by the gap', () => {
    // Paris 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist → 03:30 CEST.
    const gap = fromLocal({ year: 2024, month: 3, day: 31, hour: 2, minute: 30 }, 'Europe/Paris');
    assert.equal(iso(gap), '2024-03-31T01:30:00.000Z');
    assert.deepEqual([toLocal(gap, 'Europe/Paris').hour, toLocal(gap, 'Europe/Paris').minute], [3, 30]);
    // New York 2024-03-10: 02:00 EST → 03:00 EDT.
    assert.equal(iso(fromLocal({ year: 2024, month: 3, day: 10, hour: 2, minute: 15 }, 'America/New_York')), '2024-03-10T07:15:00.000Z');
  });

  it('takes the earlier instant of an ambiguous fall-back time', () => {
    // Paris 2024-10-27: 03:00 CEST falls back to 02:00 CET; 02:30 happens at 00:30Z and 01:30Z.
    assert.equal(iso(fromLocal({ year: 2024, month: 10, day: 27, hour: 2, minute: 30 }, 'Europe/Paris')), '2024-10-27T00:30:00.000Z');
    assert.equal(iso(fromLocal({ year: 2024, month: 10, day: 27, hour: 3, minute: 0 }, 'Europe/Paris')), '2024-10-27T02:00:00.000Z');
    assert.equal(iso(fromLocal({ year: 2024, month: 11, day: 3, hour: 1, minute: 30 }, 'America/New_York')), '2024-11-03T05:30:00.000Z');
  });

  it('moves a whole skipped day forward (Samoa skipped 2011-12-30)', () => {
    assert.equal(iso(fromLocal({ year: 2011, month: 12, day: 30, hour: 12 }, 'Pacific/Apia')), '2011-12-30T22:00:00.000Z');
    assert.equal(toLocal(new Date('2011-12-30T22:00:00Z'), 'Pacific/Apia').day, 31);
  });

  it('round-trips any instant to its wall time and back (earlier instant when ambiguous)', () => {
    const zones = ['UTC', 'Europe/Paris', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kolkata', 'America/Santiago'];
    fc.assert(fc.property(
      fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2060, 0, 1) }), fc.constantFrom(...zones),
      (ms, zone) => {
        const local = toLocal(new Date(ms), zone);
        const back = fromLocal(local, zone);
        assert.deepEqual(toLocal(back, zone), local);
        // Only a fall-back repeat can map to an earlier instant, and repeats are at most 1 h long.
        assert.ok(back.getTime() <= ms && ms - back.getTime() <= 3_600_000);
      },
    ), { numRuns: 500 });
  });
});

describe('calendar arithmetic', () => {
  it('clamps month ends: Jan 31 + 1 month', () => {
    assert.deepEqual(addMonths({ year: 2024, month: 1, day: 31 }, 1), { year: 2024, month: 2, day: 29 });
    assert.deepEqual(addMonths({ year: 2023, month: 1, day: 31 }, 1), { year: 2023, month: 2, day: 28 });
    assert.deepEqual(addMonths({ year: 2023, month: 3, day: 31 }, 1), { year: 2023, month: 4, day: 30 });
    assert.deepEqual(addMonths({ year: 2023, month: 11, day: 30 }, 3), { year: 2024, month: 2, day: 29 });
    assert.deepEqual(addMonths({ year: 2023, month: 5, day: 15 }, -17), { year: 2021, month: 12, day: 15 });
  });

  it('maps Feb 29 + 1 year to Feb 28, + 4 years to Feb 29', () => {
    assert.deepEqual(addYears({ year: 2024, month: 2, day: 29 }, 1), { year: 2025, month: 2, day: 28 });
    assert.deepEqual(addYears({ year: 2024, month: 2, day: 29 }, 4), { year: 2028, month: 2, day: 29 });
    assert.deepEqual(addYears({ year: 2096, month: 2, day: 29 }, 4), { year: 2100, month: 2, day: 28 });
  });

  it('counts days across months, years and leap days', () => {
    assert.deepEqual(addDays({ year: 2024, month: 2, day: 28 }, 1), { year: 2024, month: 2, day: 29 });
    assert.deepEqual(addDays({ year: 2023, month: 12, day: 31 }, 1), { year: 2024, month: 1, day: 1 });
    assert.equal(dayNumber({ year: 2025, month: 1, day: 1 }) - dayNumber({ year: 2024, month: 1, day: 1 }), 366);
    assert.deepEqual(fromDayNumber(0), { year: 1970, month: 1, day: 1 });
    assert.equal(daysInMonth(2024, 2), 29);
    assert.equal(daysInMonth(1900, 2), 28);
    assert.equal(daysInMonth(2000, 2), 29);
    assert.equal(weekdayOf({ year: 2024, month: 3, day: 31 }), 0);
  });

  it('parses only real YYYY-MM-DD dates', () => {
    assert.deepEqual(parseLocalDate('2024-02-29'), { year: 2024, month: 2, day: 29 });
    for (const bad of ['2023-02-29', '2024-13-01', '2024-1-01', '2024-01-00', '20240101', '']) {
      assert.equal(parseLocalDate(bad), undefined, bad);
    }
  });
});

describe('isValidTimeZone', () => {
  it('accepts IANA names and refuses the rest', () => {
    for (const zone of ['UTC', 'Europe/Paris', 'America/Argentina/Buenos_Aires', 'Etc/GMT-3']) assert.equal(isValidTimeZone(zone), true, zone);
    for (const zone of ['Mars/Olympus', '+01:00', '', 'Europe/Pariss']) assert.equal(isValidTimeZone(zone), false, zone);
  });
});
