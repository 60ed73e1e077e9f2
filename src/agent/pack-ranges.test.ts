import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planRanges } from './pack-ranges.js';

test('ranges cover every chunk once, stay within one pack and within their limits', () => {
  const limits = { gap: 100, maxStored: 1000, maxPlain: 3000 };
  const blob = fc.record({ pack: fc.constantFrom('a', 'b', 'c'), offset: fc.nat(10_000), length: fc.integer({ min: 1, max: 400 }) });
  fc.assert(fc.property(fc.uniqueArray(blob, { selector: (b) => `${b.pack}:${b.offset}` }), fc.integer({ min: 1, max: 5 }), (raw, ratio) => {
    const locations = raw.map((b, i) => ({ ...b, id: `id${i}` }));
    const ranges = planRanges(locations, (id) => locations.find((l) => l.id === id)!.length * ratio, limits);
    const seen = ranges.flatMap((r) => r.blobs.map((b) => b.id)).sort();
    assert.deepEqual(seen, locations.map((l) => l.id).sort());
    for (const r of ranges) {
      assert.ok(r.blobs.every((b) => b.pack === r.pack && b.offset >= r.offset && b.offset + b.length <= r.offset + r.length));
      if (r.blobs.length > 1) {
        assert.ok(r.length <= limits.maxStored);
        assert.ok(r.blobs.reduce((n, b) => n + b.length * ratio, 0) <= limits.maxPlain);
      }
    }
  }));
});
