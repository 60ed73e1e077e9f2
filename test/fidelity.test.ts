/**
 * Everything a Linux tree holds comes back: 255-byte names at several depths, extended
 * attributes (binary and empty values), access and default ACLs, a file capability,
 * set-id and sticky bits, FIFOs and device nodes, nanosecond mtimes, and owners by name.
 * Runs as root (CI does): only root can create device nodes, capabilities and other owners.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { OwnerDirectory } from '../src/agent/owners.js';
import { posix, splitNs } from '../src/agent/posix.js';
import { backupOptions, cli, harness, tempDir } from '../testkit/harness.js';

before(() => {
  assert.equal(process.getuid?.(), 0, 'these tests create device nodes, capabilities and files of other owners: run them as root');
});

const NS_MTIME = '1600000000123456789';
const setNs = (p: string, ns = NS_MTIME) => { const [s, n] = splitNs(ns); posix.setTimes(Buffer.from(p), s, n, s, n); };
const setX = (p: string, name: string, value: Buffer | string) => posix.setXattr(Buffer.from(p), name, Buffer.from(value));
const xattrs = (p: string) => new Map(posix.listXattrs(Buffer.from(p)).map(([n, v]) => [n.toString(), v]));

/** A name of exactly 255 bytes (NAME_MAX), in multi-byte characters when `wide`. */
function longName(tag: string, wide = false): string {
  const fill = wide ? 'é' : 'n';
  let name = tag;
  while (Buffer.byteLength(name + fill) <= 255 - 4) name += fill;
  name += '.txt';
  while (Buffer.byteLength(name) < 255) name = 'x' + name;
  assert.equal(Buffer.byteLength(name), 255);
  return name;
}

/** Names of the system's users and groups this test relies on (Debian has them). */
const DAEMON = { name: 'daemon', uid: 1, gid: 1 };
const BIN = { name: 'bin', uid: 2, gid: 2 };

