/** Side names of restored copies always fit NAME_MAX and never split a character. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { renamedAside, sideName } from './restore.js';

test('a side name keeps its suffix whole, fits in 255 bytes and cuts names only between characters', () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 200 }), fc.constantFrom('.restored-1234abcd', '.restored-2-1234abcd'), (text, suffix) => {
    let name = Buffer.from(text);
    while (name.length > 255) name = name.subarray(0, name.length - 1);
    const out = sideName(name, suffix);
    assert.ok(out.length <= 255);
    assert.ok(out.toString('latin1').endsWith(suffix));
    const kept = out.subarray(0, out.length - suffix.length);
    assert.ok(name.subarray(0, kept.length).equals(kept), 'a prefix of the name');
    if (Buffer.from(name.toString('utf8')).equals(name)) assert.ok(Buffer.from(out.toString('utf8')).equals(out), 'valid UTF-8 stays valid');
  }));
  assert.equal(sideName(Buffer.from('a.txt'), '.restored-1').toString(), 'a.txt.restored-1');
  assert.equal(sideName(Buffer.from('é'.repeat(127) + 'x'), '.restored-12345678').length, 254);
});

test('a copy renamed aside takes the first side name neither on disk nor restored by the point itself', () => {
  const id = '0123456789abcdef';
  assert.equal(renamedAside(Buffer.from('f'), id, () => false).toString(), 'f.restored-01234567');
  const taken = new Set(['f.restored-01234567', 'f.restored-2-01234567']);
  assert.equal(renamedAside(Buffer.from('f'), id, (side) => taken.has(side.toString())).toString(), 'f.restored-3-01234567');
});
