/** The alert rules as a pure function: which alerts should be active for given facts. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AlertSettings, ItemHealthStatus } from '../core/monitor-api.js';
import { evaluateRules, type EndedVerify, type RuleInputs } from './alert-rules.js';
import type { ItemState } from './protected-items.js';

const settings: AlertSettings = { webhooks: [], storageThresholdBytes: null, vaultStorageThresholdBytes: {}, replicationLagSeconds: 3600, disabledRules: [] };

function item(id: string, conditions: ItemState['conditions']): ItemState {
  const status = { id, name: id, vault: 'v', machine: 'm', policy: 'P', rpo: { state: 'breached', dueBy: 'x', lastSuccess: null, lagSeconds: 1 }, lastBackup: null } as unknown as ItemHealthStatus;
  return { status, vaultId: 'V', containerId: 'C', conditions };
}

function inputs(over: Partial<RuleInputs>): RuleInputs {
  return { items: [], otherFailures: [], verifies: [], vaults: [], replication: [], settings, ...over };
}

const verify = (id: string, itemId: string | null, status: string, endTime: string): EndedVerify =>
  ({ id, vaultId: 'V', vault: 'v', itemId, item: itemId, status, endTime, error: status === 'Failed' ? { code: 'ChecksumMismatch', message: 'bad' } : null });

describe('evaluateRules', () => {
  it('raises one alert per item condition with a stable key, and none for warnings alone', () => {
    const got = evaluateRules(inputs({ items: [item('i1', [
      { rule: 'RpoBreach', severity: 'critical', reason: 'late', occurrences: 1 },
      { rule: 'MissedSchedule', severity: 'critical', reason: '2 missed', occurrences: 2 },
      { rule: 'JobFailed', severity: 'warning', reason: '3 failed', occurrences: 3 },
      { rule: null, severity: 'warning', reason: 'warnings', occurrences: 1 },
    ])] }));
    assert.deepEqual(got.map((a) => [a.rule, a.key, a.severity, a.occurrences]), [
      ['RpoBreach', 'i1', 'critical', 1], ['MissedSchedule', 'i1', 'critical', 2], ['JobFailed', 'Backup:i1', 'warning', 3]]);
  });

  it('keys failed restores by item and failed prunes by vault', () => {
    const got = evaluateRules(inputs({ otherFailures: [
      { operation: 'Restore', vaultId: 'V', vault: 'v', itemId: 'i1', item: 'site', jobs: [{ id: 'r1', endTime: 't', error: null }] },
      { operation: 'Prune', vaultId: 'V', vault: 'v', itemId: null, item: null, jobs: [{ id: 'p1', endTime: 't', error: null }, { id: 'p2', endTime: 'u', error: null }] },
    ] }));
    assert.deepEqual(got.map((a) => [a.rule, a.key, a.occurrences]), [['JobFailed', 'Restore:i1', 1], ['JobFailed', 'Prune:V', 2]]);
  });

  it('keeps a verify failure until that scope or the whole vault verifies clean', () => {
    const failedItem = verify('a', 'i1', 'Failed', '2026-01-01T00:00:00Z');
    assert.deepEqual(evaluateRules(inputs({ verifies: [failedItem] })).map((a) => a.key), ['V:i1']);
    // Another item verifying clean does not clear it; a later whole-vault pass does.
    assert.equal(evaluateRules(inputs({ verifies: [failedItem, verify('b', 'i2', 'Completed', '2026-01-02T00:00:00Z')] })).length, 1);
    assert.equal(evaluateRules(inputs({ verifies: [failedItem, verify('c', null, 'Completed', '2026-01-02T00:00:00Z')] })).length, 0);
    assert.equal(evaluateRules(inputs({ verifies: [verify('c', null, 'Completed', '2026-01-01T00:00:00Z'), verify('d', null, 'Failed', '2026-01-02T00:00:00Z')] })).length, 1);
  });

  it('compares stored bytes with the vault threshold, else the default', () => {
    const vaults = [{ id: 'A', name: 'a', storedBytes: 100 }, { id: 'B', name: 'b', storedBytes: 100 }];
    assert.equal(evaluateRules(inputs({ vaults })).length, 0);
    assert.deepEqual(evaluateRules(inputs({ vaults, settings: { ...settings, storageThresholdBytes: 99 } })).map((a) => a.key), ['A', 'B']);
    assert.deepEqual(evaluateRules(inputs({ vaults, settings: { ...settings, storageThresholdBytes: 99, vaultStorageThresholdBytes: { a: 100 } } })).map((a) => a.key), ['B']);
  });

  it('raises ReplicationLag once the oldest pending copy waited longer than allowed, one per vault, and never when turned off', () => {
    const lag = (id: string, oldestPendingSeconds: number, pendingObjects = 3) => ({ id, name: id.toLowerCase(), pendingObjects, pendingBytes: 300, oldestPendingSeconds });
    const replication = [lag('A', 3600), lag('B', 3601), lag('C', 0, 0)];
    const got = evaluateRules(inputs({ replication }));
    assert.deepEqual(got.map((a) => [a.rule, a.key, a.severity]), [['ReplicationLag', 'B', 'warning']]);
    assert.match(got[0]!.summary, /vault b: 3 object\(s\) .* 3601 s/);
    assert.deepEqual(evaluateRules(inputs({ replication, settings: { ...settings, replicationLagSeconds: 60 } })).map((a) => a.key), ['A', 'B']);
    assert.deepEqual(evaluateRules(inputs({ replication, settings: { ...settings, replicationLagSeconds: null } })), []);
  });

  it('leaves out disabled rules', () => {
    const got = evaluateRules(inputs({ items: [item('i1', [{ rule: 'RpoBreach', severity: 'critical', reason: 'late', occurrences: 1 }])], settings: { ...settings, disabledRules: ['RpoBreach'] } }));
    assert.deepEqual(got, []);
  });
});
