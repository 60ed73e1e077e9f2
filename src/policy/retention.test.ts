import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from '../core/errors.js';
import { validatePolicy, type Policy } from './policy.js';
import { diffRetention, evaluateRetention, expiryOf, type RetentionPoint, type RetentionResult } from './retention.js';

const DAY = 86_400_000;
const DAILY_0200 = { frequency: 'Daily', times: ['02:00'] };
const SUNDAYS_0200 = { frequency: 'Weekly', weekDays: ['Sunday'], times: ['02:00'] };

function policy(retention: unknown, schedule: unknown = DAILY_0200, timeZone = 'UTC'): Policy {
  return validatePolicy({ name: 'Test', timeZone, schedule, retention });
}

const at = (id: string, iso: string): RetentionPoint => ({ id, time: new Date(iso), kind: 'Scheduled' });

/** One scheduled point a day at 02:00 UTC from `first` to `last` inclusive, id = the date. */
function dailyPoints(first: string, last: string, step = 1): RetentionPoint[] {
  const points: RetentionPoint[] = [];
  for (let ms = Date.parse(`${first}T02:00:00Z`); ms <= Date.parse(`${last}T02:00:00Z`); ms += step * DAY) {
    points.push({ id: new Date(ms).toISOString().slice(0, 10), time: new Date(ms), kind: 'Scheduled' });
  }
  return points;
}

const byId = (results: RetentionResult[]) => new Map(results.map((r) => [r.id, r]));
const kept = (results: RetentionResult[]) => results.filter((r) => r.keep).map((r) => r.id);
const expiry = (results: RetentionResult[], id: string) => byId(results).get(id)?.expiresAt.toISOString();
const rulesOf = (results: RetentionResult[], id: string) => byId(results).get(id)?.rules;

