/**
 * A running VM's disks through QEMU (issue 16), with real QEMU: qemu-storage-daemon serves two
 * qcow2 disks (QEMU's block layer without a guest: dirty bitmaps, block jobs and NBD exports as
 * in a VM). The test writes to the disks through the daemon's NBD exports between backups,
 * keeping a byte model of each disk, and checks:
 *
 * - a chain of five points: the first reads only allocated data, each later one reads and
 *   sends only the clusters written since the previous point (counters against the writes);
 * - an agent killed with kill -9 after reading (its commit held by a proxy) loses no change:
 *   the next backup reads the writes from before and after the kill, and cleans up after it;
 * - every point restores (to qcow2 from the vault, to raw, from the instant-restore internal
 *   snapshot) identical to the disk at its time, by `qemu-img compare`;
 * - QEMU restarted cleanly keeps the bitmap (incremental), QEMU killed loses it (a full read,
 *   said in the job), and the backup after that is incremental again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobInfo } from '../src/core/api.js';
import { CoffreError } from '../src/core/errors.js';
import { saveVmConfig, type VmConfig } from '../src/agent/vm/config.js';
import { backupVm, type VmBackupResult } from '../src/agent/vm/vm-backup.js';
import { restoreVm } from '../src/agent/vm/vm-restore.js';
import { listSnapshots, sweepSnapshots } from '../src/agent/vm/snapshot-store.js';
import { NbdClient } from '../src/agent/vm/nbd-client.js';
import { QmpClient } from '../src/agent/vm/qmp-client.js';
import { cli, harness, type TestAgent } from '../testkit/harness.js';
import { imagesIdentical, qemuImg, startStorageDaemon, type StorageDaemon } from '../testkit/qemu.js';
import { MiB, run, seededBytes } from '../testkit/vm-fixtures.js';

const SIZE = 40 * MiB;
const BLOCK = MiB;
const KiB = 1024;

const backupOpts = (a: TestAgent, config: VmConfig) => ({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, config });

/** A disk as the test sees it: the NBD connection it writes through, and a byte model. */
interface Disk { nbd: NbdClient; model: Buffer; written: [number, number][] }

async function write(d: Disk, offset: number, data: Buffer): Promise<void> {
  await d.nbd.write(offset, data);
  data.copy(d.model, offset);
  d.written.push([offset, offset + data.length]);
}

/** What a backup may read after writes: at least the bytes written, at most the blocks they touch. */
function bounds(written: [number, number][]): { min: number; max: number; blocks: number } {
  const blocks = new Set<number>();
  let min = 0;
  const covered: [number, number][] = [];
  for (const [a, b] of written) {
    for (let k = Math.floor(a / BLOCK); k <= Math.floor((b - 1) / BLOCK); k++) blocks.add(k);
    covered.push([a, b]);
  }
  // Distinct bytes written (writes may overlap).
  covered.sort((x, y) => x[0] - y[0]);
  let end = -1;
  for (const [a, b] of covered) {
    if (b <= end) continue;
    min += b - Math.max(a, end);
    end = b;
  }
  return { min, max: blocks.size * BLOCK, blocks: blocks.size };
}

