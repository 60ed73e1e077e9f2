import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from '../core/errors.js';
import { defaultPolicy, validatePolicy } from './policy.js';

const nightly = {
  name: 'Nightly',
  timeZone: 'Europe/Paris',
  schedule: { frequency: 'Daily', times: ['02:30'] },
  retention: {
    daily: { count: 30 },
    weekly: { count: 12, weekDays: ['Sunday'] },
    monthly: { count: 60, days: [1, 'Last'] },
    yearly: { count: 10, months: ['January'], days: [1] },
  },
  instantRestoreDays: 2,
};

type Json = { [key: string]: unknown };

/** A deep copy of `base` with `value` at the dotted `path` (undefined deletes it). */
function withField(base: Json, path: string, value: unknown): Json {
  const copy = structuredClone(base);
  const keys = path.split('.');
  let node: Json = copy;
  for (const key of keys.slice(0, -1)) node = node[key] as Json;
  const last = keys[keys.length - 1] ?? '';
  if (value === undefined) delete node[last];
  else node[last] = value;
  return copy;
}

function assertInvalid(input: unknown, ...fragments: string[]): void {
  assert.throws(() => validatePolicy(input), (error: unknown) => {
    assert.ok(error instanceof CoffreError, 'a CoffreError');
    assert.equal(error.code, 'InvalidPolicy');
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" should mention "${fragment}"`);
    return true;
  });
}

