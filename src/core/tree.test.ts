/** Tree pages: cut where names say, stable under insertions, and checked before a restore trusts them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CoffreError } from './errors.js';
import { decodeName, encodeName } from './manifest.js';
import { compareNames, decodePage, encodeRefsPrefix, pageRefs, paginate, readRefsPrefix, type TreeEntry } from './tree.js';

const base = { mode: 0o644, uid: 0, gid: 0, mtime: '1600000000123456789' };
const id = (n: number) => n.toString(16).padStart(64, '0');
const file = (name: string, chunks = 1): TreeEntry => ({ ...base, name, type: 'file', size: chunks * 10, chunks: Array.from({ length: chunks }, (_, i) => [id(i + 1), 10]) });
const sorted = (names: Iterable<string>) => [...new Set(names)].map((n) => encodeName(Buffer.from(n))).sort(compareNames);
const name = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('/') && !s.includes('\0') && s !== '.' && s !== '..');
const names = fc.uniqueArray(name, { maxLength: 1500 });

test('pages hold every entry once, in order, and each decodes to exactly its entries', () => {
  fc.assert(fc.property(names, (raw) => {
    const entries = sorted(raw).map((n) => file(n));
    const pages = paginate(entries);
    assert.ok(pages.length >= 1, 'an empty folder still has a page');
    assert.deepEqual(pages.flatMap((p) => [...p.entries]), entries);
    let last: Buffer | null = null;
    for (const p of pages) {
      const decoded = decodePage(p.plain, last);
      assert.deepEqual(decoded, p.entries);
      if (decoded.length) last = decodeName(decoded[decoded.length - 1]!.name);
    }
  }), { numRuns: 60 });
});

test('adding one entry to a large folder changes the page that takes it (split in two when its name is a cut), no other', () => {
  fc.assert(fc.property(fc.uniqueArray(name, { minLength: 300, maxLength: 1500 }), name, (raw, extra) => {
    fc.pre(!raw.includes(extra));
    const before = paginate(sorted(raw).map((n) => file(n))).map((p) => Buffer.from(p.plain).toString('base64'));
    const after = paginate(sorted([...raw, extra]).map((n) => file(n))).map((p) => Buffer.from(p.plain).toString('base64'));
    const kept = after.filter((p) => before.includes(p)).length;
    assert.ok(after.length - kept <= 2, `${after.length - kept} of ${after.length} pages changed`);
    assert.ok(before.length - kept <= 1, 'one page of before is gone at most');
  }), { numRuns: 40 });
});

test('a page lists what it references: sub-folder pages and stored chunks, each once', () => {
  const entries: TreeEntry[] = [
    { ...base, name: 'a', type: 'dir', tree: [id(100), id(101)] },
    file('b', 3),
    { ...base, name: 'c', type: 'file', size: 20, chunks: [[null, 10], [id(1), 10]] },
    { ...base, name: 'd', type: 'symlink', target: 'b' },
  ];
  const refs = pageRefs(entries);
  assert.deepEqual(refs, { trees: [id(100), id(101)], chunks: [id(1), id(2), id(3)] });
  const prefix = encodeRefsPrefix(refs);
  const stored = Buffer.concat([prefix, Buffer.from('sealed bytes')]);
  const read = readRefsPrefix(stored);
  assert.equal(read.length, prefix.length);
  assert.deepEqual(read.trees.map((b) => b.toString('hex')), refs.trees);
  assert.deepEqual(read.chunks.map((b) => b.toString('hex')), refs.chunks);
  assert.throws(() => readRefsPrefix(prefix.subarray(0, prefix.length - 1)), (e: unknown) => e instanceof CoffreError && e.code === 'PackInvalid');
});

test('forged pages are refused: unsafe or repeated names, disorder, broken fields', () => {
  const page = (entries: unknown[]) => Buffer.from(JSON.stringify({ v: 1, entries }));
  const refused = (entries: unknown[], after: Buffer | null = null) =>
    assert.throws(() => decodePage(page(entries), after), (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid', JSON.stringify(entries));
  for (const name of ['..', '.', 'a/b', '', 'x\u0000y', 'n'.repeat(256)]) refused([{ ...file('ok'), name }]);
  refused([file('b'), file('a')]);
  refused([file('a'), file('a')]);
  refused([file('a')], Buffer.from('a'));
  refused([file('b')], Buffer.from('c'));
  refused([{ ...file('a'), size: 11 }]);
  refused([{ ...base, name: 'd', type: 'dir', tree: [] }]);
  refused([{ ...base, name: 'd', type: 'dir', tree: ['../../etc'] }]);
  refused([{ ...base, name: 'l', type: 'symlink' }]);
  refused([{ ...base, name: 's', type: 'socket' }]);
  refused([{ ...file('a'), mode: -1 }]);
  assert.throws(() => decodePage(Buffer.from('{"v":2,"entries":[]}')), (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid');
  assert.throws(() => decodePage(Buffer.from('not json')), (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid');
  assert.deepEqual(decodePage(page([file('b')]), Buffer.from('a')).length, 1);
});
