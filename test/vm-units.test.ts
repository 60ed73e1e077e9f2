/**
 * The pure pieces of the VM agent: VHD footers (checked against qemu-img), the sealed VM
 * manifest, partition tables, debugfs listings, restore names, and the script runner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newKeySet, ID_BYTES } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { buildVhdFooter, chsGeometry, classifyImage, parseVhdFooter, vhdChecksum, VHD_FOOTER_BYTES } from '../src/agent/vm/vhd.js';
import { decodeVmManifest, encodeVmManifest, openVmManifest, sealVmManifest, vmReferences, type VmManifest } from '../src/agent/vm/disk-manifest.js';
import { hasExtSuperblock, parsePartitions } from '../src/agent/vm/partitions.js';
import { parseLsP } from '../src/agent/vm/file-recovery.js';
import { diskNames } from '../src/agent/vm/disk-source.js';
import { runCommand } from '../src/agent/scripts.js';
import { tempDir } from '../testkit/harness.js';
import { MiB, run } from '../testkit/vm-fixtures.js';

test('VHD footer: geometry and checksum as qemu-img writes them; exact sizes read back by qemu-img', async () => {
  const dir = await tempDir();
  const vhd = join(dir, 'q.vhd');
  await run('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', vhd, '100M']);
  const data = await readFile(vhd);
  const footer = parseVhdFooter(data.subarray(data.length - VHD_FOOTER_BYTES));
  assert.ok(footer);
  assert.equal(footer.diskType, 'fixed');
  assert.deepEqual(chsGeometry(footer.currentSize), { cylinders: footer.cylinders, heads: footer.heads, sectorsPerTrack: footer.sectorsPerTrack });
  assert.deepEqual(chsGeometry(256 * MiB), { cylinders: 520, heads: 16, sectorsPerTrack: 63 });
  const c = classifyImage(data.length, data.subarray(data.length - VHD_FOOTER_BYTES), vhd);
  assert.equal(c.format, 'vhd');
  assert.equal(c.dataSize, data.length - VHD_FOOTER_BYTES);

  // A size that is not a whole CHS geometry keeps every byte: qemu-img reads the exact size.
  const size = 10 * MiB + 3 * 512;
  const ours = join(dir, 'ours.vhd');
  const built = buildVhdFooter(size, { time: new Date('2024-01-01T00:00:00Z') });
  await writeFile(ours, Buffer.concat([Buffer.alloc(size, 7), built]));
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', 'vpc', ours])).stdout) as { 'virtual-size': number };
  assert.equal(info['virtual-size'], size);
  const parsed = parseVhdFooter(built)!;
  assert.equal(parsed.currentSize, size);
  assert.equal(parsed.timestamp.toISOString(), '2024-01-01T00:00:00.000Z');

  const broken = Buffer.from(built);
  broken[100] = 1;
  assert.equal(parseVhdFooter(broken), null, 'a bad checksum is not a footer');
  assert.deepEqual(classifyImage(size + 512, broken, 'x'), { format: 'raw', dataSize: size + 512 });
  const dynamic = Buffer.from(built);
  dynamic.writeUInt32BE(3, 60);
  dynamic.writeUInt32BE(0, 64);
  dynamic.writeUInt32BE(vhdChecksum(dynamic), 64);
  assert.throws(() => classifyImage(size + 512, dynamic, 'dyn.vhd'), (e: unknown) => e instanceof CoffreError && /dynamic VHD/.test(e.message));
  await rm(dir, { recursive: true, force: true });
});

function manifest(): VmManifest {
  const blocks = (n: number, zeroEvery: number) => {
    const b = randomBytes(n * ID_BYTES);
    for (let i = 0; i < n; i += zeroEvery) b.fill(0, i * ID_BYTES, (i + 1) * ID_BYTES);
    return b;
  };
  return {
    version: 1, kind: 'vm', item: 'web01', time: '2026-01-01T00:00:00.000Z', consistency: 'app',
    disks: [
      { index: 0, name: 'os', path: '/vms/os.img', format: 'raw', size: 13 * MiB + 5, blockSize: MiB, blocks: blocks(14, 3) },
      { index: 1, name: 'data', path: '/vms/data.vhd', format: 'vhd', size: 8 * MiB, blockSize: 4 * MiB, vhdFooter: buildVhdFooter(8 * MiB).toString('base64'), blocks: blocks(2, 5) },
    ],
  };
}

test('VM manifest: round trip, bound to its point, refuses malformed input', () => {
  const keys = newKeySet();
  const m = manifest();
  const sealed = sealVmManifest(keys, 'p1', m);
  const back = openVmManifest(keys, 'p1', sealed)!;
  assert.deepEqual(back, m);
  assert.equal(openVmManifest(keys, 'p2', sealed), null, 'another point id does not open it');
  assert.equal(openVmManifest(newKeySet(), 'p1', sealed), null, 'other keys do not open it');
  const flipped = Buffer.from(sealed);
  flipped[40] = (flipped[40] ?? 0) ^ 1;
  assert.equal(openVmManifest(keys, 'p1', flipped), null);

  const refs = vmReferences(m);
  const nonZero = new Set<string>();
  for (const d of m.disks) for (let i = 0; i < d.blocks.length; i += ID_BYTES) if (d.blocks.subarray(i, i + ID_BYTES).some((x) => x)) nonZero.add(d.blocks.toString('hex', i, i + ID_BYTES));
  assert.equal(refs.length, nonZero.size * ID_BYTES);

  const plain = encodeVmManifest(m);
  assert.throws(() => decodeVmManifest(Buffer.concat([plain, Buffer.from([0])])), /after the last disk/);
  assert.throws(() => decodeVmManifest(plain.subarray(0, plain.length - 1)), /cut short/);
  const header = JSON.parse(plain.toString('utf8', 8, 8 + plain.readUInt32LE(4))) as { disks: { name: string }[] };
  header.disks[0]!.name = '../etc';
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(h.length);
  assert.throws(() => decodeVmManifest(Buffer.concat([plain.subarray(0, 4), len, h, plain.subarray(8 + plain.readUInt32LE(4))])), /header/);
});

test('partition tables: MBR and GPT', () => {
  const mbr = Buffer.alloc(64 * 1024);
  mbr[446 + 4] = 0x83;
  mbr.writeUInt32LE(2048, 446 + 8);
  mbr.writeUInt32LE(4096, 446 + 12);
  mbr[446 + 16 + 4] = 0x05; // extended: not listed
  mbr.writeUInt32LE(8192, 446 + 16 + 8);
  mbr.writeUInt32LE(100, 446 + 16 + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  assert.deepEqual(parsePartitions(mbr), [{ number: 1, offset: MiB, size: 2 * MiB, type: '83' }]);

  const gpt = Buffer.alloc(64 * 1024);
  gpt[446 + 4] = 0xee;
  gpt.writeUInt32LE(1, 446 + 8);
  gpt.writeUInt32LE(0xffffffff, 446 + 12);
  gpt.writeUInt16LE(0xaa55, 510);
  gpt.write('EFI PART', 512, 'latin1');
  gpt.writeBigUInt64LE(2n, 512 + 72);
  gpt.writeUInt32LE(128, 512 + 80);
  gpt.writeUInt32LE(128, 512 + 84);
  const linux = Buffer.from('af3dc60f838472478e793d69d8477de4', 'hex'); // 0FC63DAF-8483-4772-8E79-3D69D8477DE4
  const e2 = 1024 + 128; // entry 2 (entry 1 unused)
  linux.copy(gpt, e2);
  gpt.writeBigUInt64LE(4096n, e2 + 32);
  gpt.writeBigUInt64LE(8191n, e2 + 40);
  assert.deepEqual(parsePartitions(gpt), [{ number: 2, offset: 2 * MiB, size: 2 * MiB, type: '0fc63daf-8483-4772-8e79-3d69d8477de4' }]);
  assert.deepEqual(parsePartitions(Buffer.alloc(4096)), []);
  const ext = Buffer.alloc(4096);
  ext.writeUInt16LE(0xef53, 1080);
  assert.ok(hasExtSuperblock(ext));
});

test('debugfs `ls -p` listings and restore names', () => {
  const out = '/53/040755/0/0/.//\n/2/040755/0/0/..//\n/54/040750/33/33/sites//\n/55/100644/0/0/nginx.conf/22893/\n/56/120777/0/0/link/7/\n';
  assert.deepEqual(parseLsP(out, '/etc/nginx'), [
    { name: 'sites', path: '/etc/nginx/sites', type: 'dir', mode: 0o750, uid: 33, gid: 33, size: null, inode: 54 },
    { name: 'nginx.conf', path: '/etc/nginx/nginx.conf', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 22893, inode: 55 },
    { name: 'link', path: '/etc/nginx/link', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 7, inode: 56 },
  ]);
  assert.deepEqual(diskNames(['/vms/web01-os.img', '/other/web01-os.img', '/dev/vdb', '/vms/x y.vhd', '/vms/..']), ['web01-os', 'web01-os-2', 'vdb', 'x_y', 'disk-4']);
});

test('scripts: a timeout kills the script; a script that cannot start is a failure, not a crash', async () => {
  const r = await runCommand('/bin/sh', ['-c', 'echo started; sleep 30'], { timeoutMs: 300 });
  assert.equal(r.ok, false);
  assert.equal(r.timedOut, true);
  assert.equal(r.output, 'started');
  const missing = await runCommand('/nonexistent/script', [], { timeoutMs: 1000 });
  assert.equal(missing.ok, false);
  assert.equal(missing.exitCode, null);
  assert.match(missing.output, /ENOENT/);
  const ok = await runCommand('/bin/sh', ['-c', 'echo "$COFFRE_VM"'], { timeoutMs: 5000, env: { COFFRE_VM: 'web01' } });
  assert.deepEqual([ok.ok, ok.output], [true, 'web01']);
});
