/**
 * The catalog's copy queue on a real SQLite catalog: background replication waits while this
 * node keeps queueing copies (a backup is writing), takes everything once the writes pause,
 * and never lets a copy wait longer than its bound; an explicit drain never waits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCatalog } from '../catalog/open.js';
import { ManualClock } from '../core/clock.js';
import { CatalogCopyQueue } from './copy-queue.js';

const task = (key: string) => ({ target: 'secondary/zone-1', key, op: 'put' as const, bytes: 10 });

test('copies wait while writes keep coming, are due once they pause, and never wait past the bound', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-copy-queue-'));
  const catalog = await openCatalog(undefined, dir);
  try {
    const clock = new ManualClock(new Date('2026-12-02T10:00:00Z'));
    const queue = new CatalogCopyQueue(catalog.db, clock);
    queue.quietMs = 300;
    const scoped = queue.scoped('vault-1');
    let nudged = 0;
    queue.onAdd = () => { nudged++; };

    await scoped.add([task('packs/a')]);
    assert.equal(nudged, 1);
    assert.deepEqual(await queue.due(10, clock.now()), [], 'a write just queued copies: replication waits');
    assert.deepEqual((await queue.due(10, clock.now(), true)).map((t) => t.key), ['packs/a'], 'a drain does not wait');

    // A copy queued longer ago than the bound is due even while writes go on.
    clock.advance(queue.maxDeferMs + 1000);
    await scoped.add([task('packs/b')]);
    assert.deepEqual((await queue.due(10, clock.now())).map((t) => t.key), ['packs/a']);

    // The writes pause: everything is due.
    await new Promise((resolve) => setTimeout(resolve, queue.quietMs + 50));
    assert.deepEqual((await queue.due(10, clock.now())).map((t) => t.key), ['packs/a', 'packs/b']);
  } finally {
    await catalog.db.destroy();
    await rm(dir, { recursive: true, force: true });
  }
});
