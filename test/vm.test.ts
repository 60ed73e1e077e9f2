/**
 * Whole-VM backup end to end (SPEC "VM backup flow"), on real ext4 disk images built by
 * `mkfs.ext4 -d` and patched with `debugfs -w`, a real vault server and a registered agent:
 * two disks in parallel, changed blocks only, byte-exact restores (cmp; qemu-img for VHD),
 * file-level recovery, and instant restore from the snapshot versus the vault.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, open, readFile, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { CoffreError } from '../src/core/errors.js';
import { saveVmConfig, type VmConfig } from '../src/agent/vm/config.js';
import { backupVm } from '../src/agent/vm/vm-backup.js';
import { restoreVm } from '../src/agent/vm/vm-restore.js';
import { extractFiles, listFiles } from '../src/agent/vm/file-recovery.js';
import { listSnapshots } from '../src/agent/vm/snapshot-store.js';
import { harness, type TestAgent } from '../testkit/harness.js';
import { cmp, debugfsWrite, differingBlocks, MiB, mkfsExt4, partitionedDisk, qemuCompare, run, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

const BLOCK = MiB;

function vmConfig(name: string, disks: string[], extra: Partial<VmConfig> = {}): VmConfig {
  const now = new Date().toISOString();
  return { version: 1, name, disks: disks.map((path) => ({ path })), scriptTimeoutSeconds: 30, blockSize: BLOCK, policyAssigned: false, createdAt: now, updatedAt: now, ...extra };
}

const backupOpts = (a: TestAgent, config: VmConfig) => ({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, config });
const restoreOpts = (a: TestAgent, pointId: string) => ({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId });

test('a VM of two ext4 disks: parallel changed-block backups, exact restores, file recovery, instant restore', async (t) => {
  const h = await harness();
  try {
    const a = await h.agent('hypervisor');
    const dir = h.dir;
    // Disk 0: an OS-like file system. Disk 1: a data file system inside an MBR partition.
    const nginxConf = seededText('nginx', 200);
    await writeTree(join(dir, 'os-src'), {
      'etc/nginx/nginx.conf': nginxConf,
      'etc/nginx/sites/default.conf': seededText('site', 50),
      'etc/hostname': 'web01\n',
      'var/www/index.html': seededText('index', 2000),
      'usr/lib/blob.bin': seededBytes('os-lib', 6 * MiB),
    });
    await writeTree(join(dir, 'data-src'), { 'srv/data/a.bin': seededBytes('data-a', 5 * MiB), 'srv/data/b.txt': seededText('data-b', 20000) });
    const os = join(dir, 'web01-os.img');
    const data = join(dir, 'web01-data.img');
    await mkfsExt4(os, join(dir, 'os-src'), 64);
    await mkfsExt4(join(dir, 'data.fs'), join(dir, 'data-src'), 40);
    await partitionedDisk(data, join(dir, 'data.fs'));
    const config = vmConfig('web01', [os, data]);
    await saveVmConfig(a.agentDir, config);

    const first = await backupVm(backupOpts(a, config));
    await copyFile(os, join(dir, 'os-v1.img'));
    await copyFile(data, join(dir, 'data-v1.img'));

    await t.test('the first backup reads both disks in full and stores only their non-zero blocks', async () => {
      assert.equal(first.disks.length, 2);
      assert.equal(first.consistency, 'crash');
      assert.equal(first.point.files, 2);
      assert.equal(first.point.bytes, 64 * MiB + 41 * MiB);
      assert.equal(first.counters.bytesScanned, 105 * MiB);
      for (const d of first.disks) {
        assert.ok(d.zeroBlocks > 0, `disk ${d.index} has zero blocks that are not stored`);
        assert.ok(d.bytesNew <= (d.blocks - d.zeroBlocks) * BLOCK);
        assert.ok(d.bytesUploaded > 0);
      }
      const job = await a.client.getJob(first.jobId);
      assert.equal(job.status, 'Completed');
      const details = job.details as { disks: { bytesScanned: number; bytesNew: number; bytesUploaded: number }[]; consistency: string };
      assert.equal(details.consistency, 'crash');
      assert.deepEqual(details.disks.map((d) => d.bytesUploaded), first.disks.map((d) => d.bytesUploaded));
      assert.equal(job.bytesUploaded, first.disks[0]!.bytesUploaded + first.disks[1]!.bytesUploaded);
    });

    // Change a few files inside disk 0, as a running VM would; disk 1 stays as it was.
    const newConf = seededText('nginx-v2', 300);
    await writeTree(join(dir, 'patch'), { 'nginx.conf': newConf, 'new.html': seededText('new-page', 1500) });
    await debugfsWrite(os, ['rm /etc/nginx/nginx.conf', `write ${join(dir, 'patch', 'nginx.conf')} /etc/nginx/nginx.conf`, `write ${join(dir, 'patch', 'new.html')} /var/www/new.html`]);
    const before = await readFile(join(dir, 'os-v1.img'));
    const after = await readFile(os);
    const changed = differingBlocks(before, after, BLOCK);
    const second = await backupVm(backupOpts(a, config));

    await t.test('the second backup sends only the changed blocks of the changed disk', async () => {
      assert.ok(changed.length > 0 && changed.length <= 8, `the patch changed ${changed.length} blocks`);
      const [d0, d1] = second.disks;
      assert.equal(d0!.changedBlocks, changed.length, 'exactly the blocks whose bytes differ are seen as changed');
      assert.ok(d0!.bytesNew <= changed.length * BLOCK);
      assert.ok(d0!.bytesUploaded > 0 && d0!.bytesUploaded <= changed.length * BLOCK + 64 * 1024, `sent ${d0!.bytesUploaded} bytes for ${changed.length} changed blocks`);
      assert.equal(d1!.changedBlocks, 0);
      assert.equal(d1!.bytesNew, 0);
      assert.equal(d1!.bytesUploaded, 0);
      assert.equal(second.counters.bytesScanned, 105 * MiB, 'every block is read and hashed');
      t.diagnostic(`second backup: ${changed.length} changed 1 MiB blocks, bytesNew ${second.counters.bytesNew}, bytesUploaded ${second.counters.bytesUploaded} of ${second.counters.bytesScanned} bytes of disk (first: ${first.counters.bytesUploaded})`);
      assert.ok(second.counters.bytesUploaded < 0.05 * second.counters.bytesScanned, 'near the changed blocks\' size, not the disks\'');
      const points = await a.client.listPoints({ item: 'web01' });
      assert.deepEqual(points.map((p) => p.id), [first.point.id, second.point.id]);
    });

    await t.test('both points restore byte for byte from the vault, as sparse raw images', async () => {
      for (const [point, osRef, dataRef] of [[first.point.id, join(dir, 'os-v1.img'), join(dir, 'data-v1.img')], [second.point.id, os, data]] as const) {
        const target = join(dir, `restore-${point}`);
        const r = await restoreVm({ ...restoreOpts(a, point), target, source: 'vault' });
        assert.equal(r.source, 'vault');
        assert.equal(r.job!.status, 'Completed');
        assert.equal((r.job!.details as { source: string }).source, 'vault');
        assert.deepEqual(r.disks.map((d) => d.file), [join(target, 'web01-os.img'), join(target, 'web01-data.img')]);
        assert.ok(await cmp(r.disks[0]!.file, osRef), `disk 0 of ${point} is identical`);
        assert.ok(await cmp(r.disks[1]!.file, dataRef), `disk 1 of ${point} is identical`);
        const s = await stat(r.disks[0]!.file);
        assert.ok(s.blocks * 512 < s.size / 2, 'zero blocks are holes');
      }
    });

    await t.test('a restore to fixed VHD is read by qemu-img as identical to the original', async () => {
      const target = join(dir, 'restore-vhd');
      const r = await restoreVm({ ...restoreOpts(a, second.point.id), target, format: 'vhd', source: 'vault' });
      assert.deepEqual(r.disks.map((d) => d.format), ['vhd', 'vhd']);
      for (const [d, ref] of [[r.disks[0]!, os], [r.disks[1]!, data]] as const) {
        const q = await qemuCompare(ref, d.file);
        assert.ok(q.same, `qemu-img compare ${ref} ${d.file}: ${q.output}`);
        assert.match(q.output, /identical/);
      }
    });

    await t.test('instant restore from the snapshot gives the same bytes as the vault', async () => {
      const held = await listSnapshots(a.agentDir, 'web01');
      assert.deepEqual(held.map((s) => s.pointId), [first.point.id, second.point.id]);
      const fromSnap = await restoreVm({ ...restoreOpts(a, second.point.id), target: join(dir, 'instant') });
      assert.equal(fromSnap.source, 'snapshot');
      assert.deepEqual(fromSnap.disks.map((d) => d.blocksFromVault), [0, 0]);
      assert.equal(fromSnap.job!.bytesUploaded, 0, 'nothing read from the vault');
      assert.equal((fromSnap.job!.details as { source: string }).source, 'snapshot');
      const fromVault = join(dir, `restore-${second.point.id}`);
      assert.ok(await cmp(fromSnap.disks[0]!.file, join(fromVault, 'web01-os.img')));
      assert.ok(await cmp(fromSnap.disks[1]!.file, join(fromVault, 'web01-data.img')));
      // Only disk 1, by prefix of the point id.
      const one = await restoreVm({ ...restoreOpts(a, second.point.id.slice(0, 8)), target: join(dir, 'instant-one'), disks: [1] });
      assert.deepEqual(one.disks.map((d) => d.index), [1]);
      assert.ok(await cmp(one.disks[0]!.file, data));

      // A snapshot block that no longer matches the point is read from the vault instead.
      const snapFile = join(held[1]!.dir, 'disk-1.img');
      const { mtime, atime } = await stat(snapFile);
      const fh = await open(snapFile, 'r+');
      await fh.write(Buffer.from('tampered'), 0, 8, MiB + 4096);
      await fh.close();
      await utimes(snapFile, atime, mtime);
      const mixed = await restoreVm({ ...restoreOpts(a, second.point.id), target: join(dir, 'instant-mixed'), disks: [1] });
      assert.equal(mixed.source, 'snapshot+vault');
      assert.equal(mixed.disks[0]!.blocksFromVault, 1);
      assert.deepEqual(mixed.warnings.map((w) => w.code), ['SnapshotChanged']);
      assert.ok(await cmp(mixed.disks[0]!.file, data));
      // A snapshot file changed since the backup (its time moved) is not used at all.
      await utimes(snapFile, atime, new Date());
      const vault = await restoreVm({ ...restoreOpts(a, second.point.id), target: join(dir, 'instant-vault'), disks: [1] });
      assert.equal(vault.source, 'vault');
      assert.ok(await cmp(vault.disks[0]!.file, data));
    });

    await t.test('a restore never writes over a live disk or an existing file unless told to', async () => {
      await assert.rejects(restoreVm({ ...restoreOpts(a, first.point.id), target: dir }), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument' && /live disk/.test(e.message));
      await assert.rejects(restoreVm({ ...restoreOpts(a, first.point.id), target: join(dir, 'instant') }), /already exists/);
      assert.ok(await cmp(os, join(dir, 'instant', 'web01-os.img')), 'nothing was overwritten');
      // With replace, the live disk 1 is rolled back to point 1 (in place, atomically).
      const r = await restoreVm({ ...restoreOpts(a, first.point.id), disks: [0], replace: true });
      assert.equal(r.disks[0]!.file, os);
      assert.ok(await cmp(os, join(dir, 'os-v1.img')));
    });

    await t.test('file-level recovery lists and extracts files from a disk point, from the snapshot or the vault', async () => {
      const base = { ...restoreOpts(a, second.point.id), disk: 0 };
      const listed = await listFiles({ ...base, path: '/etc/nginx' });
      assert.equal(listed.source, 'snapshot');
      assert.deepEqual(listed.entries.map((e) => `${e.type}:${e.name}`).sort(), ['dir:sites', 'file:nginx.conf']);
      assert.equal(listed.entries.find((e) => e.name === 'nginx.conf')!.size, Buffer.byteLength(newConf));
      const one = await listFiles({ ...base, path: '/etc/hostname', source: 'vault' });
      assert.equal(one.source, 'vault');
      assert.deepEqual(one.entries.map((e) => [e.name, e.type, e.size]), [['hostname', 'file', 6]]);

      for (const source of ['snapshot', 'vault'] as const) {
        const target = join(dir, `files-${source}`);
        const r = await extractFiles({ ...base, path: '/etc/nginx', target, source });
        assert.equal(r.source, source);
        assert.equal(r.written, join(target, 'nginx'));
        assert.equal(await readFile(join(target, 'nginx', 'nginx.conf'), 'utf8'), newConf, 'the changed file, as in point 2');
        assert.equal(await readFile(join(target, 'nginx', 'sites', 'default.conf'), 'utf8'), seededText('site', 50));
        assert.equal(r.files, 2);
        assert.equal((await a.client.getJob(r.jobId)).status, 'Completed');
      }
      // Point 1 has the old file; a single file can be extracted too.
      const old = await extractFiles({ ...restoreOpts(a, first.point.id), disk: 0, path: '/etc/nginx/nginx.conf', target: join(dir, 'files-old'), source: 'vault' });
      assert.equal(await readFile(old.written, 'utf8'), nginxConf);
      const bin = await extractFiles({ ...base, path: '/usr/lib/blob.bin', target: join(dir, 'files-bin') });
      assert.ok((await readFile(bin.written)).equals(seededBytes('os-lib', 6 * MiB)));

      // Disk 1 is partitioned: the partition is named, or the error lists the partitions.
      await assert.rejects(listFiles({ ...base, disk: 1, path: '/srv' }), /partitioned: choose a partition with --partition N \(1 /);
      const srv = await extractFiles({ ...base, disk: 1, partition: 1, path: '/srv/data', target: join(dir, 'files-data') });
      assert.ok((await readFile(join(srv.written, 'a.bin'))).equals(seededBytes('data-a', 5 * MiB)));
      assert.equal(await readFile(join(srv.written, 'b.txt'), 'utf8'), seededText('data-b', 20000));

      await assert.rejects(listFiles({ ...base, path: '/etc/nope' }), (e: unknown) => e instanceof CoffreError && e.code === 'NotFound');
      await assert.rejects(extractFiles({ ...base, path: '/etc/nope', target: join(dir, 'files-nope') }), (e: unknown) => e instanceof CoffreError && e.code === 'NotFound');
      await assert.rejects(listFiles({ ...base, path: 'etc' }), /must be absolute/);
    });
  } finally {
    await h.close();
  }
});

test('a VHD disk is backed up without its footer and restores to the identical VHD file', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    await writeTree(join(h.dir, 'src'), { 'etc/motd': 'hello\n', 'data.bin': seededBytes('vhd', 3 * MiB) });
    const raw = join(h.dir, 'disk.img');
    await mkfsExt4(raw, join(h.dir, 'src'), 24);
    const vhd = join(h.dir, 'win01.vhd');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', raw, vhd]);
    const config = vmConfig('win01', [vhd]);
    const r = await backupVm(backupOpts(a, config));
    assert.equal(r.disks[0]!.format, 'vhd');
    assert.equal(r.disks[0]!.size, (await stat(vhd)).size - 512, 'the data part, without the footer');
    const back = await restoreVm({ ...restoreOpts(a, r.point.id), target: join(h.dir, 'out'), source: 'vault' });
    assert.equal(back.disks[0]!.file, join(h.dir, 'out', 'win01.vhd'));
    assert.ok(await cmp(back.disks[0]!.file, vhd), 'the same VHD file, footer included');
    const asRaw = await restoreVm({ ...restoreOpts(a, r.point.id), target: join(h.dir, 'raw'), format: 'raw' });
    assert.equal(asRaw.source, 'snapshot');
    assert.ok((await qemuCompare(asRaw.disks[0]!.file, vhd)).same);
    const files = await listFiles({ ...restoreOpts(a, r.point.id), disk: 0, path: '/etc', source: 'vault' });
    assert.deepEqual(files.entries.map((e) => e.name), ['motd']);
  } finally {
    await h.close();
  }
});
