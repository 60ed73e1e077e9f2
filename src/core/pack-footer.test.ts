/** A pack's footer read on its own (index rebuilds from a store) says what reading the whole pack says. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CoffreError } from './errors.js';
import { packFooterLength, PACK_TRAILER_BYTES, PackWriter, readPack, readPackFooter } from './pack.js';

test('footer alone: the same entries as the whole pack, for any blobs', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 0, maxLength: 300 })), { maxLength: 20 }), (blobs) => {
    const w = new PackWriter();
    for (const [id, data] of blobs) w.add(Buffer.from(id), data);
    const { data } = w.finish();
    const length = packFooterLength(data.subarray(data.length - PACK_TRAILER_BYTES));
    const fromFooter = readPackFooter(data.subarray(data.length - length), data.length);
    assert.deepEqual(fromFooter, readPack(data));
  }));
});

test('footer alone: a pack without a footer or with a footer that does not fit is refused', () => {
  assert.throws(() => packFooterLength(Buffer.from('12345678')), (e: unknown) => e instanceof CoffreError && e.code === 'PackInvalid');
  const w = new PackWriter();
  w.add(Buffer.alloc(32, 1), Buffer.from('hello'));
  const { data } = w.finish();
  const length = packFooterLength(data.subarray(data.length - PACK_TRAILER_BYTES));
  assert.throws(() => readPackFooter(data.subarray(data.length - length), data.length + 3), (e: unknown) => e instanceof CoffreError && e.code === 'PackInvalid');
  assert.throws(() => readPackFooter(data.subarray(data.length - length), 10), (e: unknown) => e instanceof CoffreError && e.code === 'PackInvalid');
});