async function richTree(root: string): Promise<{ socket: () => Promise<void> }> {
  await mkdir(root, { recursive: true });
  // 255-byte names: a file, a folder, and files under it two levels down; one in two-byte characters.
  const deep = join(root, longName('dir-a'), longName('dir-b'));
  await mkdir(deep, { recursive: true });
  await writeFile(join(root, longName('top')), 'a file with the longest name\n');
  await writeFile(join(deep, longName('deep', true)), 'deep and wide\n');
  // A file of several chunks is finished by the main thread (the one-chunk files by the workers).
  await writeFile(join(deep, longName('big')), randomBytes(6 * 1024 * 1024));

  // Extended attributes: text, binary, empty, on files (one and several chunks) and a folder.
  await writeFile(join(root, 'attrs.txt'), 'with attributes\n');
  setX(join(root, 'attrs.txt'), 'user.text', 'hello, attributes');
  setX(join(root, 'attrs.txt'), 'user.binary', Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  setX(join(root, 'attrs.txt'), 'user.empty', '');
  setX(join(root, 'attrs.txt'), 'trusted.root-only', 'only root reads this');
  await writeFile(join(root, 'big-attrs.bin'), randomBytes(5 * 1024 * 1024));
  setX(join(root, 'big-attrs.bin'), 'user.checksum', randomBytes(32));
  await mkdir(join(root, 'attr-dir'));
  setX(join(root, 'attr-dir'), 'user.folder', 'a folder attribute');

  // ACLs: an access ACL on a file, a default (and access) ACL on a folder.
  await writeFile(join(root, 'acl.txt'), 'shared with two more\n');
  execFileSync('setfacl', ['-m', 'u:1234:rw,g:5678:r', join(root, 'acl.txt')]);
  await mkdir(join(root, 'acl-dir'));
  execFileSync('setfacl', ['-m', 'u:1234:rwx', '-d', '-m', 'u:1234:rwx,g:5678:rx', join(root, 'acl-dir')]);

  // A file capability, as `ping` has one.
  await writeFile(join(root, 'pinger'), '#!/bin/sh\necho ping\n');
  await chmod(join(root, 'pinger'), 0o755);
  execFileSync('setcap', ['cap_net_raw+ep', join(root, 'pinger')]);

  // Set-id and sticky bits.
  await writeFile(join(root, 'setuid'), '#!/bin/sh\n');
  await chmod(join(root, 'setuid'), 0o4755);
  await mkdir(join(root, 'setgid-dir'));
  await chmod(join(root, 'setgid-dir'), 0o2775);
  await mkdir(join(root, 'sticky-dir'));
  await chmod(join(root, 'sticky-dir'), 0o1777);

  // Special files: a FIFO, a character device (as /dev/null), a block device (as a loop device).
  posix.mknod(Buffer.from(join(root, 'fifo')), 0o010640, 0, 0);
  posix.mknod(Buffer.from(join(root, 'null-dev')), 0o020666, 1, 3);
  posix.mknod(Buffer.from(join(root, 'block-dev')), 0o060660, 7, 200);
  setX(join(root, 'fifo'), 'trusted.on-a-fifo', 'yes');

  // Owners: names that exist here (daemon, bin) and an id with no name at all.
  await writeFile(join(root, 'owned-daemon'), 'daemon\n');
  await chown(join(root, 'owned-daemon'), DAEMON.uid, DAEMON.gid);
  await writeFile(join(root, 'owned-bin'), 'bin\n');
  await chown(join(root, 'owned-bin'), BIN.uid, BIN.gid);
  await writeFile(join(root, 'owned-nobody-known'), 'no name\n');
  await chown(join(root, 'owned-nobody-known'), 23456, 34567);
  await symlink('attrs.txt', join(root, 'link'));
  await chown(join(root, 'owned-daemon'), DAEMON.uid, DAEMON.gid);

  // A socket: skipped with a warning, as before.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(root, 'app.sock'), resolve));

  // Nanosecond mtimes on every kind of entry, set last (folders after their contents).
  for (const p of ['attrs.txt', 'big-attrs.bin', 'acl.txt', 'pinger', 'setuid', 'fifo', 'null-dev', 'block-dev', 'owned-daemon', 'link', longName('top')]) setNs(join(root, p));
  setNs(join(deep, longName('big')), '1500000000000000001');
  for (const d of [deep, join(root, longName('dir-a')), join(root, 'attr-dir'), join(root, 'acl-dir'), join(root, 'setgid-dir')]) setNs(d, '1400000000999999999');
  return { socket: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('every kind of Linux metadata comes back: long names, xattrs, ACLs, capabilities, special files, nanoseconds, owners', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'tree');
    const tree = await richTree(src);
    const { point, warnings } = await backup(backupOptions(a, 'rich', [src]));
    await tree.socket();
    assert.deepEqual(warnings.map((w) => [w.code, w.path]), [['SpecialFileSkipped', 'tree/app.sock']]);

    const target = join(h.dir, 'restored');
    const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, []);
    assert.equal(r.job.status, 'Completed');
    // Attribute by attribute: bytes, types, modes, owners, device numbers, attributes, mtimes.
    assert.deepEqual(await compareTrees(src, join(target, 'tree'), { owners: true }), []);

    // And read back as a user would, for the items the issue names one by one.
    const back = join(target, 'tree');
    const x = xattrs(join(back, 'attrs.txt'));
    assert.equal(x.get('user.text')?.toString(), 'hello, attributes');
    assert.deepEqual([...x.get('user.binary')!], Array.from({ length: 256 }, (_, i) => i));
    assert.equal(x.get('user.empty')?.length, 0);
    assert.equal(x.get('trusted.root-only')?.toString(), 'only root reads this');
    assert.match(execFileSync('getfacl', ['-cp', join(back, 'acl.txt')], { encoding: 'utf8' }), /user:1234:rw-[\s\S]*group:5678:r--/);
    assert.match(execFileSync('getfacl', ['-cpd', join(back, 'acl-dir')], { encoding: 'utf8' }), /user:1234:rwx[\s\S]*group:5678:r-x/);
    assert.match(execFileSync('getcap', [join(back, 'pinger')], { encoding: 'utf8' }), /cap_net_raw[=+]ep/);
    assert.equal((await lstat(join(back, 'setuid'))).mode & 0o7777, 0o4755);
    assert.equal((await lstat(join(back, 'setgid-dir'))).mode & 0o7777, 0o2775);
    assert.equal((await lstat(join(back, 'sticky-dir'))).mode & 0o7777, 0o1777);
    assert.ok((await lstat(join(back, 'fifo'))).isFIFO());
    const dev = await lstat(join(back, 'null-dev'), { bigint: true });
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, (await lstat(join(src, 'null-dev'), { bigint: true })).rdev);
    assert.ok((await lstat(join(back, 'block-dev'))).isBlockDevice());
    assert.equal((await lstat(join(back, 'attrs.txt'), { bigint: true })).mtimeNs, BigInt(NS_MTIME));
    assert.equal((await lstat(join(back, 'link'), { bigint: true })).mtimeNs, BigInt(NS_MTIME));
    const deepBig = join(back, longName('dir-a'), longName('dir-b'), longName('big'));
    assert.equal((await lstat(deepBig, { bigint: true })).mtimeNs, 1500000000000000001n);
    assert.equal((await lstat(join(back, longName('dir-a')), { bigint: true })).mtimeNs, 1400000000999999999n);
    // No temporary name is left anywhere.
    assert.deepEqual(execFileSync('find', [target, '-name', '.coffre-*'], { encoding: 'utf8' }), '');

    // Restoring again beside the first copy (--overwrite rename): 255-byte names get a side name that fits.
    const again = await restore({ client: a.client, keys: a.keys, pointId: point.id, target, paths: [`tree/${longName('top')}`] });
    assert.deepEqual(again.errors, []);
    const side = execFileSync('ls', [back], { encoding: 'utf8' }).split('\n').filter((n) => n.includes('.restored-'));
    assert.equal(side.length, 1);
    assert.ok(Buffer.byteLength(side[0]!) <= 255);
    assert.equal(await readFile(join(back, side[0]!), 'utf8'), 'a file with the longest name\n');
  } finally {
    await h.close();
  }
});

