/** A tricky tree goes in and comes back exactly: content, types, modes, owners, mtimes, links, holes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, link, mkdir, open, stat, symlink, truncate, utimes, writeFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup } from '../src/agent/backup.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { backupOptions, harness } from '../testkit/harness.js';

const IS_ROOT = process.getuid?.() === 0;

async function trickyTree(root: string): Promise<void> {
  await mkdir(join(root, 'empty dir'), { recursive: true });
  await mkdir(join(root, 'docs', 'nested'), { recursive: true });
  await writeFile(join(root, 'docs', 'readme.md'), '# hello\n'.repeat(1000));
  await writeFile(join(root, 'empty-file'), '');
  await writeFile(join(root, 'name with spaces.txt'), 'spaces\n');
  await writeFile(join(root, 'ünïcödé – 日本語 😀.txt'), 'utf-8 name\n');
  // A name that is not valid UTF-8: Linux allows any byte but '/' and NUL.
  const odd = Buffer.concat([Buffer.from(root + '/odd-'), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('.bin')]);
  await writeFile(odd as unknown as string, randomBytes(1000));
  await writeFile(join(root, 'random.bin'), randomBytes(5 * 1024 * 1024 + 123));
  await writeFile(join(root, 'docs', 'nested', 'copy.bin'), randomBytes(10));
  await symlink('docs/readme.md', join(root, 'relative-link'));
  await symlink('/etc/hostname', join(root, 'absolute-link'));
  await symlink('does/not/exist', join(root, 'dangling-link'));
  await link(join(root, 'docs', 'readme.md'), join(root, 'hard-link-to-readme'));
  // Sparse: 64 MiB with data only at the start and in the middle.
  const sparse = join(root, 'disk.img');
  await writeFile(sparse, 'MBR');
  await truncate(sparse, 64 * 1024 * 1024);
  const fh = await open(sparse, 'r+');
  await fh.write(randomBytes(100_000), 0, 100_000, 30 * 1024 * 1024);
  await fh.close();
  await writeFile(join(root, 'secret'), 'only me');
  await chmod(join(root, 'secret'), 0o600);
  await writeFile(join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'script.sh'), 0o755);
  await chmod(join(root, 'docs', 'nested'), 0o750);
  if (IS_ROOT) {
    await chown(join(root, 'secret'), 1234, 5678);
    await chown(join(root, 'docs'), 4321, 8765);
  }
  // Very deep: 200 levels.
  let deep = join(root, 'deep');
  for (let i = 0; i < 200; i++) deep = join(deep, `d${i}`);
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, 'bottom.txt'), 'deep down\n');
  // An mtime far in the past, with sub-second precision.
  await utimes(join(root, 'docs', 'readme.md'), 1_000_000_000.123456, 1_000_000_000.123456);
}

test('a tricky tree round-trips exactly: bytes, modes, owners, mtimes, links, sparse files, odd names', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'tree');
    await trickyTree(src);
    const { point, warnings } = await backup(backupOptions(a, 'tricky', [src]));
    assert.deepEqual(warnings, []);
    assert.equal(point.item, 'tricky');
    const target = join(h.dir, 'restored');
    const r = await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    assert.deepEqual(r.errors, []);
    assert.equal(r.job.status, 'Completed');
    const diffs = await compareTrees(src, join(target, 'tree'), { owners: IS_ROOT });
    assert.deepEqual(diffs, []);
    // Holes stay holes: the 64 MiB image with ~100 KB of data does not occupy 64 MiB.
    const img = await stat(join(target, 'tree', 'disk.img'));
    assert.equal(img.size, 64 * 1024 * 1024);
    assert.ok(img.blocks * 512 < 8 * 1024 * 1024, `restored sparse file uses ${img.blocks * 512} bytes`);
    // Hard links come back as one inode.
    const [r1, r2] = await Promise.all([lstat(join(target, 'tree', 'docs', 'readme.md')), lstat(join(target, 'tree', 'hard-link-to-readme'))]);
    assert.equal(r1.ino, r2.ino);
  } finally {
    await h.close();
  }
});

test('restore of selected paths writes only those paths', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'tree');
    await trickyTree(src);
    const { point } = await backup(backupOptions(a, 'tricky', [src]));
    const target = join(h.dir, 'partial');
    await restore({ client: a.client, keys: a.keys, pointId: point.id, target, paths: ['tree/docs'] });
    assert.deepEqual(await compareTrees(join(src, 'docs'), join(target, 'tree', 'docs')), []);
    await assert.rejects(lstat(join(target, 'tree', 'random.bin')), { code: 'ENOENT' });
  } finally {
    await h.close();
  }
});

test('existing files in the target are kept, replaced or renamed as asked', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'from backup');
    const { point } = await backup(backupOptions(a, 'files', [src]));
    const target = join(h.dir, 'target');
    await mkdir(join(target, 'src'), { recursive: true });
    const existing = join(target, 'src', 'a.txt');
    const { readFile, readdir } = await import('node:fs/promises');

    await writeFile(existing, 'local edit');
    const skip = await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite: 'skip' });
    assert.equal(await readFile(existing, 'utf8'), 'local edit');
    assert.equal(skip.job.status, 'CompletedWithWarnings');

    await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite: 'rename' });
    assert.equal(await readFile(existing, 'utf8'), 'local edit');
    const renamed = (await readdir(join(target, 'src'))).filter((n) => n.startsWith('a.txt.restored-'));
    assert.equal(renamed.length, 1);
    assert.equal(await readFile(join(target, 'src', renamed[0]!), 'utf8'), 'from backup');

    await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite: 'replace' });
    assert.equal(await readFile(existing, 'utf8'), 'from backup');
  } finally {
    await h.close();
  }
});

test('excluded paths are not backed up', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'proj');
    await mkdir(join(src, 'node_modules', 'x'), { recursive: true });
    await writeFile(join(src, 'node_modules', 'x', 'index.js'), 'x');
    await writeFile(join(src, 'main.ts'), 'main');
    await writeFile(join(src, 'debug.log'), 'noise');
    const { point } = await backup({ ...backupOptions(a, 'proj', [src]), excludes: ['node_modules', '*.log'] });
    assert.equal(point.files, 1);
    const target = join(h.dir, 'out');
    await restore({ client: a.client, keys: a.keys, pointId: point.id, target });
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual((await readdir(join(target, 'proj'))).sort(), ['main.ts']);
  } finally {
    await h.close();
  }
});

test('a restore that stops half-way (vault gone) leaves no partial files behind', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'src');
    await mkdir(src);
    for (let i = 0; i < 5; i++) await writeFile(join(src, `f${i}.bin`), randomBytes(8 * 1024 * 1024)); // several packs, several ranges
    const { point } = await backup(backupOptions(a, 'files', [src]));
    const { VaultClient } = await import('../src/agent/client.js');
    // The connection drops after the first pack range has arrived.
    class DroppingClient extends VaultClient {
      private reads = 0;
      override async readPack(c: string, p: string, o: number, l: number): Promise<Buffer> {
        if (this.reads++ >= 1) throw new Error('connection reset');
        return super.readPack(c, p, o, l);
      }
    }
    const client = new DroppingClient(h.server.url, a.state.token, { fingerprint: h.server.fingerprint });
    const target = join(h.dir, 'out');
    await assert.rejects(restore({ client, keys: a.keys, pointId: point.id, target }), /connection reset/);
    const { readdir } = await import('node:fs/promises');
    const left = await readdir(target, { recursive: true });
    assert.deepEqual(left.filter((n) => String(n).includes('.coffre-part')), []);
    const jobs = await h.admin.listJobs();
    assert.equal(jobs.find((j) => j.operation === 'Restore')?.status, 'Failed');
  } finally {
    await h.close();
  }
});

test('a target reached through a folder that does not exist yet (new/../existing) keeps its files', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const file = join(h.dir, 'f.txt');
    await writeFile(file, 'from backup');
    const { point } = await backup(backupOptions(a, 'single', [file]));
    const existing = join(h.dir, 'existing');
    await mkdir(existing);
    const { readFile, readdir } = await import('node:fs/promises');
    await writeFile(join(existing, 'f.txt'), 'local data');
    // Creating `new` must not make the restore believe its target is a fresh, empty folder.
    const target = `${join(h.dir, 'new')}/../existing`;

    const skip = await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite: 'skip' });
    assert.equal(skip.job.status, 'CompletedWithWarnings');
    assert.equal(await readFile(join(existing, 'f.txt'), 'utf8'), 'local data');

    await restore({ client: a.client, keys: a.keys, pointId: point.id, target, overwrite: 'rename' });
    assert.equal(await readFile(join(existing, 'f.txt'), 'utf8'), 'local data');
    const names = await readdir(existing);
    const renamed = names.filter((n) => n.startsWith('f.txt.restored-'));
    assert.equal(renamed.length, 1, names.join(', '));
    assert.equal(await readFile(join(existing, renamed[0]!), 'utf8'), 'from backup');
  } finally {
    await h.close();
  }
});
