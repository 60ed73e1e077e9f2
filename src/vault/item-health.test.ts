/** The health verdict and the recovery point objective, as tables of facts and instants. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validatePolicy } from '../policy/policy.js';
import { conditionsOf, rpoStatus, worst, type ItemFacts } from './item-health.js';

const H = 3_600_000;
const WINDOW = 4 * H;
const nightly = validatePolicy({ name: 'N', timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['02:30'] }, retention: { daily: { count: 30 } } });

function facts(over: Partial<ItemFacts> = {}): ItemFacts {
  return { createdAt: '2026-02-20T03:00:00.000Z', schedule: nightly, lastSuccess: '2026-03-01T02:40:00.000Z', lastBackup: null, failuresSinceSuccess: [], ...over };
}
const at = (iso: string) => new Date(iso);

describe('rpoStatus', () => {
  it('measures the last success against the latest run whose start window closed', () => {
    // At 06:29 the 02:30 run may still start (window of 4 h): the run due is the day before's.
    assert.deepEqual(rpoStatus(facts({ lastSuccess: '2026-02-28T02:35:00.000Z' }), at('2026-03-01T06:29:00Z'), WINDOW),
      { state: 'compliant', dueBy: '2026-02-28T02:30:00.000Z', lastSuccess: '2026-02-28T02:35:00.000Z', lagSeconds: 0 });
    const late = rpoStatus(facts({ lastSuccess: '2026-02-28T02:35:00.000Z' }), at('2026-03-01T06:31:00Z'), WINDOW);
    assert.equal(late.state, 'breached');
    assert.equal(late.dueBy, '2026-03-01T02:30:00.000Z');
    assert.equal(late.lagSeconds, 4 * 3600 + 60);
  });

  it('is not due before the first scheduled run of a new item, and unscheduled without a schedule', () => {
    assert.equal(rpoStatus(facts({ createdAt: '2026-03-01T03:00:00.000Z', lastSuccess: null }), at('2026-03-01T12:00:00Z'), WINDOW).state, 'not-due');
    assert.equal(rpoStatus(facts({ createdAt: '2026-03-01T03:00:00.000Z', lastSuccess: null }), at('2026-03-02T07:00:00Z'), WINDOW).state, 'breached');
    assert.equal(rpoStatus(facts({ schedule: null }), at('2030-01-01T00:00:00Z'), WINDOW).state, 'unscheduled');
  });

  it('does not count a backup running for the due run as a breach', () => {
    const running = facts({ lastSuccess: '2026-02-28T02:35:00.000Z', lastBackup: { jobId: 'j', status: 'InProgress', startTime: '2026-03-01T02:31:00.000Z', endTime: null, warnings: 0 } });
    assert.equal(rpoStatus(running, at('2026-03-01T09:00:00Z'), WINDOW).state, 'compliant');
  });
});

describe('conditionsOf and worst', () => {
  const now = at('2026-03-01T12:00:00Z');
  it('is healthy when the objective holds and nothing failed', () => {
    const { conditions } = conditionsOf(facts(), now, WINDOW);
    assert.deepEqual(conditions, []);
    assert.equal(worst(conditions), 'healthy');
  });
  it('warns of a failed backup while the objective holds, and of warnings', () => {
    const failed = conditionsOf(facts({ failuresSinceSuccess: [{ jobId: 'a', endTime: '2026-03-01T05:00:00.000Z', error: { code: 'SourceUnreadable', message: 'disk gone' } }] }), now, WINDOW);
    assert.deepEqual(failed.conditions.map((c) => [c.rule, c.severity, c.occurrences]), [['JobFailed', 'warning', 1]]);
    assert.match(failed.conditions[0]!.reason, /SourceUnreadable/);
    assert.equal(worst(failed.conditions), 'warning');
    const warned = conditionsOf(facts({ lastBackup: { jobId: 'b', status: 'CompletedWithWarnings', startTime: '2026-03-01T02:31:00.000Z', endTime: '2026-03-01T02:40:00.000Z', warnings: 3 } }), now, WINDOW);
    assert.deepEqual(warned.conditions.map((c) => [c.rule, c.severity]), [[null, 'warning']]);
  });
  it('is critical after a missed run and a breached objective', () => {
    const missed = { jobId: 'm', endTime: '2026-03-02T07:00:00.000Z', error: { code: 'MissedSchedule', message: 'the backup scheduled at 2026-03-02T02:30:00.000Z did not run' } };
    const failed = { jobId: 'f', endTime: '2026-03-01T05:00:00.000Z', error: { code: 'SourceUnreadable', message: 'disk gone' } };
    const { conditions, rpo } = conditionsOf(facts({ failuresSinceSuccess: [failed, missed] }), at('2026-03-02T07:00:00Z'), WINDOW);
    assert.equal(rpo.state, 'breached');
    assert.deepEqual(conditions.map((c) => c.rule), ['RpoBreach', 'MissedSchedule', 'JobFailed']);
    assert.equal(worst(conditions), 'critical');
  });
});
