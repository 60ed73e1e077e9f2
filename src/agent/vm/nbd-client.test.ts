/**
 * The NBD client against real servers: qemu-nbd serving a qcow2 file, and
 * qemu-storage-daemon exporting a persistent dirty bitmap. Reads, writes and block status are
 * checked against a model of the disk kept by the test, and cross-checked with QEMU's own
 * tools (qemu-io reads, nbdinfo --map).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { CoffreError } from '../../core/errors.js';
import { NbdClient, type Extent } from './nbd-client.js';
import { appendExtents, BASE_ALLOCATION, dirtyBitmapContext, STATE_DIRTY, STATE_HOLE, STATE_ZERO } from './nbd-protocol.js';
import { serveImage } from './qemu-nbd.js';
import { QmpClient, QmpCommandError } from './qmp-client.js';
import { qemuImg, startStorageDaemon } from '../../../testkit/qemu.js';
import { seededBytes } from '../../../testkit/vm-fixtures.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KiB = 1024;

/** nbdinfo's view of a context: [offset, length, flags] per extent, merged like ours. */
async function nbdinfoMap(socket: string, exportName: string, context: string): Promise<Extent[]> {
  const r = await run('nbdinfo', ['--json', `--map=${context}`, `nbd+unix:///${exportName}?socket=${socket}`]);
  const out: Extent[] = [];
  for (const e of JSON.parse(r.stdout) as { offset: number; length: number; type: number }[]) appendExtents(out, [{ offset: e.offset, length: e.length, flags: e.type }], e.offset, e.offset + e.length);
  return out;
}

