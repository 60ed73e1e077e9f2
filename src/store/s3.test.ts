/** The S3 driver against a real S3 service (fauxqs): the shared contract and the driver's errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from '../core/errors.js';
import { objectStoreContract } from './object-store.contract.js';
import type { ObjectStore } from './object-store.js';
import { RetryStore } from './retry.js';
import { S3Store } from './s3.js';
import { S3_KEY_ID, S3_SECRET, startS3, type ObjectServer } from '../../testkit/object-servers.js';

const server: ObjectServer = await startS3();
const opened: S3Store[] = [];
test.after(async () => { for (const s of opened) s.close(); await server.stop(); });
let n = 0;

const store = (bucket: string, prefix: string, opts: { endpoint?: string; secret?: string } = {}) => {
  const s = new S3Store({
    name: `s3-${bucket}`, bucket, prefix, region: 'us-east-1', endpoint: opts.endpoint ?? server.endpoint,
    accessKeyId: S3_KEY_ID, secretAccessKey: opts.secret ?? S3_SECRET, pageSize: 400, timeoutMs: 20_000,
  });
  opened.push(s);
  return s;
};

await store('contract', '').create();

objectStoreContract('s3', async () => store('contract', `t${n++}/inner`), { manyKeys: 1500 });

test('s3: a missing bucket is unavailable, not a missing object; create() makes it', async () => {
  const s = store('not-created-yet', 'p');
  await assert.rejects(s.get('x'), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && e.message.includes('not-created-yet'));
  await s.create();
  await s.create();
  await s.put('x', Buffer.from('1'));
  assert.equal((await s.get('x')).toString(), '1');
});

test('s3: an unreachable service is a transient StorageUnavailable, retried then reported', async () => {
  const s = store('contract', 'down', { endpoint: 'http://127.0.0.1:9' });
  let tries = 0;
  const counting: ObjectStore = { put: async (k, d) => { tries++; return s.put(k, d); }, get: (k, r) => s.get(k, r), stat: (k) => s.stat(k), list: (p) => s.list(p), delete: (k) => s.delete(k) };
  const r = new RetryStore(counting, { attempts: 3, baseDelayMs: 1, factor: 1, maxDelayMs: 1 });
  await assert.rejects(r.put('k', Buffer.from('x')), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && e.message.includes('s3-contract'));
  assert.equal(tries, 3);
});
