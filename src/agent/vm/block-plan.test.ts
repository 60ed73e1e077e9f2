/** Which blocks a backup reads (block-plan.ts), against a naive per-byte model of the disk. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ID_BYTES } from '../../core/crypto.js';
import { dataRanges, KEEP, planBlocks, READ, ZERO } from './block-plan.js';
import { STATE_DIRTY, STATE_HOLE, STATE_ZERO, type Extent } from './nbd-protocol.js';

/** Extents covering [0, size) from per-byte flags (as a server would describe them, merged). */
function extents(flags: number[]): Extent[] {
  const out: Extent[] = [];
  flags.forEach((f, i) => {
    const last = out[out.length - 1];
    if (last && last.flags === f) last.length++;
    else out.push({ offset: i, length: 1, flags: f });
  });
  return out;
}

const disk = fc.integer({ min: 1, max: 200 }).chain((size) => fc.record({
  size: fc.constant(size),
  blockSize: fc.constantFrom(4, 8, 16),
  dirty: fc.option(fc.array(fc.boolean(), { minLength: size, maxLength: size })),
  zero: fc.option(fc.array(fc.boolean(), { minLength: size, maxLength: size })),
  previous: fc.option(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 50, maxLength: 50 })),
  held: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
}));

test('planBlocks: read what may have changed or the vault lost, skip zeros, keep the rest (model check)', () => {
  fc.assert(fc.property(disk, (d) => {
    const count = Math.ceil(d.size / d.blockSize);
    // Previous ids: 0 is a hole; ids 1..3 are held by the vault or not.
    const prevIds = d.previous?.slice(0, count);
    const previous = prevIds && prevIds.length === count ? Buffer.concat(prevIds.map((v) => Buffer.alloc(ID_BYTES, v))) : null;
    const plan = planBlocks({
      size: d.size, blockSize: d.blockSize, previous,
      dirty: d.dirty ? extents(d.dirty.map((x) => (x ? STATE_DIRTY : 0))) : null,
      allocation: d.zero ? extents(d.zero.map((x) => (x ? STATE_HOLE | STATE_ZERO : 0))) : null,
      held: (id) => d.held[id[0]!]!,
    });
    assert.equal(plan.length, count);
    for (let b = 0; b < count; b++) {
      const bytes = Array.from({ length: Math.min(d.blockSize, d.size - b * d.blockSize) }, (_, i) => b * d.blockSize + i);
      const incremental = d.dirty !== null && previous !== null;
      const changed = !incremental || bytes.some((i) => d.dirty![i]) || (prevIds![b]! !== 0 && !d.held[prevIds![b]!]);
      const allZero = d.zero !== null && bytes.every((i) => d.zero![i]);
      assert.equal(plan[b], !changed ? KEEP : allZero ? ZERO : READ, `block ${b}`);
    }
  }));
});

test('dataRanges: exactly the bytes that do not read as zeros', () => {
  fc.assert(fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 120 }), fc.nat(), fc.nat(), (zero, a, b) => {
    const map = extents(zero.map((z) => (z ? STATE_ZERO : 0)));
    const from = a % zero.length;
    const length = 1 + (b % (zero.length - from));
    const covered = new Set<number>();
    let last = -1;
    for (const [x, y] of dataRanges(map, from, length)) {
      assert.ok(x > last && x < y, 'ranges are ordered and separate');
      last = y;
      for (let i = x; i < y; i++) covered.add(i);
    }
    for (let i = from; i < from + length; i++) assert.equal(covered.has(i), !zero[i], `byte ${i}`);
  }));
  assert.deepEqual(dataRanges(null, 10, 5), [[10, 15]], 'no map: all of it is read');
});
