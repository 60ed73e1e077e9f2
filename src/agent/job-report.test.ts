import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobCounters } from '../core/api.js';
import type { VaultClient } from './client.js';
import { JobReporter } from './job-report.js';

/** A reporter over a recording client, on a clock the test moves. */
function setup() {
  const sent: Partial<JobCounters>[] = [];
  const client = { progress: async (_job: string, c: Partial<JobCounters>) => { sent.push(c); } } as unknown as VaultClient;
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
  let now = 1_000_000;
  const realNow = Date.now;
  Date.now = () => now;
  const reporter = new JobReporter(client, 'job', () => ({ ...counters }));
  return {
    sent, counters, reporter,
    advance: (ms: number) => { now += ms; },
    restore: () => { Date.now = realNow; },
  };
}

test('progress reports skip the zeros the vault has, show the first bytes at once, then at most once a second', async () => {
  const s = setup();
  try {
    s.reporter.progress();
    s.advance(200);
    s.reporter.progress();
    await s.reporter.drain();
    assert.equal(s.sent.length, 0, 'zero counters are not reported');

    s.counters.bytesScanned = 10;
    s.advance(200);
    s.reporter.progress();
    await s.reporter.drain();
    assert.equal(s.sent.length, 1, 'the first bytes go out on the next tick');
    assert.equal(s.sent[0]!.bytesScanned, 10);

    s.counters.bytesScanned = 20;
    s.advance(500);
    s.reporter.progress();
    await s.reporter.drain();
    assert.equal(s.sent.length, 1, 'held within a second of the last report');
    s.advance(600);
    s.reporter.progress();
    await s.reporter.drain();
    assert.deepEqual(s.sent.map((c) => c.bytesScanned), [10, 20]);

    s.reporter.progress(true);
    await s.reporter.drain();
    assert.equal(s.sent.length, 3, 'a forced report always goes out');
  } finally {
    s.restore();
  }
});

test('unchanged counters still go out as a heartbeat, well inside the vault\'s two minutes', async () => {
  const s = setup();
  try {
    s.counters.filesScanned = 1;
    s.reporter.progress();
    for (let i = 0; i < 70; i++) {
      s.advance(200);
      s.reporter.progress();
    }
    await s.reporter.drain();
    assert.equal(s.sent.length, 1, 'nothing new in 14 s: one report');
    for (let i = 0; i < 10; i++) {
      s.advance(200);
      s.reporter.progress();
    }
    await s.reporter.drain();
    assert.equal(s.sent.length, 2, 'a heartbeat after 15 s');
    // A job that never moves is still heard of: its first heartbeat comes 15 s after it started.
    const t = setup();
    try {
      for (let i = 0; i < 80; i++) {
        t.advance(200);
        t.reporter.progress();
      }
      await t.reporter.drain();
      assert.equal(t.sent.length, 1);
    } finally {
      t.restore();
    }
  } finally {
    s.restore();
  }
});
