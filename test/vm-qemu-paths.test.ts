/**
 * The other ways a VM's disks reach Coffre, with real QEMU binaries:
 *
 * - a raw disk in a running QEMU: no internal snapshot exists, so the point-in-time view is a
 *   temporary overlay filled by copy-before-write (fleecing), read over NBD; changes are still
 *   tracked by a dirty bitmap, and the guest's file systems are frozen through the QEMU guest
 *   agent's protocol (a small fake agent here: no guest OS can boot in the test machine);
 * - a qcow2 image file no QEMU holds: an internal snapshot taken by qemu-img, read from the file;
 *   the same image held by a running QEMU is refused with a way out (--qmp).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join, relative as relativePath } from 'node:path';
import { CoffreError } from '../src/core/errors.js';
import type { VmConfig } from '../src/agent/vm/config.js';
import { backupVm } from '../src/agent/vm/vm-backup.js';
import { restoreVm } from '../src/agent/vm/vm-restore.js';
import { sweepSnapshots } from '../src/agent/vm/snapshot-store.js';
import { NbdClient } from '../src/agent/vm/nbd-client.js';
import { QmpClient } from '../src/agent/vm/qmp-client.js';
import { cli, harness, type TestAgent } from '../testkit/harness.js';
import { imagesIdentical, qemuImg, startStorageDaemon, type StorageDaemon } from '../testkit/qemu.js';
import { MiB, run, seededBytes } from '../testkit/vm-fixtures.js';

const KiB = 1024;
const backupOpts = (a: TestAgent, config: VmConfig) => ({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, config });
const vmConfig = (name: string, disks: VmConfig['disks'], extra: Partial<VmConfig> = {}): VmConfig => {
  const now = new Date().toISOString();
  return { version: 1, name, disks, scriptTimeoutSeconds: 30, blockSize: MiB, policyAssigned: false, createdAt: now, updatedAt: now, ...extra };
};

/**
 * A QEMU guest agent as seen from the host: answers guest-sync-delimited (after some stale
 * output, as a channel may hold), guest-fsfreeze-freeze and -thaw, and records what it was asked.
 */