describe('evaluateRetention: rules', () => {
  it('keeps every scheduled point `count` days under the daily rule', () => {
    const results = evaluateRetention(policy({ daily: { count: 7 } }), dailyPoints('2024-01-01', '2024-01-20'), new Date('2024-01-20T03:00:00Z'));
    assert.deepEqual(kept(results), dailyPoints('2024-01-14', '2024-01-20').map((p) => p.id));
    assert.equal(expiry(results, '2024-01-01'), '2024-01-08T02:00:00.000Z');
    assert.ok(results.every((r) => r.rules.length === 1 && r.rules[0] === 'daily'));
  });

  it('gives the weekly rule only the earliest point of a matching day', () => {
    const p = policy({ daily: { count: 7 }, weekly: { count: 4, weekDays: ['Sunday'] } }, { frequency: 'Daily', times: ['01:00', '13:00'] });
    const late = at('late', '2024-03-03T13:00:00Z');
    const early = at('early', '2024-03-03T01:00:00Z');
    const results = evaluateRetention(p, [late, early], new Date('2024-03-04T00:00:00Z'));
    assert.deepEqual(results.map((r) => r.id), ['late', 'early'], 'input order');
    assert.deepEqual(rulesOf(results, 'early'), ['daily', 'weekly']);
    assert.equal(expiry(results, 'early'), '2024-03-31T01:00:00.000Z');
    assert.deepEqual(rulesOf(results, 'late'), ['daily']);
    assert.equal(expiry(results, 'late'), '2024-03-10T13:00:00.000Z');
    // When the 01:00 backup is missing, the 13:00 one is the day's earliest.
    assert.deepEqual(rulesOf(evaluateRetention(p, [late], new Date('2024-03-04T00:00:00Z')), 'late'), ['daily', 'weekly']);
  });

  it('expires a point no rule keeps at its own time', () => {
    const results = evaluateRetention(policy({ weekly: { count: 4, weekDays: ['Sunday'] } }, SUNDAYS_0200),
      [at('monday', '2024-03-04T02:00:00Z')], new Date('2024-03-04T02:00:00Z'));
    assert.deepEqual(results, [{ id: 'monday', expiresAt: new Date('2024-03-04T02:00:00Z'), keep: false, rules: [] }]);
  });

  it('takes the latest expiry of all matching rules', () => {
    const p = policy({
      daily: { count: 30 }, weekly: { count: 2, weekDays: ['Monday'] },
      monthly: { count: 2, days: [1] }, yearly: { count: 1, months: ['January'], days: [1] },
    });
    const [result] = evaluateRetention(p, [at('new-year', '2024-01-01T02:00:00Z')], new Date('2024-06-01T00:00:00Z'));
    assert.deepEqual(result?.rules, ['daily', 'weekly', 'monthly', 'yearly']);
    assert.equal(result?.expiresAt.toISOString(), '2025-01-01T02:00:00.000Z');
    assert.equal(result?.keep, true);
  });

  it('matches day 1 and "Last" of each month and clamps Jan 31 + 1 month', () => {
    const p = policy({ monthly: { count: 1, days: [1, 'Last'] } });
    const results = evaluateRetention(p, [...dailyPoints('2023-01-01', '2023-03-31'), ...dailyPoints('2024-01-31', '2024-01-31')],
      new Date('2023-01-01T00:00:00Z'));
    assert.deepEqual(results.filter((r) => r.rules.length > 0).map((r) => r.id),
      ['2023-01-01', '2023-01-31', '2023-02-01', '2023-02-28', '2023-03-01', '2023-03-31', '2024-01-31']);
    assert.equal(expiry(results, '2023-01-31'), '2023-02-28T02:00:00.000Z');
    assert.equal(expiry(results, '2024-01-31'), '2024-02-29T02:00:00.000Z');
    assert.equal(expiry(results, '2023-03-31'), '2023-04-30T02:00:00.000Z');
  });

  it('does not match day 31 in a 30-day month (only "Last" means month end)', () => {
    const results = evaluateRetention(policy({ monthly: { count: 1, days: [31] } }), dailyPoints('2023-03-01', '2023-05-31'), new Date(0));
    assert.deepEqual(results.filter((r) => r.rules.length > 0).map((r) => r.id), ['2023-03-31', '2023-05-31']);
  });

  it('finds the first, second, fourth and last Sunday of a month', () => {
    const march = dailyPoints('2024-03-01', '2024-03-31'); // Sundays: 3, 10, 17, 24, 31
    const february = dailyPoints('2024-02-01', '2024-02-29'); // Sundays: 4, 11, 18, 25
    const matched = (weeks: string[], points: RetentionPoint[]) =>
      evaluateRetention(policy({ monthly: { count: 1, weeks, weekDays: ['Sunday'] } }), points, new Date(0))
        .filter((r) => r.rules.includes('monthly')).map((r) => r.id);
    assert.deepEqual(matched(['First'], march), ['2024-03-03']);
    assert.deepEqual(matched(['Second'], march), ['2024-03-10']);
    assert.deepEqual(matched(['Fourth'], march), ['2024-03-24']);
    assert.deepEqual(matched(['Last'], march), ['2024-03-31']);
    assert.deepEqual(matched(['First', 'Last'], march), ['2024-03-03', '2024-03-31']);
    // With four Sundays the fourth is also the last.
    assert.deepEqual(matched(['Fourth'], february), ['2024-02-25']);
    assert.deepEqual(matched(['Last'], february), ['2024-02-25']);
  });

  it('keeps Feb 29 one year until Feb 28 and matches yearly month and day', () => {
    const p = policy({ yearly: { count: 1, months: ['February'], days: [29, 'Last'] } });
    const results = evaluateRetention(p, [...dailyPoints('2023-02-27', '2023-03-01'), ...dailyPoints('2024-02-27', '2024-03-01')], new Date(0));
    assert.deepEqual(results.filter((r) => r.rules.length > 0).map((r) => r.id), ['2023-02-28', '2024-02-29']);
    assert.equal(expiry(results, '2024-02-29'), '2025-02-28T02:00:00.000Z');
    assert.equal(expiry(results, '2023-02-28'), '2024-02-28T02:00:00.000Z');
  });

  it('matches yearly weekday rules (last Sunday of October)', () => {
    const p = policy({ yearly: { count: 3, months: ['October'], weeks: ['Last'], weekDays: ['Sunday'] } });
    const results = evaluateRetention(p, dailyPoints('2024-09-01', '2024-11-30'), new Date(0));
    assert.deepEqual(results.filter((r) => r.rules.length > 0).map((r) => r.id), ['2024-10-27']);
    assert.equal(expiry(results, '2024-10-27'), '2027-10-27T02:00:00.000Z');
  });
});

