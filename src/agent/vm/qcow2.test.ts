/**
 * Coffre's own qcow2 code against QEMU's: images written by the restore writer pass
 * `qemu-img check` and read back identical with `qemu-img compare`; internal snapshots read
 * from the image file give exactly what `qemu-img convert -l` gives, including zero clusters,
 * discarded clusters and writes made after the snapshot; layouts the reader leaves to QEMU
 * (a backing file, compressed clusters) are read through qemu-nbd instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoffreError } from '../../core/errors.js';
import { seededBytes } from '../../../testkit/vm-fixtures.js';
import { openQcow2Snapshot } from './qcow2-snapshot.js';
import { createQcow2Writer } from './qcow2-writer.js';
import { snapshotView } from './snapshot-view.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KiB = 1024;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-qcow2-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const io = (file: string, commands: string[], format = 'qcow2') => run('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), file]);

test('the restore\'s qcow2 writer makes images qemu-img checks clean and reads as written', async () => {
  await withDir(async (dir) => {
    // Sizes of whole sectors, one smaller than an L2 table's reach and one needing two L1 entries.
    for (const size of [5 * MiB + 64 * KiB + 512, 600 * MiB]) {
      const file = join(dir, `w-${size}.qcow2`);
      const w = await createQcow2Writer(file, size);
      const model = Buffer.alloc(Math.min(size, 8 * MiB));
      const writes: [number, Buffer][] = [];
      for (const [k, at] of [0, 1, 3].entries()) {
        const d = seededBytes(`w${k}`, MiB);
        d.fill(0, 64 * KiB, 192 * KiB); // clusters of zeros inside a block stay unallocated
        writes.push([at * MiB, d]);
      }
      const tailAt = size - (size % MiB || MiB);
      writes.push([tailAt, seededBytes('tail', size - tailAt)]);
      await Promise.all(writes.map(([at, d]) => w.write(d, at)));
      await w.finish();
      const check = await run('qemu-img', ['check', file]);
      assert.match(check.stdout, /No errors were found on the image/);
      const ref = join(dir, 'ref.raw');
      await writeFile(ref, model);
      await run('truncate', ['-s', String(size), ref]);
      const fh = await (await import('node:fs/promises')).open(ref, 'r+');
      for (const [at, d] of writes) await fh.write(d, 0, d.length, at);
      await fh.close();
      const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', file, ref]);
      assert.match(cmp.stdout, /identical/);
      const map = JSON.parse((await run('qemu-img', ['map', '--output=json', file])).stdout) as { start: number; length: number; data: boolean }[];
      const data = map.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
      assert.equal(data, 3 * (MiB - 128 * KiB) + (size - tailAt), 'only clusters with data are allocated');
      await rm(ref);
    }
    // The image is created exclusively: an existing file is never overwritten.
    await assert.rejects(createQcow2Writer(join(dir, `w-${600 * MiB}.qcow2`), MiB), /EEXIST/);
  });
});

test('internal snapshots read from the image file equal qemu-img\'s reading of them, while the image changes', async () => {
  await withDir(async (dir) => {
    // 4 KiB clusters: an L2 table maps 2 MiB, so a small disk spans several tables.
    const file = join(dir, 'd.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', file, String(12 * MiB)]);
    await io(file, ['write -P 1 0 3M', 'write -P 2 8M 1M', 'write -z 9M 64k', 'write -P 9 5M 100k', 'write -P 3 11M 1M']);
    await run('qemu-img', ['snapshot', '-c', 's1', file]);
    await io(file, ['write -P 7 0 1M', 'discard 8M 1M', 'write -P 8 6M 2M']);
    await run('qemu-img', ['snapshot', '-c', 's2', file]);
    await io(file, ['write -P 5 0 4M']); // after both snapshots: neither may see it
    for (const name of ['s1', 's2']) {
      const snap = await openQcow2Snapshot(file, name);
      assert.ok(snap, `${name} is read directly`);
      const got = Buffer.alloc(snap.size);
      const read = await snap.reader.read(0, snap.size, got);
      await snap.reader.close();
      const ref = join(dir, `${name}.raw`);
      await run('qemu-img', ['convert', '-f', 'qcow2', '-l', `snapshot.name=${name}`, '-O', 'raw', file, ref]);
      assert.ok(got.equals(await readFile(ref)), `${name}: the same guest bytes as qemu-img`);
      const data = snap.allocation.filter((e) => e.flags === 0).reduce((n, e) => n + e.length, 0);
      assert.equal(read, data, 'only data clusters are read');
      assert.equal(snap.allocation.reduce((n, e) => n + e.length, 0), 12 * MiB, 'the map covers the disk');
    }
    // Reading part of a block, across data and a hole.
    const s1 = (await openQcow2Snapshot(file, 's1'))!;
    const part = Buffer.alloc(256 * KiB, 0xee);
    assert.equal(await s1.reader.read(5 * MiB + 64 * KiB, 256 * KiB, part), 36 * KiB);
    assert.ok(part.subarray(0, 36 * KiB).equals(Buffer.alloc(36 * KiB, 9)));
    assert.ok(part.subarray(36 * KiB).equals(Buffer.alloc(220 * KiB)));
    await s1.reader.close();
    await assert.rejects(openQcow2Snapshot(file, 'nope'), (e: unknown) => e instanceof CoffreError && e.code === 'NotFound');
  });
});

test('layouts the reader leaves to QEMU (a backing file, compressed clusters) are read through qemu-nbd', async () => {
  await withDir(async (dir) => {
    const base = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(8 * MiB)]);
    await io(base, ['write -P 4 0 2M']);
    const top = join(dir, 'top.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    await io(top, ['write -P 6 1M 64k']);
    await run('qemu-img', ['snapshot', '-c', 'snap', top]);
    const compressed = join(dir, 'c.qcow2');
    await run('qemu-img', ['convert', '-c', '-f', 'qcow2', '-O', 'qcow2', base, compressed]);
    await run('qemu-img', ['snapshot', '-c', 'snap', compressed]);
    for (const file of [top, compressed]) {
      assert.equal(await openQcow2Snapshot(file, 'snap'), null);
      const view = await snapshotView({ image: file, name: 'snap' });
      assert.equal(view.via, 'qemu-nbd');
      const got = Buffer.alloc(view.size);
      await view.reader.read(0, view.size, got);
      await view.reader.close();
      const ref = join(dir, 'ref.raw');
      await run('qemu-img', ['convert', '-f', 'qcow2', '-l', 'snapshot.name=snap', '-O', 'raw', file, ref]);
      assert.ok(got.equals(await readFile(ref)), `${file} through qemu-nbd`);
    }
  });
});
