/** The database policy: what it accepts, and each rule it enforces with a message that names the field. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from '../core/errors.js';
import { defaultDbPolicy, isDbPolicy, validateAnyPolicy, validateDbPolicy } from './db-policy.js';
import { dbRunsBetween } from './db-schedule.js';

const good = {
  name: 'Pg', workload: 'PostgreSQL', timeZone: 'Europe/Paris',
  full: { frequency: 'Weekly', weekDays: ['Sunday'], time: '01:00', retention: { weekly: { count: 12, weekDays: ['Sunday'] }, monthly: { count: 12, days: [1, 'Last'] } } },
  differential: { weekDays: ['Wednesday', 'Friday'], time: '01:00', retentionDays: 30 },
  log: { everyMinutes: 15, retentionDays: 14 },
};

function refused(input: unknown, field: RegExp): void {
  assert.throws(() => validateDbPolicy(input), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidPolicy' && field.test(e.message), String(field));
}

describe('database policy', () => {
  it('accepts weekly fulls with differentials and logs, and tells itself apart from a file policy', () => {
    const p = validateDbPolicy(good);
    assert.equal(p.full.time, '01:00');
    assert.deepEqual(p.differential?.weekDays, ['Wednesday', 'Friday']);
    assert.ok(isDbPolicy(validateAnyPolicy(good)));
    assert.ok(!isDbPolicy(validateAnyPolicy({ name: 'F', schedule: { frequency: 'Daily', times: ['02:00'] }, retention: { daily: { count: 7 } } })));
    assert.ok(isDbPolicy(validateDbPolicy(defaultDbPolicy())));
  });

  it('refuses two fulls a day', () => {
    refused({ ...good, full: { ...good.full, time: undefined, times: ['01:00', '13:00'] } }, /full\.times .*at most once a day/);
  });

  it('refuses a differential on a full\'s day, and differentials with daily fulls', () => {
    refused({ ...good, differential: { ...good.differential, weekDays: ['Sunday', 'Wednesday'] } }, /differential\.weekDays includes Sunday.*never runs on a full's day/);
    refused({ ...good, full: { frequency: 'Daily', time: '01:00', retention: { daily: { count: 7 } } } }, /differential needs weekly full backups/);
  });

  it('refuses a log interval under 15 minutes or over a day', () => {
    refused({ ...good, log: { everyMinutes: 14, retentionDays: 14 } }, /log\.everyMinutes must be at least 15/);
    refused({ ...good, log: { everyMinutes: 1441, retentionDays: 14 } }, /log\.everyMinutes must be at most 1440/);
  });

  it('keeps retention inside the allowed spans', () => {
    refused({ ...good, log: { everyMinutes: 60, retentionDays: 6 } }, /log\.retentionDays must be an integer from 7 to 35/);
    refused({ ...good, log: { everyMinutes: 60, retentionDays: 36 } }, /log\.retentionDays/);
    refused({ ...good, differential: { ...good.differential, retentionDays: 181 } }, /differential\.retentionDays must be an integer from 7 to 180/);
    refused({ ...good, full: { ...good.full, retention: { daily: { count: 30 } } } }, /full\.retention\.daily is not allowed with a weekly schedule/);
    refused({ ...good, full: { ...good.full, retention: {} } }, /full\.retention must have at least one rule/);
  });

  it('needs a time and a known workload', () => {
    refused({ ...good, full: { ...good.full, time: undefined } }, /full\.time/);
    refused({ ...good, workload: 'MySQL' }, /workload must be "PostgreSQL"/);
    refused({ ...good, extra: 1 }, /unknown field/);
  });
});

describe('database schedule', () => {
  const p = validateDbPolicy({ ...good, timeZone: 'UTC', log: { everyMinutes: 45, retentionDays: 7 } });
  it('runs fulls and differentials on their days, logs every interval from midnight', () => {
    // Saturday 2026-03-07 00:00 to Monday 2026-03-09 00:00.
    const from = new Date('2026-03-07T00:00:00Z');
    const until = new Date('2026-03-09T00:00:00Z');
    assert.deepEqual(dbRunsBetween(p, 'Full', from, until).map((d) => d.toISOString()), ['2026-03-08T01:00:00.000Z']);
    assert.deepEqual(dbRunsBetween(p, 'Differential', from, new Date('2026-03-12T00:00:00Z')).map((d) => d.toISOString()), ['2026-03-11T01:00:00.000Z']);
    const logs = dbRunsBetween(p, 'Log', from, new Date('2026-03-07T02:00:00Z')).map((d) => d.toISOString());
    assert.deepEqual(logs, ['2026-03-07T00:45:00.000Z', '2026-03-07T01:30:00.000Z']);
    // 45 does not divide a day: the last run of a day is at 23:15, then midnight again.
    const evening = dbRunsBetween(p, 'Log', new Date('2026-03-07T23:00:00Z'), new Date('2026-03-08T00:50:00Z')).map((d) => d.toISOString());
    assert.deepEqual(evening, ['2026-03-07T23:15:00.000Z', '2026-03-08T00:00:00.000Z', '2026-03-08T00:45:00.000Z']);
    assert.deepEqual(dbRunsBetween(validateDbPolicy({ ...good, log: undefined }), 'Log', from, until), []);
  });
});
