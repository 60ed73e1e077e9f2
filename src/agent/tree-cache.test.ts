/** The on-disk cache: what a failed backup wrote is gone, a busy or damaged cache is set aside. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TreeEntry } from '../core/tree.js';
import { TreeCache } from './tree-cache.js';

const entry: TreeEntry = { name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: '1', size: 3, chunks: [['a'.repeat(64), 3]] };

test('a committed backup is the next one\'s cache; an abandoned one changes nothing; unseen folders go', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-cache-'));
  try {
    const first = TreeCache.open(dir, 'v', 'item');
    first.put('["a"]', 'sig-a', ['p1'], { files: 1, bytes: 3 }, [['f', 'key', entry]]);
    first.put('["b"]', 'sig-b', ['p2'], { files: 0, bytes: 0 }, []);
    first.setMeta('files', '1');
    first.commit();

    const failed = TreeCache.open(dir, 'v', 'item');
    assert.equal(failed.folder('["a"]')?.sig, 'sig-a');
    assert.deepEqual(failed.folder('["a"]')?.entries(), [['f', 'key', entry]]);
    failed.put('["a"]', 'changed', ['p9'], { files: 0, bytes: 0 }, []);
    failed.abandon();

    const next = TreeCache.open(dir, 'v', 'item');
    const a = next.folder('["a"]')!;
    assert.deepEqual([a.sig, a.pages, a.files, a.bytes], ['sig-a', ['p1'], 1, 3]);
    assert.equal(next.meta('files'), '1');
    next.keep('["a"]');
    next.commit();
    const after = TreeCache.open(dir, 'v', 'item');
    assert.ok(after.folder('["a"]'));
    assert.equal(after.folder('["b"]'), null, 'a folder the last backup did not see is forgotten');
    after.abandon();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a cache another backup of the item holds is not waited for, and a damaged one is started afresh', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-cache-'));
  try {
    const holder = TreeCache.open(dir, 'v', 'item');
    holder.put('["a"]', 's', [], { files: 0, bytes: 0 }, []);
    const other = TreeCache.open(dir, 'v', 'item');
    assert.equal(other.folder('["a"]'), null);
    other.put('["x"]', 's', [], { files: 0, bytes: 0 }, []);
    other.commit();
    holder.commit();
    const file = readdirSync(join(dir, 'cache')).find((n) => n.endsWith('.sqlite'))!;
    for (const n of readdirSync(join(dir, 'cache'))) rmSync(join(dir, 'cache', n));
    writeFileSync(join(dir, 'cache', file), 'this is not a database');
    const fresh = TreeCache.open(dir, 'v', 'item');
    assert.equal(fresh.folder('["a"]'), null);
    fresh.put('["a"]', 's', [], { files: 0, bytes: 0 }, []);
    fresh.commit();
    assert.ok(TreeCache.open(dir, 'v', 'item').folder('["a"]'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