describe('evaluateRetention: time zones and DST (Europe/Paris)', () => {
  const paris = (retention: unknown) => policy(retention, { frequency: 'Daily', times: ['00:30'] }, 'Europe/Paris');

  it('reads rule days on local clocks, across the spring-forward night', () => {
    const results = evaluateRetention(paris({ daily: { count: 7 }, weekly: { count: 1, weekDays: ['Sunday'] } }), [
      at('sun-0030', '2024-03-30T23:30:00Z'), // Sunday 31 March 00:30 CET (UTC Saturday)
      at('sun-noon', '2024-03-31T10:00:00Z'), // Sunday 12:00 CEST: not the day's earliest
      at('mon-0030', '2024-03-31T22:30:00Z'), // Monday 1 April 00:30 CEST (UTC Sunday)
    ], new Date('2024-04-01T00:00:00Z'));
    assert.deepEqual(results.map((r) => r.rules), [['daily', 'weekly'], ['daily'], ['daily']]);
    // One week of local days is 7 × 24 h minus the lost hour: 00:30 CET → 00:30 CEST.
    assert.equal(expiry(results, 'sun-0030'), '2024-04-06T22:30:00.000Z');
  });

  it('keeps the wall-clock time of expiries across DST changes', () => {
    const p = paris({ daily: { count: 7 } });
    const results = evaluateRetention(p, [
      at('spring', '2024-03-28T02:00:00Z'), // 03:00 CET → 03:00 CEST seven days later
      at('autumn', '2024-10-22T01:00:00Z'), // 03:00 CEST → 03:00 CET
      at('into-gap', '2024-03-24T01:30:00Z'), // 02:30 CET → 02:30 on 31 March does not exist: 03:30 CEST
      at('ambiguous', '2024-10-20T00:30:00Z'), // 02:30 CEST → 02:30 on 27 October happens twice: the first
    ], new Date(0));
    assert.equal(expiry(results, 'spring'), '2024-04-04T01:00:00.000Z');
    assert.equal(expiry(results, 'autumn'), '2024-10-29T02:00:00.000Z');
    assert.equal(expiry(results, 'into-gap'), '2024-03-31T01:30:00.000Z');
    assert.equal(expiry(results, 'ambiguous'), '2024-10-27T00:30:00.000Z');
  });

  it('treats both 02:30 points of the fall-back night as one local day', () => {
    const results = evaluateRetention(paris({ daily: { count: 7 }, weekly: { count: 2, weekDays: ['Sunday'] } }), [
      at('second', '2024-10-27T01:30:00Z'), // 02:30 CET
      at('first', '2024-10-27T00:30:00Z'), // 02:30 CEST
    ], new Date(0));
    assert.deepEqual(results.map((r) => r.rules), [['daily'], ['daily', 'weekly']]);
    assert.equal(expiry(results, 'first'), '2024-11-10T01:30:00.000Z');
  });
});