test('owners are restored by name where the name exists here, by number otherwise, and by number with --numeric-owner', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'owned');
    await mkdir(src);
    await writeFile(join(src, 'daemon-file'), 'd');
    await chown(join(src, 'daemon-file'), DAEMON.uid, DAEMON.gid);
    await writeFile(join(src, 'bin-file'), 'b');
    await chown(join(src, 'bin-file'), BIN.uid, BIN.gid);
    await writeFile(join(src, 'nameless'), 'n');
    await chown(join(src, 'nameless'), 23456, 34567);
    const { point } = await backup(backupOptions(a, 'owned', [src]));

    // The machine restored on: `daemon` has other ids there, `bin` does not exist, 23456 is nobody.
    const etc = await tempDir();
    await writeFile(join(etc, 'passwd'), 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:4242:4343::/:/bin/false\n');
    await writeFile(join(etc, 'group'), 'root:x:0:\ndaemon:x:4343:\n');
    const elsewhere = new OwnerDirectory({ passwd: join(etc, 'passwd'), group: join(etc, 'group'), getent: false });
    const owner = async (p: string) => { const s = await lstat(p); return [s.uid, s.gid]; };

    const byName = join(h.dir, 'by-name');
    const r1 = await restore({ client: a.client, keys: a.keys, pointId: point.id, target: byName, ownerDirectory: elsewhere });
    assert.equal(r1.job.status, 'Completed');
    assert.deepEqual(await owner(join(byName, 'owned', 'daemon-file')), [4242, 4343]);
    assert.deepEqual(await owner(join(byName, 'owned', 'bin-file')), [BIN.uid, BIN.gid]);
    assert.deepEqual(await owner(join(byName, 'owned', 'nameless')), [23456, 34567]);

    const numeric = join(h.dir, 'numeric');
    const r2 = await restore({ client: a.client, keys: a.keys, pointId: point.id, target: numeric, ownerDirectory: elsewhere, numericOwner: true });
    assert.equal(r2.job.status, 'Completed');
    assert.deepEqual(await owner(join(numeric, 'owned', 'daemon-file')), [DAEMON.uid, DAEMON.gid]);
    await rm(etc, { recursive: true, force: true });
  } finally {
    await h.close();
  }
});