async function fakeGuestAgent(path: string): Promise<{ calls: string[]; server: Server }> {
  const calls: string[] = [];
  const server = createServer((s: Socket) => {
    let buffered = '';
    s.on('data', (d: Buffer) => {
      buffered += d.toString('latin1').replace(/\xff/g, '');
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const msg = JSON.parse(buffered.slice(0, nl)) as { execute: string; arguments?: { id?: number } };
        buffered = buffered.slice(nl + 1);
        calls.push(msg.execute);
        if (msg.execute === 'guest-sync-delimited') s.write(Buffer.concat([Buffer.from('{"return": 12345}\n'), Buffer.from([0xff]), Buffer.from(`{"return": ${msg.arguments!.id}}\n`)]));
        else s.write(`{"return": 2}\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { calls, server };
}

test('a raw disk in a running QEMU: a fleecing overlay read over NBD, dirty-bitmap incrementals, guest file systems frozen by the guest agent', async () => {
  const h = await harness();
  let qsd: StorageDaemon | null = null;
  let disk: NbdClient | null = null;
  const ga = await fakeGuestAgent(join(h.dir, 'qga.sock'));
  try {
    const a = await h.agent();
    const image = join(h.dir, 'raw-disk.img');
    await run('truncate', ['-s', String(24 * MiB), image]);
    qsd = await startStorageDaemon(h.dir, [{ file: image, node: 'disk0', format: 'raw' }], { nbd: true });
    disk = await NbdClient.connect({ socket: qsd.nbd!, export: 'disk0' });
    const model = Buffer.alloc(24 * MiB);
    const write = async (at: number, data: Buffer) => { await disk!.write(at, data); data.copy(model, at); };
    await write(2 * MiB, seededBytes('raw-a', 3 * MiB));
    const config = vmConfig('rawvm', [{ path: image, node: 'disk0' }], { qmp: qsd.qmp, nbdSocket: qsd.nbd!, guestAgent: join(h.dir, 'qga.sock') });

    const first = await backupVm(backupOpts(a, config));
    assert.equal(first.consistency, 'filesystem', 'frozen through the guest agent');
    assert.deepEqual(ga.calls.filter((c) => c !== 'guest-sync-delimited'), ['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
    assert.deepEqual(first.steps.map((s) => s.step), ['guest-freeze', 'snapshot', 'guest-thaw']);
    const d0 = first.disks[0]!;
    assert.deepEqual([d0.format, d0.snapshot, d0.changeTracking.mode], ['raw', 'none', 'full']);
    assert.equal(first.snapshot, null, 'no instant-restore copy of a raw disk in QEMU');
    assert.match(first.notes.join('\n'), /not a qcow2 image.*temporary QEMU overlay.*restores read the vault/);

    await write(10 * MiB + 4 * KiB, seededBytes('raw-b', 200 * KiB));
    const second = await backupVm(backupOpts(a, config));
    const d1 = second.disks[0]!;
    assert.equal(d1.changeTracking.mode, 'incremental', d1.changeTracking.reason);
    assert.equal(d1.blocksRead, 1, 'only the block written is read');
    assert.ok(d1.bytesScanned <= MiB && d1.bytesScanned >= 200 * KiB);

    const qmp = await QmpClient.connect(qsd.qmp);
    try {
      const nodes = await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
      assert.deepEqual(nodes.map((n) => n['node-name']).filter((n) => n.startsWith('coffre-')), [], 'the overlay is gone');
      assert.deepEqual(await qmp.execute('query-block-jobs'), []);
    } finally {
      qmp.close();
    }
    const r = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: second.point.id, target: join(h.dir, 'out') });
    assert.equal(r.source, 'vault');
    assert.ok((await readFile(r.disks[0]!.file)).equals(model), 'the raw disk, byte for byte');
  } finally {
    await disk?.close();
    await qsd?.kill();
    await new Promise<void>((r) => ga.server.close(() => r()));
    await h.close();
  }
});

test('a qcow2 image file no QEMU holds: an internal snapshot read from the file; a running QEMU\'s image is refused with a way out', async () => {
  const h = await harness();
  let qsd: StorageDaemon | null = null;
  try {
    const a = await h.agent();
    const image = join(h.dir, 'files.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, String(32 * MiB)]);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 17 0 5M', '-c', 'write -P 18 20M 64k', image]);
    const config = vmConfig('files', [{ path: image }]);
    const first = await backupVm(backupOpts(a, config));
    const d = first.disks[0]!;
    assert.deepEqual([d.format, d.snapshot, d.changeTracking.mode, d.size], ['qcow2', 'internal', 'compare', 32 * MiB]);
    assert.equal(d.bytesScanned, 5 * MiB + 64 * KiB, 'only allocated clusters are read');
    const ref1 = join(h.dir, 'ref1.raw');
    await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', image, ref1]);

    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 19 1M 64k', image]);
    const second = await backupVm(backupOpts(a, config));
    assert.equal(second.disks[0]!.changedBlocks, 1);
    assert.match((await qemuImg(['snapshot', '-l', image])), new RegExp(`coffre-${second.point.id}`), 'the point\'s internal snapshot is inside the image');

    for (const [point, source] of [[first.point.id, 'vault'], [first.point.id, 'snapshot']] as const) {
      const r = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: point, target: join(h.dir, `out-${source}`), source });
      assert.equal(r.source, source);
      assert.equal(r.disks[0]!.file, join(h.dir, `out-${source}`, 'files.qcow2'));
      const same = await imagesIdentical(r.disks[0]!.file, 'qcow2', ref1, 'raw');
      assert.ok(same.same, `${source}: ${same.output}`);
    }
    const asRaw = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: first.point.id, target: join(h.dir, 'out-raw'), format: 'raw' });
    assert.ok((await readFile(asRaw.disks[0]!.file)).equals(await readFile(ref1)));

    // Past the instant-restore window, the sweep deletes the internal snapshots from the image.
    const later = { now: () => new Date(Date.now() + 3 * 86_400_000) };
    const removed = await sweepSnapshots(a.agentDir, later);
    assert.deepEqual(removed.map((r) => r.pointId).sort(), [first.point.id, second.point.id].sort());
    assert.doesNotMatch(await qemuImg(['snapshot', '-l', image]), /coffre-/);

    // The same image held by a running QEMU: no snapshot behind its back.
    qsd = await startStorageDaemon(h.dir, [{ file: image, node: 'vda' }]);
    await assert.rejects(backupVm(backupOpts(a, config)), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument' && /--qmp SOCKET/.test(e.message));
    const both = await cli(['--agent-dir', a.agentDir, 'vm', 'protect', 'x', '--disk', image, '--qmp', qsd.qmp], {}, { cwd: h.dir });
    assert.equal(both.code, 2);
    assert.match(both.stderr, /with --qmp the disks are found in QEMU/);
    const none = await cli(['--agent-dir', a.agentDir, 'vm', 'protect', 'x', '--qmp', join(h.dir, 'nothing.sock')], {}, { cwd: h.dir });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /nothing listens there .*\[HypervisorUnreachable\]/);

    // An agent folder named relative to the working folder: QEMU, whose own working folder is
    // another, is given absolute paths (the block map of the dirty bitmap lives there).
    const relative = ['--agent-dir', relativePath(h.dir, a.agentDir)];
    const live = await cli([...relative, 'vm', 'protect', 'held', '--qmp', qsd.qmp, '--node', 'vda'], {}, { cwd: h.dir });
    assert.equal(live.code, 0, live.stderr);
    for (const kind of ['full', 'incremental']) {
      const b = await cli([...relative, 'vm', 'backup', 'held', '--json'], {}, { cwd: h.dir });
      assert.equal(b.code, 0, `${kind}: ${b.stderr}`);
      assert.equal((JSON.parse(b.stdout) as { status: string }).status, 'Completed', kind);
    }
  } finally {
    await qsd?.kill();
    await h.close();
  }
});