describe('evaluateRetention: on-demand points', () => {
  const p = policy({ daily: { count: 7 }, weekly: { count: 4, weekDays: ['Sunday'] } }, DAILY_0200, 'Europe/Paris');
  const onDemand = (id: string, iso: string, retainUntil?: string): RetentionPoint =>
    ({ id, time: new Date(iso), kind: 'OnDemand', ...(retainUntil === undefined ? {} : { retainUntil }) });

  it('expires at the start of the day after retainUntil in the policy zone', () => {
    const summer = onDemand('summer', '2024-06-01T09:00:00Z', '2024-06-10');
    assert.deepEqual(evaluateRetention(p, [summer], new Date('2024-06-10T21:59:59Z')),
      [{ id: 'summer', expiresAt: new Date('2024-06-10T22:00:00Z'), keep: true, rules: [] }]);
    assert.equal(evaluateRetention(p, [summer], new Date('2024-06-10T22:00:00Z'))[0]?.keep, false);
    assert.equal(expiryOf(onDemand('winter', '2024-01-01T09:00:00Z', '2024-01-10'), p).toISOString(), '2024-01-10T23:00:00.000Z');
  });

  it('ignores the rules and does not compete for the earliest point of the day', () => {
    const results = evaluateRetention(p, [
      onDemand('manual', '2024-03-02T23:10:00Z', '2024-03-03'), // Sunday 00:10 CET
      at('nightly', '2024-03-03T01:00:00Z'), // Sunday 02:00 CET
    ], new Date('2024-03-03T12:00:00Z'));
    assert.deepEqual(results.map((r) => r.rules), [[], ['daily', 'weekly']]);
  });

  it('refuses an on-demand point without a real retain-until date', () => {
    for (const retainUntil of [undefined, '2024-02-30', '10/06/2024']) {
      assert.throws(() => evaluateRetention(p, [onDemand('x', '2024-01-01T00:00:00Z', retainUntil)], new Date(0)),
        (error: unknown) => error instanceof CoffreError && error.code === 'InvalidArgument' && error.message.includes('retainUntil'));
    }
  });
});

describe('expiryOf and diffRetention', () => {
  it('evaluates a scheduled point with its day-mates', () => {
    const p = policy({ daily: { count: 7 }, weekly: { count: 4, weekDays: ['Sunday'] } }, { frequency: 'Daily', times: ['01:00', '13:00'] });
    const late = at('late', '2024-03-03T13:00:00Z');
    assert.equal(expiryOf(late, p).toISOString(), '2024-03-31T13:00:00.000Z');
    assert.equal(expiryOf(late, p, [at('early', '2024-03-03T01:00:00Z'), late]).toISOString(), '2024-03-10T13:00:00.000Z');
  });

  it('reports points that lose their retention and expiries that move', () => {
    const r = (id: string, iso: string): RetentionResult => ({ id, expiresAt: new Date(iso), keep: true, rules: [] });
    const now = new Date('2024-06-01T00:00:00Z');
    const before = [r('a', '2024-07-01T00:00:00Z'), r('b', '2024-07-01T00:00:00Z'), r('c', '2024-07-01T00:00:00Z'),
      r('d', '2024-05-01T00:00:00Z'), r('e', '2024-05-01T00:00:00Z'), r('f', '2024-07-01T00:00:00Z')];
    const after = [r('a', '2024-05-31T00:00:00Z'), r('b', '2024-08-01T00:00:00Z'), r('c', '2024-07-01T00:00:00Z'),
      r('d', '2024-09-01T00:00:00Z'), r('e', '2024-05-02T00:00:00Z')];
    assert.deepEqual(diffRetention(before, after, now), {
      deleted: ['a', 'f'],
      changed: [
        { id: 'b', from: new Date('2024-07-01T00:00:00Z'), to: new Date('2024-08-01T00:00:00Z') },
        { id: 'd', from: new Date('2024-05-01T00:00:00Z'), to: new Date('2024-09-01T00:00:00Z') },
      ],
    });
  });
});