/** The disk as QEMU serves it now, as a sparse raw file (read by qemu-img, not by Coffre). */
async function reference(qsd: StorageDaemon, node: string, file: string, model: Buffer): Promise<string> {
  await qemuImg(['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///${node}?socket=${qsd.nbd}`, file]);
  assert.ok((await readFile(file)).equals(model), `QEMU serves ${node} as the test wrote it`);
  return file;
}

/**
 * A proxy to the vault that never answers a point's commit: the agent is past reading when it
 * holds one. The vault speaks HTTPS with a pinned certificate; the proxy presents the vault's own.
 */
async function commitHoldingProxy(target: string, dataDir: string): Promise<{ url: string; held: Promise<void>; close(): Promise<void> }> {
  const upstream = new URL(target);
  const tls = { cert: await readFile(join(dataDir, 'tls', 'cert.pem')), key: await readFile(join(dataDir, 'tls', 'key.pem')) };
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => { release = r; });
  const server = (upstream.protocol === 'https:' ? createHttpsServer(tls) : createServer()) as Server;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST' && /^\/v1\/points\/[^/]+\/commit$/.test(req.url ?? '')) {
      release();
      req.resume();
      return; // never answered: the agent waits here until it is killed
    }
    const send = upstream.protocol === 'https:' ? httpsRequest : request;
    const up = send({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers, ca: tls.cert }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `${upstream.protocol}//127.0.0.1:${(server.address() as AddressInfo).port}`,
    held,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function coffreNodes(qmpSocket: string): Promise<{ nodes: string[]; jobs: number; exports: string[]; snapshots: string[] }> {
  const qmp = await QmpClient.connect(qmpSocket);
  try {
    const nodes = await qmp.execute<{ 'node-name': string; image?: { snapshots?: { name: string }[] } }[]>('query-named-block-nodes', { flat: true });
    const jobs = await qmp.execute<unknown[]>('query-block-jobs');
    const exports = await qmp.execute<{ id: string }[]>('query-block-exports');
    return {
      nodes: nodes.map((n) => n['node-name']).filter((n) => n.startsWith('coffre-')),
      jobs: jobs.length,
      exports: exports.map((e) => e.id).filter((e) => e.startsWith('coffre-')),
      snapshots: [...new Set(nodes.flatMap((n) => (n.image?.snapshots ?? []).map((s) => s.name)))].sort(),
    };
  } finally {
    qmp.close();
  }
}

test('a running VM of two qcow2 disks: a chain of five points reading only what changed, a killed agent losing nothing, exact restores', async (t) => {
  const h = await harness();
  let qsd: StorageDaemon | null = null;
  const disks: Disk[] = [];
  let killPid = 0;
  try {
    const a = await h.agent('hypervisor');
    const files = [join(h.dir, 'web-os.qcow2'), join(h.dir, 'web-data.qcow2')];
    for (const f of files) await qemuImg(['create', '-q', '-f', 'qcow2', f, String(SIZE)]);
    qsd = await startStorageDaemon(h.dir, [{ file: files[0]!, node: 'disk0' }, { file: files[1]!, node: 'disk1' }], { nbd: true });
    for (const node of ['disk0', 'disk1']) disks.push({ nbd: await NbdClient.connect({ socket: qsd.nbd!, export: node }), model: Buffer.alloc(SIZE), written: [] });
    const [d0, d1] = disks as [Disk, Disk];
    // Data in a few places; the rest of each disk is never written (holes).
    await write(d0, 0, seededBytes('os-0', 6 * MiB));
    await write(d0, 20 * MiB, seededBytes('os-20', 2 * MiB));
    await write(d1, 4 * MiB, seededBytes('data-4', 3 * MiB));

    const coffre = (args: string[], server?: string) => cli(['--agent-dir', a.agentDir, ...(server ? ['--server', server, ...(h.server.fingerprint ? ['--fingerprint', h.server.fingerprint] : [])] : []), ...args], {}, { cwd: h.dir, ...(server ? { onSpawn: (pid: number) => { killPid = pid; } } : {}) });
    const protect = await coffre(['vm', 'protect', 'web', '--qmp', qsd.qmp, '--nbd-socket', qsd.nbd!, '--json']);
    assert.equal(protect.code, 0, protect.stderr);
    const config = JSON.parse(protect.stdout) as VmConfig;
    assert.deepEqual(config.disks, [{ path: files[0], node: 'disk0' }, { path: files[1], node: 'disk1' }], 'both disks are found in QEMU, with their images');
    assert.equal(config.qmp, qsd.qmp);

    const points: { result: VmBackupResult; refs: string[] }[] = [];
    const backup = async (k: number): Promise<VmBackupResult> => {
      const result = await backupVm(backupOpts(a, config));
      const refs = [await reference(qsd!, 'disk0', join(h.dir, `ref-${k}-0.raw`), d0.model), await reference(qsd!, 'disk1', join(h.dir, `ref-${k}-1.raw`), d1.model)];
      points.push({ result, refs });
      return result;
    };
    const expectIncremental = (r: VmBackupResult, i: number, written: [number, number][]) => {
      const disk = r.disks[i]!;
      const b = bounds(written);
      assert.equal(disk.changeTracking.mode, 'incremental', `disk ${i}: ${disk.changeTracking.reason ?? ''}`);
      assert.ok(disk.bytesScanned >= b.min && disk.bytesScanned <= b.max, `disk ${i} read ${disk.bytesScanned} bytes for ${b.min} bytes written in ${b.blocks} block(s)`);
      assert.equal(disk.blocksRead, b.blocks, `disk ${i}: exactly the blocks written are read`);
      assert.ok(disk.bytesUploaded <= b.max + 64 * KiB, `disk ${i} sent ${disk.bytesUploaded} bytes`);
    };

    const first = await backup(1);
    await t.test('the first backup reads only the allocated clusters of each disk, and keeps internal snapshots', async () => {
      assert.deepEqual(first.disks.map((d) => d.changeTracking.mode), ['full', 'full']);
      assert.match(first.disks[0]!.changeTracking.reason!, /first backup/);
      assert.deepEqual(first.disks.map((d) => d.bytesScanned), [8 * MiB, 3 * MiB], 'holes are never read');
      assert.deepEqual(first.disks.map((d) => d.format), ['qcow2', 'qcow2']);
      assert.deepEqual(first.disks.map((d) => d.snapshot), ['internal', 'internal']);
      assert.equal(first.snapshot?.method, 'internal');
      assert.deepEqual(first.notes, []);
      const job = await a.client.getJob(first.jobId);
      const details = job.details as { disks: { changeTracking: { mode: string; reason?: string } }[]; instantRestore: { method: string } };
      assert.match(details.disks[1]!.changeTracking.reason!, /first backup/, 'the job says why it read everything');
      assert.equal(details.instantRestore.method, 'internal');
    });

    d0.written = [];
    d1.written = [];
    await write(d0, MiB + 64 * KiB, seededBytes('p2-a', 256 * KiB));
    await write(d0, 30 * MiB + 5, seededBytes('p2-b', 100 * KiB));
    const second = await backup(2);
    await t.test('an incremental reads and sends only the clusters written since the last point', async () => {
      expectIncremental(second, 0, d0.written);
      assert.equal(second.disks[1]!.bytesScanned, 0, 'an unchanged disk is not read at all');
      assert.equal(second.disks[1]!.blocksRead, 0);
      assert.equal(second.disks[1]!.bytesUploaded, 0);
      t.diagnostic(`point 2 read ${second.counters.bytesScanned} bytes and sent ${second.counters.bytesUploaded} for ${bounds(d0.written).min} bytes written; disks hold ${2 * SIZE} bytes`);
    });

    d0.written = [];
    d1.written = [];
    await write(d0, 10 * MiB, seededBytes('p3-a', MiB));
    await write(d1, SIZE - 64 * KiB, seededBytes('p3-b', 64 * KiB));
    const third = await backup(3);
    expectIncremental(third, 0, d0.written);
    expectIncremental(third, 1, d1.written);

    // Writes, then a backup killed -9 once it has read everything (its commit is held back).
    d0.written = [];
    d1.written = [];
    await write(d0, 5 * MiB, seededBytes('kill-a', 512 * KiB));
    await write(d1, 0, seededBytes('kill-b', 128 * KiB));
    const proxy = await commitHoldingProxy(h.server.url, join(h.dir, 'data'));
    let killed;
    try {
      const running = coffre(['vm', 'backup', 'web'], proxy.url);
      // The backup must reach its commit; if it ends first, the test fails instead of waiting.
      await Promise.race([proxy.held, running.then((r) => { throw new Error(`the backup ended before its commit (${r.code}): ${r.stderr}`); })]);
      process.kill(killPid, 'SIGKILL');
      killed = await running;
      killPid = 0;
    } finally {
      await proxy.close();
    }
    await t.test('a backup killed after reading leaves no point, and leftovers in QEMU', async () => {
      assert.equal(killed.signal, 'SIGKILL', killed.stderr);
      const jobs = await a.client.listJobs();
      const job = jobs.find((j: JobInfo) => j.operation === 'Backup' && !points.some((p) => p.result.jobId === j.id))!;
      assert.ok(job && job.status !== 'Completed');
      await assert.rejects(a.client.getPoint(job.pointId!), (e: unknown) => e instanceof CoffreError && e.code === 'PointNotFound');
      const left = await coffreNodes(qsd!.qmp);
      assert.ok(left.exports.length > 0, 'the killed agent left its exports in QEMU');
      assert.ok(left.snapshots.includes(`coffre-${job.pointId}`), 'and the internal snapshot of a point that was never committed');
    });
    await write(d0, 33 * MiB, seededBytes('after-kill-a', 64 * KiB));
    await write(d1, 20 * MiB, seededBytes('after-kill-b', 64 * KiB));
    const fourth = await backup(4);
    await t.test('the next backup sees every change since the last committed point, before and after the kill, and cleans up', async () => {
      expectIncremental(fourth, 0, d0.written);
      expectIncremental(fourth, 1, d1.written);
      const left = await coffreNodes(qsd!.qmp);
      assert.deepEqual([left.nodes, left.jobs, left.exports], [[], 0, []], 'no overlay, job or export is left in QEMU');
      assert.deepEqual(left.snapshots, points.map((p) => `coffre-${p.result.point.id}`).sort(), 'internal snapshots of committed points only');
    });

    d0.written = [];
    d1.written = [];
    await d0.nbd.writeZeroes(20 * MiB, 2 * MiB);
    d0.model.fill(0, 20 * MiB, 22 * MiB);
    await write(d0, 2 * MiB, seededBytes('p5-a', 64 * KiB));
    await write(d1, 8 * MiB, seededBytes('p5-b', MiB));
    const fifth = await backup(5);
    await t.test('zeroed clusters become holes without being read', async () => {
      const disk = fifth.disks[0]!;
      assert.equal(disk.changeTracking.mode, 'incremental');
      assert.equal(disk.blocksRead, 1, 'only the block with new data is read; the zeroed blocks are not');
      assert.ok(disk.bytesScanned <= MiB);
      expectIncremental(fifth, 1, d1.written);
    });

    await t.test('every point of the chain restores from the vault identical to the disk at its time (qcow2 and raw)', async () => {
      for (const [k, p] of points.entries()) {
        const target = join(h.dir, `restore-${k + 1}`);
        // Blocks opened on the main thread for some points, by worker threads for the others.
        const r = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: p.result.point.id, target, source: 'vault', workers: k % 2 ? 2 : 0 });
        assert.equal(r.job!.status, 'Completed');
        assert.deepEqual(r.disks.map((d) => [d.format, d.source]), [['qcow2', 'vault'], ['qcow2', 'vault']]);
        for (const [i, d] of r.disks.entries()) {
          const same = await imagesIdentical(d.file, 'qcow2', p.refs[i]!, 'raw');
          assert.ok(same.same, `point ${k + 1} disk ${i}: ${same.output}`);
        }
        await rm(target, { recursive: true, force: true });
      }
      const raw = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: points[2]!.result.point.id, target: join(h.dir, 'raw-3'), format: 'raw', source: 'vault' });
      assert.ok((await readFile(raw.disks[0]!.file)).equals(await readFile(points[2]!.refs[0]!)), 'point 3 as a raw image, byte for byte');
    });

    await t.test('instant restore reads the internal snapshots inside the running disks\' images', async () => {
      const held = await listSnapshots(a.agentDir, 'web');
      assert.deepEqual(held.map((s) => s.pointId), points.map((p) => p.result.point.id));
      for (const k of [1, 4]) {
        const r = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: points[k]!.result.point.id, target: join(h.dir, `instant-${k}`) });
        assert.equal(r.source, 'snapshot');
        assert.equal(r.job!.bytesUploaded, 0, 'nothing read from the vault');
        for (const [i, d] of r.disks.entries()) assert.ok((await imagesIdentical(d.file, 'qcow2', points[k]!.refs[i]!, 'raw')).same, `point ${k + 1} disk ${i} from the snapshot`);
      }
      // Past their window, the sweep has QEMU delete them (through QMP: the images are in use).
      const removed = await sweepSnapshots(a.agentDir, { now: () => new Date(Date.now() + 3 * 86_400_000) });
      assert.equal(removed.length, 5);
      assert.deepEqual((await coffreNodes(qsd!.qmp)).snapshots, []);
      assert.deepEqual(await listSnapshots(a.agentDir, 'web'), []);
    });
  } finally {
    if (killPid) {
      try {
        process.kill(killPid, 'SIGKILL');
      } catch {
        // Already gone: the test killed it or it ended.
      }
    }
    await Promise.allSettled(disks.map((d) => d.nbd.close()));
    await qsd?.kill();
    await h.close();
  }
});