test('reads, writes, flush and base:allocation against qemu-nbd serving a qcow2 file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-nbd-'));
  try {
    const image = join(dir, 'd.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '32M']);
    // Data in two places, written by QEMU's own tool before Coffre looks.
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x61 1M 192k', '-c', 'write -P 0x62 20M 64k', '-c', 'write -z 24M 128k', image]);
    const model = Buffer.alloc(32 * MiB);
    model.fill(0x61, MiB, MiB + 192 * KiB);
    model.fill(0x62, 20 * MiB, 20 * MiB + 64 * KiB);

    const served = await serveImage(image, { format: 'qcow2', readOnly: false, clients: 2 });
    const nbd = await served.connect();
    try {
      assert.equal(nbd.size, 32 * MiB);
      assert.equal(nbd.info.readOnly, false);
      assert.deepEqual([...nbd.contexts.keys()], [BASE_ALLOCATION]);
      // Allocation: the two data runs are data; the rest reads as zeros (holes).
      const map = (await nbd.blockStatus(0, nbd.size)).get(BASE_ALLOCATION)!;
      assert.equal(map[0]!.offset, 0);
      assert.equal(map.reduce((n, e) => n + e.length, 0), 32 * MiB, 'the extents cover the disk exactly');
      const data = map.filter((e) => !(e.flags & STATE_ZERO));
      assert.deepEqual(data.map((e) => [e.offset, e.length]), [[MiB, 192 * KiB], [20 * MiB, 64 * KiB]]);
      assert.deepEqual(map, await nbdinfoMap(served.socket, '', BASE_ALLOCATION), 'the same map as nbdinfo');
      assert.ok(map.some((e) => e.flags === (STATE_HOLE | STATE_ZERO)));

      // Whole-disk and unaligned reads, and a read of a hole.
      assert.ok((await nbd.read(0, nbd.size)).equals(model));
      assert.ok((await nbd.read(MiB - 3, 10)).equals(model.subarray(MiB - 3, MiB + 7)));
      assert.ok((await nbd.read(5 * MiB, 4096)).equals(Buffer.alloc(4096)));

      // Many requests in flight at once: replies are matched to their requests.
      const writes = Array.from({ length: 24 }, (_, i) => ({ offset: (i * 1_234_567) % (30 * MiB), data: seededBytes(`w${i}`, 10_000 + i * 777) }));
      await Promise.all(writes.map((w) => nbd.write(w.offset, w.data)));
      for (const w of writes) w.data.copy(model, w.offset);
      await nbd.writeZeroes(MiB + 4096, 8192);
      model.fill(0, MiB + 4096, MiB + 4096 + 8192);
      await nbd.flush();
      const reads = await Promise.all(writes.map((w) => nbd.read(w.offset - 100 < 0 ? 0 : w.offset - 100, 20_000)));
      reads.forEach((r, i) => {
        const from = Math.max(0, writes[i]!.offset - 100);
        assert.ok(r.equals(model.subarray(from, from + 20_000)), `read ${i}`);
      });
      await assert.rejects(nbd.read(nbd.size - 10, 20), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument');
    } finally {
      await nbd.close();
      await served.close();
    }
    // What Coffre wrote is what QEMU reads from the file.
    const check = join(dir, 'check.raw');
    await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', image, check]);
    const { readFile } = await import('node:fs/promises');
    assert.ok((await readFile(check)).equals(model), 'qemu-img reads back every byte written through NBD');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the qemu:dirty-bitmap context of a qemu-storage-daemon export marks exactly the clusters written', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-nbd-'));
  const image = join(dir, 'd.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', image, '16M']);
  const qsd = await startStorageDaemon(dir, [{ file: image, node: 'disk0' }], { nbd: true });
  const qmp = await QmpClient.connect(qsd.qmp);
  try {
    await qmp.execute('block-dirty-bitmap-add', { node: 'disk0', name: 'b', persistent: true });
    // QMP errors carry QEMU's class and words; the connection stays usable.
    await assert.rejects(qmp.execute('block-dirty-bitmap-add', { node: 'disk0', name: 'b' }), (e: unknown) => e instanceof QmpCommandError && e.code === 'HypervisorError' && e.errorClass === 'GenericError' && /already/.test(e.desc));
    await assert.rejects(qmp.execute('no-such-command'), (e: unknown) => e instanceof QmpCommandError && e.errorClass === 'CommandNotFound');
    const disk = await NbdClient.connect({ socket: qsd.nbd!, export: 'disk0' });
    // Cluster size 64 KiB: a 1-byte write marks its whole cluster.
    await disk.write(3 * MiB + 5, Buffer.from('x'));
    await disk.write(8 * MiB - 4096, Buffer.alloc(8192, 1));
    await disk.close();
    await qmp.execute('block-dirty-bitmap-disable', { node: 'disk0', name: 'b' });
    await qmp.execute('block-export-add', { type: 'nbd', id: 'ro', 'node-name': 'disk0', name: 'ro', writable: false, bitmaps: ['b'] });
    const ro = await NbdClient.connect({ socket: qsd.nbd!, export: 'ro', metaContexts: [BASE_ALLOCATION, dirtyBitmapContext('b')] });
    try {
      assert.equal(ro.info.readOnly, true);
      const status = await ro.blockStatus(0, ro.size);
      const dirty = status.get(dirtyBitmapContext('b'))!.filter((e) => e.flags & STATE_DIRTY);
      assert.deepEqual(dirty.map((e) => [e.offset, e.length]), [[3 * MiB, 64 * KiB], [8 * MiB - 64 * KiB, 128 * KiB]]);
      assert.deepEqual(status.get(dirtyBitmapContext('b')), await nbdinfoMap(qsd.nbd!, 'ro', dirtyBitmapContext('b')));
      // Block status in small windows gives the same answer as one big request.
      const pieces = await Promise.all([0, 4, 8, 12].map((m) => ro.blockStatus(m * MiB, 4 * MiB)));
      const joined: Extent[] = [];
      pieces.forEach((p, i) => appendExtents(joined, p.get(dirtyBitmapContext('b'))!, i * 4 * MiB, (i + 1) * 4 * MiB));
      assert.deepEqual(joined, status.get(dirtyBitmapContext('b')));
      await assert.rejects(ro.write(0, Buffer.from('no')), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument');
    } finally {
      await ro.close();
    }
    // A missing export, a missing context and a missing server each give a clear error.
    await assert.rejects(NbdClient.connect({ socket: qsd.nbd!, export: 'nope' }), (e: unknown) => e instanceof CoffreError && e.code === 'HypervisorError' && /no such export|refused/.test(e.message));
    await assert.rejects(NbdClient.connect({ socket: qsd.nbd!, export: 'ro', metaContexts: [dirtyBitmapContext('other')] }), (e: unknown) => e instanceof CoffreError && e.code === 'HypervisorError' && /does not offer/.test(e.message));
    await assert.rejects(NbdClient.connect({ socket: join(dir, 'none.sock'), export: '' }), (e: unknown) => e instanceof CoffreError && e.code === 'HypervisorUnreachable');
  } finally {
    qmp.close();
    await qsd.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('appendExtents keeps exactly the part of each reply past what is known (model check)', () => {
  fc.assert(fc.property(
    fc.array(fc.record({ length: fc.integer({ min: 1, max: 50 }), flags: fc.integer({ min: 0, max: 3 }) }), { minLength: 1, maxLength: 30 }),
    fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 10 }),
    (truth, cuts) => {
      // The truth as runs; replies describe it from any point on, in pieces of any size.
      const size = truth.reduce((n, e) => n + e.length, 0);
      const flagAt = (o: number) => { let at = 0; for (const e of truth) { if (o < at + e.length) return e.flags; at += e.length; } return -1; };
      const out: Extent[] = [];
      let covered = 0;
      for (let k = 0; covered < size; k++) {
        const want = cuts[k % cuts.length]!;
        const reply: Extent[] = [];
        for (let o = covered; o < Math.min(size, covered + want);) {
          let n = 1;
          while (o + n < size && flagAt(o + n) === flagAt(o)) n++;
          reply.push({ offset: o, length: n, flags: flagAt(o) });
          o += n;
        }
        covered = appendExtents(out, reply, covered, size);
      }
      let at = 0;
      for (const e of out) {
        assert.equal(e.offset, at);
        for (let o = e.offset; o < e.offset + e.length; o++) assert.equal(flagAt(o), e.flags);
        at += e.length;
      }
      assert.equal(at, size);
      for (let i = 1; i < out.length; i++) assert.notEqual(out[i]!.flags, out[i - 1]!.flags, 'neighbours with equal flags are merged');
    },
  ));
});