describe('SPEC: retention changes apply retroactively', () => {
  const now = new Date('2024-06-30T12:00:00Z');
  const history = dailyPoints('2023-01-01', '2024-06-30');

  it('(1) shortening removes points now out of range; lengthening extends existing points', () => {
    const original = policy({ daily: { count: 30 }, weekly: { count: 12, weekDays: ['Sunday'] }, monthly: { count: 12, days: [1] } });
    const shorter = policy({ daily: { count: 7 }, weekly: { count: 4, weekDays: ['Sunday'] }, monthly: { count: 3, days: [1] } });
    const before = evaluateRetention(original, history, now);
    const after = evaluateRetention(shorter, history, now);
    assert.deepEqual(kept(after), ['2024-04-01', '2024-05-01', '2024-06-01', '2024-06-09', '2024-06-16', '2024-06-23',
      ...dailyPoints('2024-06-24', '2024-06-30').map((p) => p.id)]);
    const diff = diffRetention(before, after, now);
    const keptAfter = new Set(kept(after));
    assert.deepEqual(diff.deleted, kept(before).filter((id) => !keptAfter.has(id)));
    assert.ok(diff.deleted.includes('2024-06-10') && diff.deleted.includes('2024-04-14') && diff.deleted.includes('2023-08-01'));

    const longer = policy({ daily: { count: 60 }, weekly: { count: 12, weekDays: ['Sunday'] }, monthly: { count: 12, days: [1] } });
    const extended = evaluateRetention(longer, history, now);
    assert.ok(history.every((_, i) => (extended[i]?.expiresAt.getTime() ?? 0) >= (before[i]?.expiresAt.getTime() ?? 0)));
    assert.equal(expiry(extended, '2024-06-10'), '2024-08-09T02:00:00.000Z');
    assert.equal(byId(extended).get('2024-05-15')?.keep, true, 'a point 46 days old is kept again');
    const growth = diffRetention(before, extended, now);
    assert.deepEqual(growth.deleted, []);
    assert.deepEqual(growth.changed.find((c) => c.id === '2024-06-10'),
      { id: '2024-06-10', from: new Date('2024-07-10T02:00:00Z'), to: new Date('2024-08-09T02:00:00Z') });
  });

  it('(2) daily → weekly schedule removes the existing daily points no rule keeps', () => {
    const daily = policy({ daily: { count: 30 }, weekly: { count: 12, weekDays: ['Sunday'] } });
    const weekly = policy({ weekly: { count: 12, weekDays: ['Sunday'] } }, SUNDAYS_0200);
    const recent = dailyPoints('2024-06-11', '2024-06-30');
    const before = evaluateRetention(daily, recent, now);
    const after = evaluateRetention(weekly, recent, now);
    assert.equal(kept(before).length, 20);
    assert.deepEqual(kept(after), ['2024-06-16', '2024-06-23', '2024-06-30']);
    const diff = diffRetention(before, after, now);
    assert.deepEqual(diff.deleted, recent.map((p) => p.id).filter((id) => !['2024-06-16', '2024-06-23', '2024-06-30'].includes(id)));
    assert.deepEqual(diff.changed, [], 'the Sunday points keep their 12 weeks');
    for (const id of diff.deleted) assert.deepEqual(byId(after).get(id)?.rules, []);
  });

  it('(3) weekly → daily keeps existing weekly points for the days the daily rule gives them', () => {
    const weekly = policy({ weekly: { count: 12, weekDays: ['Sunday'] } }, SUNDAYS_0200);
    const sundays = dailyPoints('2024-02-18', '2024-06-30', 7);
    const before = evaluateRetention(weekly, sundays, now);
    // 7 April + 12 weeks is 30 June 02:00, already past at noon.
    assert.deepEqual(kept(before), dailyPoints('2024-04-14', '2024-06-30', 7).map((p) => p.id));

    const dailyOnly = evaluateRetention(policy({ daily: { count: 30 } }), sundays, now);
    assert.deepEqual(kept(dailyOnly), ['2024-06-02', '2024-06-09', '2024-06-16', '2024-06-23', '2024-06-30']);
    assert.equal(expiry(dailyOnly, '2024-06-02'), '2024-07-02T02:00:00.000Z');
    const diff = diffRetention(before, dailyOnly, now);
    assert.deepEqual(diff.deleted, dailyPoints('2024-04-14', '2024-05-26', 7).map((p) => p.id));
    assert.equal(diff.changed.length, 5);

    // Keeping a weekly rule next to the new daily one leaves the Sunday points untouched.
    const both = evaluateRetention(policy({ daily: { count: 30 }, weekly: { count: 12, weekDays: ['Sunday'] } }), sundays, now);
    assert.deepEqual(diffRetention(before, both, now), { deleted: [], changed: [] });
  });
});
