/** Reports: the arithmetic of a period (checked against a sum over items, for random inputs) and the CSV form. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { computeReport, csvCell, CSV_COLUMNS, reportCsv, reportPeriod, type ReportInput } from './reports.js';

const base: ReportInput = {
  from: '2026-03-01T00:00:00.000Z', to: '2026-03-08T00:00:00.000Z', generatedAt: '2026-03-08T00:00:00.000Z',
  items: [
    { id: 'i1', name: 'site', vaultId: 'V', vault: 'v', machine: 'web01', kind: 'files', policy: 'P' },
    { id: 'i2', name: 'db', vaultId: 'V', vault: 'v', machine: 'db01', kind: 'files', policy: 'P' },
  ],
  backups: [
    { itemId: 'i1', status: 'Completed', startTime: '2026-03-01T02:30:00.000Z', bytesScanned: 1000, bytesNew: 400, bytesUploaded: 200 },
    { itemId: 'i1', status: 'Failed', startTime: '2026-03-02T02:30:00.000Z', bytesScanned: 0, bytesNew: 0, bytesUploaded: 0 },
    { itemId: 'i1', status: 'CompletedWithWarnings', startTime: '2026-03-03T02:30:00.000Z', bytesScanned: 1000, bytesNew: 100, bytesUploaded: 50 },
    { itemId: 'i1', status: 'Completed', startTime: '2026-02-28T02:30:00.000Z', bytesScanned: 999, bytesNew: 999, bytesUploaded: 999 }, // before the period
    { itemId: 'i2', status: 'Completed', startTime: '2026-03-04T02:30:00.000Z', bytesScanned: 500, bytesNew: 500, bytesUploaded: 250 },
  ],
  points: [{ itemId: 'i1', count: 3, latestBytes: 1000 }, { itemId: 'i2', count: 1, latestBytes: 500 }],
  vaults: [{ id: 'V', name: 'v', createdAt: '2026-01-01T00:00:00.000Z', storedStart: 10_000, storedEnd: 10_500 }],
};

describe('computeReport', () => {
  it('counts the period\'s backups, ratios and growth per item and per vault', () => {
    const r = computeReport(base);
    const [vault, site, db] = r.rows;
    assert.deepEqual(site!.backups, { total: 3, succeeded: 1, withWarnings: 1, failed: 1 });
    assert.equal(site!.successRate, 0.667);
    assert.equal(site!.dedupRatio, 4);
    assert.equal(site!.compressionRatio, 2);
    assert.equal(db!.successRate, 1);
    assert.equal(vault!.scope, 'vault');
    assert.deepEqual(vault!.backups, { total: 4, succeeded: 2, withWarnings: 1, failed: 1 });
    assert.equal(vault!.protectedBytes, 1500);
    assert.equal(vault!.points, 4);
    assert.equal(vault!.storedGrowthBytes, 500);
    assert.equal(vault!.dedupRatio, Math.round((2500 / 1000) * 1000) / 1000);
  });

  it('has no rate without ended backups, and growth from zero for a vault created in the period', () => {
    const r = computeReport({ ...base, backups: [], vaults: [{ id: 'V', name: 'v', createdAt: '2026-03-02T00:00:00.000Z', storedStart: null, storedEnd: 300 }] });
    assert.equal(r.rows[0]!.successRate, null);
    assert.equal(r.rows[0]!.dedupRatio, null);
    assert.equal(r.rows[0]!.storedGrowthBytes, 300);
  });

  it('makes each vault row the sum of its item rows (random backups)', () => {
    const backup = fc.record({
      itemId: fc.constantFrom('i1', 'i2'), status: fc.constantFrom('Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled', 'InProgress'),
      startTime: fc.integer({ min: Date.parse('2026-02-25T00:00:00Z'), max: Date.parse('2026-03-10T00:00:00Z') }).map((t) => new Date(t).toISOString()),
      bytesScanned: fc.nat(1e9), bytesNew: fc.nat(1e9), bytesUploaded: fc.nat(1e9),
    });
    fc.assert(fc.property(fc.array(backup, { maxLength: 40 }), (backups) => {
      const r = computeReport({ ...base, backups });
      const [vault, ...items] = r.rows;
      for (const k of ['total', 'succeeded', 'withWarnings', 'failed'] as const) assert.equal(vault!.backups[k], items.reduce((n, i) => n + i.backups[k], 0));
      for (const k of ['bytesScanned', 'bytesNew', 'bytesUploaded'] as const) assert.equal(vault![k], items.reduce((n, i) => n + i[k], 0));
      const inPeriod = backups.filter((b) => b.startTime >= base.from && b.startTime < base.to);
      assert.equal(vault!.backups.total, inPeriod.length);
      for (const row of r.rows) if (row.successRate !== null) assert.ok(row.successRate >= 0 && row.successRate <= 1);
    }), { numRuns: 200 });
  });
});

describe('CSV', () => {
  it('has one header and one line per row, quoted per RFC 4180, formulas defused', () => {
    const text = reportCsv(computeReport(base));
    const lines = text.trimEnd().split('\r\n');
    assert.equal(lines[0], CSV_COLUMNS.join(','));
    assert.equal(lines.length, 4);
    assert.ok(lines[1]!.startsWith('vault,v,,,,,4,2,1,1,'));
    assert.equal(csvCell('a,b'), '"a,b"');
    assert.equal(csvCell('say "hi"'), '"say ""hi"""');
    assert.equal(csvCell('=1+1'), "'=1+1");
    assert.equal(csvCell(null), '');
    assert.equal(csvCell(-5), '-5');
  });
});

describe('reportPeriod', () => {
  it('takes dates (the end day included) or instants, 30 days by default', () => {
    const now = new Date('2026-03-31T12:00:00Z');
    assert.deepEqual(reportPeriod(now, '2026-03-01', '2026-03-07'), { from: '2026-03-01T00:00:00.000Z', to: '2026-03-08T00:00:00.000Z' });
    assert.deepEqual(reportPeriod(now), { from: '2026-03-01T12:00:00.000Z', to: '2026-03-31T12:00:00.000Z' });
    assert.throws(() => reportPeriod(now, '2026-03-08', '2026-03-01'), /before/);
    assert.throws(() => reportPeriod(now, 'yesterday'), /date/);
  });
});