describe('validatePolicy', () => {
  it('accepts the documented example unchanged', () => {
    assert.deepEqual(validatePolicy(nightly), nightly);
  });

  it('fills in UTC and 2 instant-restore days', () => {
    const policy = validatePolicy(withField(withField(nightly, 'timeZone', undefined), 'instantRestoreDays', undefined));
    assert.equal(policy.timeZone, 'UTC');
    assert.equal(policy.instantRestoreDays, 2);
  });

  it('accepts a weekly schedule with weekday-based monthly and yearly rules', () => {
    const weekly = {
      name: 'Weekly', schedule: { frequency: 'Weekly', weekDays: ['Sunday', 'Wednesday'], times: ['01:00', '13:00', '23:59'] },
      retention: {
        weekly: { count: 5163, weekDays: ['Sunday'] },
        monthly: { count: 1188, weeks: ['First', 'Last'], weekDays: ['Sunday'] },
        yearly: { count: 99, months: ['March', 'December'], weeks: ['Fourth'], weekDays: ['Wednesday'] },
      },
    };
    const policy = validatePolicy(weekly);
    assert.deepEqual(policy.schedule, weekly.schedule);
    assert.deepEqual(policy.retention.monthly, { count: 1188, weeks: ['First', 'Last'], weekDays: ['Sunday'] });
  });

  const bounds: [path: string, min: number, max: number][] = [
    ['retention.daily.count', 7, 9999],
    ['retention.weekly.count', 1, 5163],
    ['retention.monthly.count', 1, 1188],
    ['retention.yearly.count', 1, 99],
    ['instantRestoreDays', 1, 5],
  ];
  for (const [path, min, max] of bounds) {
    it(`bounds ${path} to ${min}–${max} and names it`, () => {
      assert.doesNotThrow(() => validatePolicy(withField(nightly, path, min)));
      assert.doesNotThrow(() => validatePolicy(withField(nightly, path, max)));
      for (const bad of [min - 1, max + 1, min + 0.5, String(min)]) {
        assertInvalid(withField(nightly, path, bad), path, `from ${min} to ${max}`);
      }
    });
  }

  it('requires a known IANA time zone', () => {
    for (const zone of ['Mars/Olympus', '+01:00', '', 42]) assertInvalid(withField(nightly, 'timeZone', zone), 'timeZone', 'IANA');
  });

  it('requires 1 to 3 distinct HH:MM times a day', () => {
    assertInvalid(withField(nightly, 'schedule.times', []), 'schedule.times', '1 to 3');
    assertInvalid(withField(nightly, 'schedule.times', ['01:00', '02:00', '03:00', '04:00']), 'schedule.times', '1 to 3');
    assertInvalid(withField(nightly, 'schedule.times', ['01:00', '01:00']), 'schedule.times', 'repeat');
    for (const time of ['24:00', '2:30', '02:60', '0230', 230]) {
      assertInvalid(withField(nightly, 'schedule.times', [time]), 'schedule.times.0', '00:00 to 23:59');
    }
  });

  it('refuses a daily rule with a weekly schedule', () => {
    const weekly = withField(nightly, 'schedule', { frequency: 'Weekly', weekDays: ['Sunday'], times: ['02:30'] });
    assertInvalid(weekly, 'retention.daily', 'weekly schedule');
    assert.doesNotThrow(() => validatePolicy(withField(weekly, 'retention.daily', undefined)));
  });

  it('keeps weekly rule days among the scheduled days', () => {
    const weekly = withField(withField(nightly, 'schedule', { frequency: 'Weekly', weekDays: ['Sunday'], times: ['02:30'] }),
      'retention.daily', undefined);
    assertInvalid(withField(weekly, 'retention.weekly.weekDays', ['Sunday', 'Monday']), 'retention.weekly.weekDays', 'Monday');
  });

  it('checks schedule week days against the frequency', () => {
    assertInvalid(withField(nightly, 'schedule', { frequency: 'Weekly', times: ['02:30'] }), 'schedule.weekDays');
    assertInvalid(withField(nightly, 'schedule', { frequency: 'Daily', weekDays: ['Sunday'], times: ['02:30'] }), 'schedule.weekDays', 'Weekly');
    assertInvalid(withField(nightly, 'schedule', { frequency: 'Monthly', times: ['02:30'] }), 'schedule.frequency', 'Daily');
    assertInvalid(withField(nightly, 'retention.weekly.weekDays', ['Sundy']), 'retention.weekly.weekDays.0', 'Sunday');
    assertInvalid(withField(nightly, 'retention.weekly.weekDays', []), 'retention.weekly.weekDays', 'at least one');
  });

  it('takes an hourly schedule with its interval, window start and window length', () => {
    const hourly = withField(nightly, 'schedule', { frequency: 'Hourly', intervalHours: 4 });
    assert.deepEqual(validatePolicy(hourly).schedule, { frequency: 'Hourly', intervalHours: 4, windowStart: '00:00', windowHours: 24 });
    const window = withField(nightly, 'schedule', { frequency: 'Hourly', intervalHours: 2, windowStart: '08:00', windowHours: 12 });
    assert.deepEqual(validatePolicy(window).schedule, { frequency: 'Hourly', intervalHours: 2, windowStart: '08:00', windowHours: 12 });
    for (const interval of [1, 2, 3, 4, 6, 8, 12]) {
      assert.doesNotThrow(() => validatePolicy(withField(hourly, 'schedule.intervalHours', interval)));
    }
  });

  it('refuses hourly schedules a day cannot repeat, and fields of the other frequencies', () => {
    const hourly = withField(nightly, 'schedule', { frequency: 'Hourly', intervalHours: 4 });
    for (const bad of [0, 5, 7, 24, 2.5, -4, '4']) assertInvalid(withField(hourly, 'schedule.intervalHours', bad), 'schedule.intervalHours', '1, 2, 3, 4, 6, 8, 12');
    assertInvalid(withField(hourly, 'schedule.intervalHours', undefined), 'schedule.intervalHours', 'must be given');
    assertInvalid(withField(hourly, 'schedule.windowHours', 0), 'schedule.windowHours', '1 to 24');
    assertInvalid(withField(hourly, 'schedule.windowHours', 25), 'schedule.windowHours', '1 to 24');
    assertInvalid(withField(hourly, 'schedule.windowStart', '24:00'), 'schedule.windowStart', '00:00 to 23:59');
    assertInvalid(withField(hourly, 'schedule.times', ['02:30']), 'schedule.times', 'hourly');
    assertInvalid(withField(hourly, 'schedule.weekDays', ['Sunday']), 'schedule.weekDays', 'every day');
    assertInvalid(withField(nightly, 'schedule.intervalHours', 4), 'schedule.intervalHours', '"Hourly"');
    assertInvalid(withField(nightly, 'schedule.windowHours', 4), 'schedule.windowHours', '"Hourly"');
    assertInvalid(withField(nightly, 'schedule.times', undefined), 'schedule.times', '1 to 3');
  });

  it('requires at least one retention rule', () => {
    assertInvalid(withField(nightly, 'retention', {}), 'retention', 'at least one rule');
  });

  it('requires exactly one day form in monthly and yearly rules', () => {
    assertInvalid(withField(nightly, 'retention.monthly', { count: 1, days: [1], weeks: ['First'], weekDays: ['Sunday'] }),
      'retention.monthly', 'not both');
    assertInvalid(withField(nightly, 'retention.monthly', { count: 1 }), 'retention.monthly', '"days"');
    assertInvalid(withField(nightly, 'retention.yearly', { count: 1, months: ['May'], weeks: ['First'] }), 'retention.yearly', '"weekDays"');
    assertInvalid(withField(nightly, 'retention.monthly.days', [0]), 'retention.monthly.days.0', '1 to 31');
    assertInvalid(withField(nightly, 'retention.monthly.days', [32]), 'retention.monthly.days.0', '1 to 31');
    assertInvalid(withField(nightly, 'retention.monthly.days', ['First']), 'retention.monthly.days.0', '"Last"');
    assertInvalid(withField(nightly, 'retention.yearly.months', []), 'retention.yearly.months', 'at least one');
    assertInvalid(withField(nightly, 'retention.yearly.months', ['Janvier']), 'retention.yearly.months.0', 'January');
  });

  it('refuses unknown fields and non-objects', () => {
    assertInvalid(withField(nightly, 'retention.weekly.weekdays', ['Sunday']), 'retention.weekly', 'weekdays');
    assertInvalid(withField(nightly, 'retention.hourly', { count: 1 }), 'retention', 'hourly');
    assertInvalid(null, 'policy');
    assertInvalid('Nightly', 'policy');
    assertInvalid(withField(nightly, 'name', ''), 'name', '1 to 128');
  });
});

describe('defaultPolicy', () => {
  it('is a valid daily policy keeping points 30 days in UTC', () => {
    const policy = defaultPolicy();
    assert.deepEqual(validatePolicy(policy), policy);
    assert.equal(policy.name, 'DefaultPolicy');
    assert.equal(policy.timeZone, 'UTC');
    assert.equal(policy.schedule.frequency, 'Daily');
    assert.deepEqual(policy.retention, { daily: { count: 30 } });
    assert.equal(policy.instantRestoreDays, 2);
  });
});
