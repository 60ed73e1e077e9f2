/**
 * The contract every ObjectStore keeps (object-store.ts), as one test suite that each driver
 * and each wrapper runs against itself: `objectStoreContract('S3', () => fresh store)`.
 * Every test gets an empty store of its own from the factory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CoffreError } from '../core/errors.js';
import type { ObjectStore } from './object-store.js';

export interface ContractOptions {
  /** Keys put for the paging case: enough for several pages of the backend's listing. */
  manyKeys?: number;
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof CoffreError && e.code === code, `expected ${code}`);
}

/** Runs `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export function objectStoreContract(name: string, fresh: () => Promise<ObjectStore>, opts: ContractOptions = {}): void {
  test(`${name}: put then get, stat and list see the object at once (read-after-write)`, async () => {
    const s = await fresh();
    const data = Buffer.from(Array.from({ length: 256 * 3 + 7 }, (_, i) => i % 256));
    await s.put('packs/ab/abcdef', data);
    assert.deepEqual(await s.get('packs/ab/abcdef'), data);
    assert.equal((await s.stat('packs/ab/abcdef'))?.size, data.length);
    assert.ok((await s.stat('packs/ab/abcdef'))!.mtime instanceof Date);
    assert.deepEqual(await collect(s.list('packs')), ['packs/ab/abcdef']);
    await s.put('empty', new Uint8Array(0));
    assert.equal((await s.get('empty')).length, 0);
    assert.equal((await s.stat('empty'))?.size, 0);
  });

  test(`${name}: a put replaces an object whole (atomic)`, async () => {
    const s = await fresh();
    const first = randomBytes(300 * 1024);
    const second = randomBytes(100 * 1024);
    await s.put('obj', first);
    await s.put('obj', second);
    assert.deepEqual(await s.get('obj'), second);
    assert.equal((await s.stat('obj'))?.size, second.length);
  });

  test(`${name}: concurrent puts of one key leave exactly one of the objects, whole`, async () => {
    const s = await fresh();
    const versions = Array.from({ length: 12 }, (_, i) => Buffer.alloc(200 * 1024 + i, i + 1));
    await Promise.all(versions.map((v) => s.put('same', v)));
    const got = await s.get('same');
    assert.ok(versions.some((v) => v.equals(got)), 'the object is one of those written, not a mix');
    assert.deepEqual(await collect(s.list('')), ['same']);
  });

  test(`${name}: ranges return exactly the bytes asked for; past the end is refused`, async () => {
    const s = await fresh();
    const data = randomBytes(64 * 1024 + 3);
    await s.put('r/obj', data);
    for (const [offset, length] of [[0, 1], [0, data.length], [1, 10], [4096, 8192], [data.length - 5, 5], [data.length - 1, 1]] as const) {
      assert.deepEqual(await s.get('r/obj', { offset, length }), data.subarray(offset, offset + length), `range ${offset}+${length}`);
    }
    await rejectsWith(s.get('r/obj', { offset: data.length - 2, length: 10 }), 'ChecksumMismatch');
    await rejectsWith(s.get('r/obj', { offset: data.length + 10, length: 10 }), 'ChecksumMismatch');
  });

  test(`${name}: a missing object is NotFound for get, null for stat`, async () => {
    const s = await fresh();
    await rejectsWith(s.get('no/such/key'), 'NotFound');
    await rejectsWith(s.get('no/such/key', { offset: 0, length: 4 }), 'NotFound');
    assert.equal(await s.stat('no/such/key'), null);
    assert.deepEqual(await collect(s.list('no')), []);
  });

  test(`${name}: delete removes an object and is idempotent`, async () => {
    const s = await fresh();
    await s.put('d/one', Buffer.from('1'));
    await s.put('d/two', Buffer.from('2'));
    await s.delete('d/one');
    await s.delete('d/one');
    await s.delete('d/never-written');
    await rejectsWith(s.get('d/one'), 'NotFound');
    assert.deepEqual(await collect(s.list('d')), ['d/two']);
  });

  test(`${name}: list yields every key under a folder prefix exactly once, across pages`, async () => {
    const s = await fresh();
    const n = opts.manyKeys ?? 2000;
    const keys = Array.from({ length: n }, (_, i) => `many/${(i % 7).toString()}/k${i}`);
    await inParallel(keys, 16, (k) => s.put(k, Buffer.from(k)));
    await s.put('manyother/x', Buffer.from('x'));
    await s.put('many.txt', Buffer.from('y'));
    const listed = await collect(s.list('many'));
    assert.equal(listed.length, n, 'each key once');
    assert.deepEqual([...listed].sort(), [...keys].sort());
    assert.deepEqual((await collect(s.list('many/'))).length, n, 'a trailing slash names the same folder');
    assert.deepEqual((await collect(s.list('many/3'))).sort(), keys.filter((k) => k.startsWith('many/3/')).sort());
    assert.equal((await collect(s.list(''))).length, n + 2, 'the empty prefix lists everything');
  });

  test(`${name}: keys outside the key alphabet are refused before reaching the store`, async () => {
    const s = await fresh();
    for (const bad of ['', '/abs', 'a//b', '../up', 'a/../b', 'sp ace', 'a/./b']) {
      await assert.rejects(s.put(bad, Buffer.from('x')), RangeError, JSON.stringify(bad));
    }
  });
}
