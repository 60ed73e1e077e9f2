import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flushBehind } from './flush-behind.js';

test('flushBehind syncs the file as it grows, one flush at a time, and drain waits for the one in flight', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-flush-'));
  const fh = await open(join(dir, 'f'), 'w');
  try {
    let syncs = 0;
    let inFlight = 0;
    let most = 0;
    const real = fh.datasync.bind(fh);
    fh.datasync = async () => {
      syncs++;
      most = Math.max(most, ++inFlight);
      try {
        await real();
      } finally {
        inFlight--;
      }
    };
    const flush = flushBehind(fh, 4096);
    const block = Buffer.alloc(4096, 7);
    for (let i = 0; i < 8; i++) {
      await fh.write(block, 0, block.length, i * 4096);
      flush.wrote(block.length);
    }
    await flush.drain();
    assert.ok(syncs >= 1, 'a file past the threshold is flushed before the end');
    assert.equal(most, 1, 'never two flushes at once');
    assert.equal(inFlight, 0, 'drain leaves no flush in flight');
  } finally {
    await fh.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('flushBehind reports a failed background flush at the next write and at drain', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-flush-'));
  const fh = await open(join(dir, 'f'), 'w');
  try {
    fh.datasync = async () => { throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }); };
    const flush = flushBehind(fh, 1);
    flush.wrote(10);
    await assert.rejects(flush.drain(), /EIO/);
    assert.throws(() => flush.wrote(10), /EIO/, 'the restore stops at its next write');
  } finally {
    await fh.close();
    await rm(dir, { recursive: true, force: true });
  }
});
