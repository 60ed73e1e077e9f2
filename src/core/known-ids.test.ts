/** The set of chunk ids shared by a backup's threads: each id is stored by exactly one of them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { SharedIdSet } from './known-ids.js';

test('the first claim of an id is new, every later one known; distinct ids never collide', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 300 }), (ids) => {
    const set = SharedIdSet.create(ids.length);
    const seen = new Set<string>();
    for (const id of ids) {
      const hex = Buffer.from(id).toString('hex');
      assert.equal(set.claim(id), seen.has(hex) ? 'known' : 'new');
      seen.add(hex);
    }
  }));
});

test('ids whose first 8 bytes are zero, and views into larger buffers, are handled', () => {
  const set = SharedIdSet.create(4);
  const zero = new Uint8Array(32);
  assert.equal(set.claim(zero), 'new');
  assert.equal(set.claim(zero), 'known');
  const big = randomBytes(32 * 10);
  for (let i = 0; i < 10; i++) assert.equal(set.claim(big.subarray(i * 32 + 0, i * 32 + 32)), 'new');
  for (let i = 0; i < 10; i++) assert.equal(set.claim(Buffer.from(big.subarray(i * 32, i * 32 + 32))), 'known');
});

test('a full table says so instead of guessing: the chunk is then stored', () => {
  const set = new SharedIdSet(new SharedArrayBuffer(8 * 8)); // 8 slots
  const results = Array.from({ length: 20 }, () => set.claim(randomBytes(32)));
  assert.equal(results.filter((r) => r === 'new').length, 8);
  assert.ok(results.slice(8).every((r) => r === 'full'));
});

test('two threads claiming the same ids at once: each id is new for exactly one of them', async () => {
  const ids = randomBytes(32 * 5000);
  const set = SharedIdSet.create(5000);
  const source = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { ids, buffer, url } = workerData;
    import(url).then(({ SharedIdSet }) => {
      const set = new SharedIdSet(buffer);
      const won = [];
      for (let i = 0; i < ids.length / 32; i++) if (set.claim(ids.subarray(i * 32, i * 32 + 32)) === 'new') won.push(i);
      parentPort.postMessage(won);
    });`;
  const url = new URL('./known-ids.js', import.meta.url).href;
  const run = () => new Promise<number[]>((resolve, reject) => {
    const w = new Worker(source, { eval: true, workerData: { ids, buffer: set.buffer, url } });
    w.once('message', resolve);
    w.once('error', reject);
  });
  const [a, b] = await Promise.all([run(), run()]);
  const all = [...a!, ...b!].sort((x, y) => x - y);
  assert.deepEqual(all, Array.from({ length: 5000 }, (_, i) => i));
});

test('has() finds exactly the ids claimed, by bytes or by hex', () => {
  const set = SharedIdSet.create(1000);
  const ids = Array.from({ length: 500 }, () => randomBytes(32));
  for (const id of ids.slice(0, 250)) set.claim(id);
  for (const id of ids.slice(0, 250)) {
    assert.equal(set.has(id), true);
    assert.equal(set.hasHex(id.toString('hex')), true);
  }
  for (const id of ids.slice(250)) assert.equal(set.has(id), false);
});