test('a change of extended attributes alone (ctime moves, mtime does not) is picked up by the next backup', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'inc');
    await mkdir(src);
    for (let i = 0; i < 20; i++) await writeFile(join(src, `f${i}.txt`), `file ${i}\n`);
    setX(join(src, 'f3.txt'), 'user.state', 'before');
    await backup(backupOptions(a, 'inc', [src]));
    const before = await lstat(join(src, 'f3.txt'), { bigint: true });
    setX(join(src, 'f3.txt'), 'user.state', 'after');
    setX(join(src, 'f3.txt'), 'user.added', Buffer.from([0, 255]));
    execFileSync('setfacl', ['-m', 'u:777:r', join(src, 'f7.txt')]);
    const after = await lstat(join(src, 'f3.txt'), { bigint: true });
    assert.equal(after.mtimeNs, before.mtimeNs);
    const { point, counters } = await backup(backupOptions(a, 'inc', [src]));
    assert.equal(counters.filesChanged, 2, 'only the two files whose attributes changed are read again');
    const target = join(h.dir, 'inc-restored');
    const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'inc'), { owners: true }), []);
    assert.equal(xattrs(join(target, 'inc', 'f3.txt')).get('user.state')?.toString(), 'after');
  } finally {
    await h.close();
  }
});

test('a restore to a file system without extended attributes (ramfs) completes, warning of each attribute it could not keep', async () => {
  const h = await harness();
  const mnt = join(h.dir, 'ramfs');
  let mounted = false;
  try {
    const a = await h.agent();
    const src = join(h.dir, 'plain');
    await mkdir(join(src, 'docs'), { recursive: true });
    await writeFile(join(src, 'docs', 'report.txt'), 'quarterly report\n');
    setX(join(src, 'docs', 'report.txt'), 'user.author', 'ada');
    await writeFile(join(src, 'data.bin'), randomBytes(3 * 1024 * 1024));
    setX(join(src, 'data.bin'), 'user.kind', 'random');
    setX(join(src, 'docs'), 'user.folder', 'docs');
    await writeFile(join(src, 'plain.txt'), 'no attributes\n');
    const { point } = await backup(backupOptions(a, 'plain', [src]));

    await mkdir(mnt);
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', mnt]);
    mounted = true;
    const r = await cli(['restore', point.id, '--target', mnt, '--json'], { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url });
    const job = JSON.parse(r.stdout) as { status: string; errors: unknown[]; warnings: { code: string; path?: string; message: string }[] };
    assert.equal(job.status, 'CompletedWithWarnings');
    assert.equal(r.code, 4, 'exit status 4: completed with warnings');
    assert.deepEqual(job.errors, []);
    assert.deepEqual(job.warnings.map((w) => [w.code, w.path]).sort(), [
      ['XattrNotRestored', 'plain/data.bin'], ['XattrNotRestored', 'plain/docs'], ['XattrNotRestored', 'plain/docs/report.txt'],
    ]);
    assert.ok(job.warnings.some((w) => w.path === 'plain/docs/report.txt' && w.message.includes('user.author')));
    // Everything else is exact.
    assert.deepEqual(await compareTrees(src, join(mnt, 'plain'), { owners: true, xattrs: false }), []);
  } finally {
    if (mounted) execFileSync('umount', [mnt]);
    await h.close();
  }
});

test('an entry the target will not take is an error naming its path, and the rest is restored', async () => {
  const h = await harness();
  const target = join(h.dir, 'target');
  try {
    const a = await h.agent();
    const src = join(h.dir, 'site');
    await mkdir(join(src, 'locked-dir'), { recursive: true });
    await writeFile(join(src, 'locked-dir', 'inside.txt'), 'inside\n');
    await writeFile(join(src, 'locked.txt'), 'new version\n');
    await writeFile(join(src, 'big.bin'), randomBytes(4 * 1024 * 1024));
    await writeFile(join(src, 'free.txt'), 'free\n');
    const { point } = await backup(backupOptions(a, 'site', [src]));

    // What stands in the target: a file and a folder that are immutable (chattr +i).
    await mkdir(join(target, 'site', 'locked-dir'), { recursive: true });
    await writeFile(join(target, 'site', 'locked.txt'), 'old version\n');
    execFileSync('chattr', ['+i', join(target, 'site', 'locked.txt'), join(target, 'site', 'locked-dir')]);
    try {
      const r = await cli(['restore', point.id, '--target', target, '--overwrite', 'replace', '--json'], { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url });
      const job = JSON.parse(r.stdout) as { status: string; errors: { code: string; path?: string; message: string }[] };
      assert.equal(r.code, 1);
      assert.equal(job.status, 'Failed');
      assert.deepEqual(job.errors.map((e) => [e.code, e.path]).sort(), [['WriteFailed', 'site/locked-dir/inside.txt'], ['WriteFailed', 'site/locked.txt']]);
      assert.match(job.errors.find((e) => e.path === 'site/locked.txt')!.message, /EPERM|not permitted/);
      assert.equal(await readFile(join(target, 'site', 'locked.txt'), 'utf8'), 'old version\n');
      assert.equal(await readFile(join(target, 'site', 'free.txt'), 'utf8'), 'free\n');
      assert.deepEqual(await readFile(join(target, 'site', 'big.bin')), await readFile(join(src, 'big.bin')));
      assert.deepEqual(execFileSync('find', [target, '-name', '.coffre-*'], { encoding: 'utf8' }), '');
    } finally {
      execFileSync('chattr', ['-i', join(target, 'site', 'locked.txt'), join(target, 'site', 'locked-dir')]);
    }
  } finally {
    await h.close();
  }
});

