import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CoffreError } from '../core/errors.js';
import { bandwidthAt, formatRate, parseRate, validateBandwidthSchedule, type BandwidthSchedule } from './bandwidth.js';
import { WEEK_DAYS, type WeekDay } from './policy.js';

const MBIT20 = 2_500_000;
/** The habit of the service we model: 20 Mbit/s from 08:00 to 18:00 on workdays, unlimited otherwise. */
const office = validateBandwidthSchedule({ timeZone: 'Europe/Paris', workStart: '08:00', workEnd: '18:00', workBytesPerSecond: MBIT20, otherBytesPerSecond: null });

const at = (iso: string) => bandwidthAt(office, new Date(iso));

function invalid(input: unknown, fragment: string): void {
  assert.throws(() => validateBandwidthSchedule(input), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument' && e.message.includes(fragment));
}

describe('bandwidthAt', () => {
  it('limits work hours of work days, in the schedule\'s time zone', () => {
    // 2026-03-02 is a Monday; Paris is UTC+1 in March before the change.
    assert.deepEqual(at('2026-03-02T07:00:00Z'), { bytesPerSecond: MBIT20, workHours: true, until: new Date('2026-03-02T17:00:00Z') });
    assert.deepEqual(at('2026-03-02T06:59:59Z'), { bytesPerSecond: null, workHours: false, until: new Date('2026-03-02T07:00:00Z') });
    // 18:00 itself is outside: the window's end is exclusive; the next start is Tuesday 08:00.
    assert.deepEqual(at('2026-03-02T17:00:00Z'), { bytesPerSecond: null, workHours: false, until: new Date('2026-03-03T07:00:00Z') });
  });

  it('leaves week-ends unlimited until Monday morning', () => {
    // Friday evening, Saturday noon, Sunday night: all unlimited until Monday 08:00 Paris.
    for (const iso of ['2026-03-06T18:30:00Z', '2026-03-07T11:00:00Z', '2026-03-08T22:00:00Z']) {
      assert.deepEqual(at(iso), { bytesPerSecond: null, workHours: false, until: new Date('2026-03-09T07:00:00Z') });
    }
  });

  it('moves the window with the clocks at a DST change', () => {
    // Monday 2026-03-30 is in summer time (UTC+2): 08:00 Paris is 06:00Z.
    assert.equal(at('2026-03-30T06:00:00Z').workHours, true);
    assert.equal(at('2026-03-30T05:59:00Z').workHours, false);
    assert.deepEqual(at('2026-03-27T17:30:00Z').until, new Date('2026-03-30T06:00:00Z'));
  });

  it('never changes without work days', () => {
    const s = validateBandwidthSchedule({ workDays: [], workBytesPerSecond: MBIT20, otherBytesPerSecond: 1_000_000 });
    assert.deepEqual(bandwidthAt(s, new Date('2026-03-02T10:00:00Z')), { bytesPerSecond: 1_000_000, workHours: false, until: null });
  });

  it('matches a naive model, and holds its answer until `until` (fixed-offset zones)', () => {
    const zones: [string, number][] = [['UTC', 0], ['Etc/GMT-3', 3], ['Asia/Kolkata', 5.5], ['Etc/GMT+7', -7]];
    const hhmm = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 })).map(([h, m]) => h * 60 + m);
    fc.assert(fc.property(
      fc.constantFrom(...zones), fc.uniqueArray(fc.constantFrom(...WEEK_DAYS), { maxLength: 7 }), hhmm, hhmm,
      fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
      ([zone, offsetHours], workDays, a, b, ms) => {
        fc.pre(a !== b);
        const [start, end] = a < b ? [a, b] : [b, a];
        const clock = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
        const s: BandwidthSchedule = validateBandwidthSchedule({ timeZone: zone, workDays, workStart: clock(start), workEnd: clock(end), workBytesPerSecond: MBIT20, otherBytesPerSecond: null });
        const local = new Date(ms + offsetHours * 3_600_000);
        const minute = local.getUTCHours() * 60 + local.getUTCMinutes();
        const work = workDays.includes(WEEK_DAYS[local.getUTCDay()] as WeekDay) && minute >= start && minute < end;
        const now = bandwidthAt(s, new Date(ms));
        assert.equal(now.workHours, work);
        assert.equal(now.bytesPerSecond, work ? MBIT20 : null);
        if (workDays.length === 0) { assert.equal(now.until, null); return; }
        assert.ok(now.until && now.until.getTime() > ms, 'until lies ahead');
        // The same answer holds just before `until`, and the other one from `until` on.
        assert.equal(bandwidthAt(s, new Date(now.until.getTime() - 1)).workHours, work);
        assert.equal(bandwidthAt(s, now.until).workHours, !work);
        assert.ok(now.until.getTime() - ms <= 8 * 86_400_000);
      },
    ), { numRuns: 400 });
  });
});

describe('validateBandwidthSchedule', () => {
  it('fills in Monday to Friday, 08:00-18:00, UTC and unlimited off hours', () => {
    assert.deepEqual(validateBandwidthSchedule({ workBytesPerSecond: MBIT20 }), {
      timeZone: 'UTC', workDays: ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday'], workStart: '08:00', workEnd: '18:00', workBytesPerSecond: MBIT20, otherBytesPerSecond: null,
    });
  });

  it('refuses what it cannot apply, naming the field', () => {
    invalid({ workBytesPerSecond: 1000 }, 'workBytesPerSecond');
    invalid({ workBytesPerSecond: 200_000_000 }, '1023 Mbit/s');
    invalid({ workBytesPerSecond: MBIT20, workStart: '18:00', workEnd: '08:00' }, 'after workStart');
    invalid({ workBytesPerSecond: MBIT20, workDays: ['Monday', 'Monday'] }, 'repeat');
    invalid({ workBytesPerSecond: MBIT20, workDays: ['Lundi'] }, 'workDays.0');
    invalid({ workBytesPerSecond: MBIT20, timeZone: '+01:00' }, 'timeZone');
    invalid({ workBytesPerSecond: MBIT20, extra: 1 }, 'extra');
  });
});

describe('parseRate', () => {
  it('reads the units people write', () => {
    assert.equal(parseRate('20Mbit'), 2_500_000);
    assert.equal(parseRate('20 Mbps'), 2_500_000);
    assert.equal(parseRate('20mbit/s'), 2_500_000);
    assert.equal(parseRate('2MiB'), 2 * 1024 * 1024);
    assert.equal(parseRate('512Kbit'), 64_000);
    assert.equal(parseRate('750000'), 750_000);
    assert.equal(parseRate('unlimited'), null);
    assert.equal(formatRate(2_500_000), '2.50 MB/s (20 Mbit/s)');
    assert.equal(formatRate(null), 'unlimited');
  });

  it('refuses what is not a rate or lies outside 512 Kbit/s to 1023 Mbit/s', () => {
    for (const bad of ['fast', '20 parsecs', '-5Mbit', '100Kbit', '2Gbit', '']) {
      assert.throws(() => parseRate(bad), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument', bad);
    }
  });
});
