/** The Azure Blob driver against a real Azurite: the shared contract and the driver's errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from '../core/errors.js';
import { AzureBlobStore } from './azure-blob.js';
import { objectStoreContract } from './object-store.contract.js';
import type { ObjectStore } from './object-store.js';
import { RetryStore } from './retry.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, type ObjectServer } from '../../testkit/object-servers.js';

const server: ObjectServer = await startAzurite();
test.after(() => server.stop());
let n = 0;

const store = (container: string, prefix: string, endpoint = server.endpoint) => new AzureBlobStore({
  name: `azure-${container}`, account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, container, prefix, endpoint, pageSize: 500, timeoutMs: 20_000,
});

const shared = store('contract', '');
await shared.create();

// A prefix per test: every test starts from an empty store.
objectStoreContract('azure blob', async () => store('contract', `t${n++}/inner`), { manyKeys: 1500 });

test('azure blob: a missing container is unavailable, not a missing object; create() makes it', async () => {
  const s = store('not-created-yet', '');
  await assert.rejects(s.get('x'), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && e.message.includes('not-created-yet'));
  await s.create();
  await s.create();
  await s.put('x', Buffer.from('1'));
  assert.equal((await s.get('x')).toString(), '1');
});

test('azure blob: a wrong key is a permanent StorageError (not retried), naming the store', async () => {
  const s = new AzureBlobStore({ name: 'azure-badkey', account: AZURITE_ACCOUNT, accountKey: Buffer.from('wrong key').toString('base64'), container: 'contract', endpoint: server.endpoint });
  let tries = 0;
  const once: ObjectStore = { put: async (k, d) => { tries++; return s.put(k, d); }, get: (k, r) => s.get(k, r), stat: (k) => s.stat(k), list: (p) => s.list(p), delete: (k) => s.delete(k) };
  const counting = new RetryStore(once, { attempts: 4, baseDelayMs: 1, factor: 1, maxDelayMs: 1 });
  await assert.rejects(counting.put('k', Buffer.from('x')), (e: unknown) => e instanceof CoffreError && e.code === 'StorageError' && e.message.includes('azure-badkey') && /access denied/.test(e.message));
  assert.equal(tries, 1);
});

test('azure blob: an unreachable service is a transient StorageUnavailable, retried then reported', async () => {
  const s = store('contract', 'down', 'http://127.0.0.1:9/devstoreaccount1');
  let tries = 0;
  const counting: ObjectStore = { put: async (k, d) => { tries++; return s.put(k, d); }, get: (k, r) => s.get(k, r), stat: (k) => s.stat(k), list: (p) => s.list(p), delete: (k) => s.delete(k) };
  const r = new RetryStore(counting, { attempts: 3, baseDelayMs: 1, factor: 1, maxDelayMs: 1 });
  await assert.rejects(r.put('k', Buffer.from('x')), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && e.message.includes('azure-contract'));
  assert.equal(tries, 3);
});