test('a target folder with a default ACL passes none of it on to what is restored into it', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'no-acl');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'sub', 'small.txt'), 'small\n');
    await writeFile(join(src, 'large.bin'), randomBytes(3 * 1024 * 1024));
    await writeFile(join(src, 'with-acl.txt'), 'keeps its own\n');
    execFileSync('setfacl', ['-m', 'u:4321:r', join(src, 'with-acl.txt')]);
    const { point } = await backup(backupOptions(a, 'no-acl', [src]));
    const target = join(h.dir, 'inheriting');
    await mkdir(target);
    execFileSync('setfacl', ['-d', '-m', 'u:999:rwx', target]);
    const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'no-acl'), { owners: true }), []);
  } finally {
    await h.close();
  }
});

test('a set-group-id target folder does not give restored files its group, and modes the umask would cut come back whole', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'groups');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'root-owned.txt'), 'owned by root:root\n');
    await writeFile(join(src, 'sub', 'world-writable.txt'), 'mode 666\n');
    await chmod(join(src, 'sub', 'world-writable.txt'), 0o666);
    await writeFile(join(src, 'other-group.txt'), 'group 4343\n');
    await chown(join(src, 'other-group.txt'), 0, 4343);
    const { point } = await backup(backupOptions(a, 'groups', [src]));
    const target = join(h.dir, 'setgid-target');
    await mkdir(target);
    await chown(target, 0, 4242);
    await chmod(target, 0o2775);
    const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'groups'), { owners: true }), []);
  } finally {
    await h.close();
  }
});

test('an administrator token in COFFRE_TOKEN does not stop the registered machine from backing up and restoring', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'admin-env');
    await mkdir(src);
    await writeFile(join(src, 'f.txt'), 'made with the machine key\n');
    const env = { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url, COFFRE_TOKEN: h.server.adminToken };
    const b = await cli(['backup', src, '--item', 'admin-env', '--json'], env);
    assert.equal(b.code, 0, b.stderr);
    const point = (JSON.parse(b.stdout) as { pointId: string }).pointId;
    const r = await cli(['restore', point, '--target', join(h.dir, 'admin-env-restored'), '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(h.dir, 'admin-env-restored', 'admin-env', 'f.txt'), 'utf8'), 'made with the machine key\n');
  } finally {
    await h.close();
  }
});

test('--overwrite rename: two long names that shorten to the same side name each keep their own restored copy', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'long');
    await mkdir(src);
    // 250 bytes each, equal over their first 249: both side names are cut to the same prefix.
    const names = ['1', '2'].map((c) => 'n'.repeat(249) + c);
    for (const n of names) await writeFile(join(src, n), `content of ${n.slice(-1)}\n`);
    const { point } = await backup(backupOptions(a, 'long', [src]));
    const target = join(h.dir, 'target');
    const first = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.deepEqual(first.errors, []);
    const again = await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite: 'rename' });
    assert.deepEqual(again.errors, []);
    const back = join(target, 'long');
    const listed = execFileSync('ls', [back], { encoding: 'utf8' }).split('\n').filter(Boolean);
    const side = listed.filter((n) => n.includes('.restored-'));
    assert.equal(side.length, 2, `two restored copies beside the two files: ${side.join(', ')}`);
    const contents = (await Promise.all(side.map((n) => readFile(join(back, n), 'utf8')))).sort();
    assert.deepEqual(contents, ['content of 1\n', 'content of 2\n']);
  } finally {
    await h.close();
  }
});
