/** Alert settings as validated at the door: defaults for settings saved before a field existed, clear refusals. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from '../core/errors.js';
import { DEFAULT_REPLICATION_LAG_SECONDS, validateSettings } from './alert-settings.js';

describe('validateSettings', () => {
  const before = { webhooks: [{ url: 'https://hooks.example/x' }], storageThresholdBytes: 10, vaultStorageThresholdBytes: {}, disabledRules: ['RpoBreach', 'RpoBreach'] };

  it('reads settings saved before the replication lag existed with its default', () => {
    assert.deepEqual(validateSettings(before), { ...before, replicationLagSeconds: DEFAULT_REPLICATION_LAG_SECONDS, disabledRules: ['RpoBreach'] });
  });

  it('keeps a chosen lag, or none', () => {
    assert.equal(validateSettings({ ...before, replicationLagSeconds: 900 }).replicationLagSeconds, 900);
    assert.equal(validateSettings({ ...before, replicationLagSeconds: null }).replicationLagSeconds, null);
  });

  it('refuses a lag that is not a positive whole number of seconds, and unknown rules, naming the field', () => {
    for (const [body, field] of [[{ ...before, replicationLagSeconds: 0 }, 'replicationLagSeconds'], [{ ...before, replicationLagSeconds: '1h' }, 'replicationLagSeconds'],
      [{ ...before, disabledRules: ['Nope'] }, 'disabledRules']] as const) {
      assert.throws(() => validateSettings(body), (e) => e instanceof CoffreError && e.code === 'InvalidArgument' && e.message.includes(field));
    }
  });
});