test('QEMU restarted: with its bitmap saved the next backup is incremental; killed, a full read said in the job, then incremental again', async () => {
  const h = await harness();
  let qsd: StorageDaemon | null = null;
  const file = join(h.dir, 'db.qcow2');
  const start = async () => { qsd = await startStorageDaemon(h.dir, [{ file, node: 'vda' }]); return qsd; };
  /** Writes while QEMU is down, with qemu-io: the image's persistent bitmaps (if any) record them. */
  const offline = async (offset: number, length: number, pattern: number) => { await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${offset} ${length}`, file]); };
  const snapshotOf = async (k: number) => {
    const ref = join(h.dir, `ref-${k}.raw`);
    await qemuImg(['convert', '-U', '-f', 'qcow2', '-O', 'raw', file, ref]);
    return ref;
  };
  try {
    const a = await h.agent();
    await qemuImg(['create', '-q', '-f', 'qcow2', file, String(24 * MiB)]);
    await offline(0, 4 * MiB, 0x41);
    const refs = [await snapshotOf(1)];
    await start();
    const now = new Date().toISOString();
    const config: VmConfig = { version: 1, name: 'db', disks: [{ path: file, node: 'vda' }], qmp: qsd!.qmp, scriptTimeoutSeconds: 30, blockSize: BLOCK, policyAssigned: false, createdAt: now, updatedAt: now };
    await saveVmConfig(a.agentDir, config);
    const results = [await backupVm(backupOpts(a, config))];
    assert.equal(results[0]!.disks[0]!.changeTracking.mode, 'full');
    assert.equal(results[0]!.disks[0]!.bytesScanned, 4 * MiB);

    // A clean restart: QEMU writes the bitmap into the image; writes while it is down are recorded too.
    await qsd!.stop();
    await offline(9 * MiB, 192 * KiB, 0x42);
    refs.push(await snapshotOf(2));
    await start();
    results.push(await backupVm(backupOpts(a, config)));
    assert.equal(results[1]!.disks[0]!.changeTracking.mode, 'incremental', results[1]!.disks[0]!.changeTracking.reason);
    assert.equal(results[1]!.disks[0]!.blocksRead, 1);
    assert.ok(results[1]!.disks[0]!.bytesScanned >= 192 * KiB && results[1]!.disks[0]!.bytesScanned <= MiB);

    // QEMU killed: the bitmap of the running session was never written to the image.
    await qsd!.kill();
    await offline(15 * MiB, 64 * KiB, 0x43);
    refs.push(await snapshotOf(3));
    await start();
    // This one from the command line, as a user sees it.
    const shown = await cli(['--agent-dir', a.agentDir, 'vm', 'backup', 'db'], {}, { cwd: h.dir });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /4\.25 MiB \(full\)/);
    assert.match(shown.stdout, /disk 0 read in full: QEMU has no dirty bitmap coffre-db-\d+ since point/);
    assert.match(shown.stdout, /instant restore from the local snapshot \(internal qcow2 snapshot\)/);
    const job = (await a.client.listJobs()).find((j) => j.operation === 'Backup' && !results.some((r) => r.jobId === j.id))!;
    const third = (job.details as { disks: VmBackupResult['disks'] }).disks[0]!;
    results.push({ ...results[1]!, jobId: job.id, point: await a.client.getPoint(job.pointId!) });
    assert.equal(third.changeTracking.mode, 'full');
    assert.match(third.changeTracking.reason!, /QEMU has no dirty bitmap .* since point .*restarted without saving it/);
    assert.equal(third.bytesScanned, 4 * MiB + 192 * KiB + 64 * KiB, 'a full read of every allocated cluster');

    await qsd!.stop();
    await offline(20 * MiB, 128 * KiB, 0x44);
    refs.push(await snapshotOf(4));
    await start();
    results.push(await backupVm(backupOpts(a, config)));
    assert.equal(results[3]!.disks[0]!.changeTracking.mode, 'incremental', 'incremental again after the full read');
    assert.equal(results[3]!.disks[0]!.blocksRead, 1);

    for (const [k, r] of results.entries()) {
      const out = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: r.point.id, target: join(h.dir, `restore-${k}`), source: 'vault' });
      const same = await imagesIdentical(out.disks[0]!.file, 'qcow2', refs[k]!, 'raw');
      assert.ok(same.same, `point ${k + 1}: ${same.output}`);
    }
  } finally {
    await (qsd as StorageDaemon | null)?.kill();
    await h.close();
  }
});
