/**
 * Pack ranges read in parallel, over and over, each get exactly their own bytes: the vault reads
 * ranges into buffers it reuses (larger than the range, taken by one request after another).
 * Large ranges go out in slices after their headers (src/vault/sliced-body.ts), still with the
 * Content-Length the agent reads them by.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { backupOptions, harness, rawRequest, vaultDir } from '../testkit/harness.js';
import { MiB, seededBytes, writeTree } from '../testkit/vm-fixtures.js';

test('parallel reads of pack ranges answer each request with its own bytes, time after time', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await writeTree(src, { 'a.bin': seededBytes('a', 20 * MiB), 'b.bin': seededBytes('b', 20 * MiB), 'c.bin': seededBytes('c', 12 * MiB) });
    await backup(backupOptions(a, 'data', [src]));
    const packDir = join(vaultDir(h.server.dataDir, a.state.vaultId), 'packs', a.state.containerId);
    const packs: { id: string; bytes: Buffer }[] = [];
    for (const sub of await readdir(packDir)) {
      for (const id of await readdir(join(packDir, sub))) packs.push({ id, bytes: await readFile(join(packDir, sub, id)) });
    }
    assert.ok(packs.filter((p) => p.bytes.length > 4 * MiB).length >= 3, `several large packs (${packs.map((p) => p.bytes.length).join(', ')})`);
    for (let round = 0; round < 3; round++) {
      const reads = Array.from({ length: 24 }, (_, i) => {
        const p = packs[i % packs.length]!;
        const offset = Math.floor((p.bytes.length / 7) * ((i + round) % 5));
        const length = Math.min(p.bytes.length - offset, 1 + ((i * 7_919_993) % (6 * MiB)));
        return { p, offset, length };
      });
      const got = await Promise.all(reads.map((r) => a.client.readPack(a.state.containerId, r.p.id, r.offset, r.length)));
      reads.forEach((r, i) => assert.ok(got[i]!.equals(r.p.bytes.subarray(r.offset, r.offset + r.length)), `read ${i} of round ${round}: ${r.p.id} at ${r.offset}+${r.length}`));
    }
  } finally {
    await h.close();
  }
});

test('a large range is sent in slices with its Content-Length; HEAD and small ranges keep theirs', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await writeTree(src, { 'a.bin': seededBytes('sliced', 12 * MiB) });
    await backup(backupOptions(a, 'data', [src]));
    const packDir = join(vaultDir(h.server.dataDir, a.state.vaultId), 'packs', a.state.containerId);
    let largest: { id: string; bytes: Buffer } | null = null;
    for (const sub of await readdir(packDir)) {
      for (const id of await readdir(join(packDir, sub))) {
        const bytes = await readFile(join(packDir, sub, id));
        if (!largest || bytes.length > largest.bytes.length) largest = { id, bytes };
      }
    }
    assert.ok(largest && largest.bytes.length > 3 * MiB, 'a pack of several slices');
    const path = (offset: number, length: number) => `/v1/containers/${a.state.containerId}/packs/${largest!.id}?offset=${offset}&length=${length}`;
    for (const [offset, length] of [[1, largest.bytes.length - 1], [5, 300 * 1024], [7, 100 * 1024]] as const) {
      const got = await rawRequest(h.server, 'GET', path(offset, length), { token: a.state.token });
      assert.equal(got.status, 200);
      assert.equal(got.headers['content-length'], String(length), `Content-Length of ${length} bytes`);
      assert.ok(got.bytes.equals(largest.bytes.subarray(offset, offset + length)), `the bytes of ${length} at ${offset}`);
    }
    const head = await rawRequest(h.server, 'HEAD', path(0, largest.bytes.length), { token: a.state.token });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(largest.bytes.length));
    assert.equal(head.bytes.length, 0, 'HEAD answers without a body');
  } finally {
    await h.close();
  }
});
