/** The local-folder driver: the shared contract, a missing folder, a full disk. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoffreError } from '../core/errors.js';
import { LocalFolderStore } from './local-folder.js';
import { objectStoreContract } from './object-store.contract.js';

const root = await mkdtemp(join(tmpdir(), 'coffre-local-contract-'));
let n = 0;
test.after(() => rm(root, { recursive: true, force: true }));

objectStoreContract('local folder', async () => {
  const s = new LocalFolderStore(join(root, `t${n++}`), 'local');
  await s.create();
  return s;
});

test('local folder: a store whose folder is gone is unavailable and is not created again by a write', async () => {
  const dir = join(root, 'gone');
  const s = new LocalFolderStore(dir, 'zone-x');
  await s.create();
  await s.put('a/b', Buffer.from('x'));
  await rm(dir, { recursive: true });
  for (const op of [() => s.put('a/c', Buffer.from('y')), () => s.get('a/b'), () => s.delete('a/b'), async () => { for await (const _ of s.list('')) void _; }]) {
    await assert.rejects(op(), (e: unknown) => e instanceof CoffreError && e.code === 'StorageUnavailable' && e.message.includes('zone-x') && e.message.includes(dir));
  }
  await assert.rejects(readdir(dir), { code: 'ENOENT' }, 'the folder was not made again');
});

test('local folder: a full disk is StorageFull, naming the store, the object and what to do; nothing half-written stays', async () => {
  const mnt = join(root, 'tiny');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt]);
  try {
    const s = new LocalFolderStore(mnt, 'tiny-disk');
    await s.create();
    await s.put('small', Buffer.alloc(100 * 1024, 1));
    await assert.rejects(s.put('packs/big', Buffer.alloc(1024 * 1024, 2)), (e: unknown) => {
      assert.ok(e instanceof CoffreError);
      assert.equal(e.code, 'StorageFull');
      assert.match(e.message, /tiny-disk/);
      assert.match(e.message, /packs\/big/);
      assert.match(e.message, /free space/);
      return true;
    });
    assert.deepEqual(await readdir(join(mnt, '.tmp')), [], 'the partial write was removed');
    assert.equal(await s.stat('packs/big'), null);
    assert.equal((await s.get('small')).length, 100 * 1024, 'what was there is intact');
    await s.delete('small');
    await s.put('packs/big2', Buffer.alloc(300 * 1024, 3));
    assert.equal((await s.stat('packs/big2'))?.size, 300 * 1024, 'writes work again once space is free');
  } finally {
    execFileSync('umount', [mnt]);
  }
});

test('local folder: a range is read into the buffer given, when it is large enough', async () => {
  const s = new LocalFolderStore(join(root, 'into'), 'local');
  await s.create();
  const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));
  await s.put('packs/p', bytes);
  const into = Buffer.alloc(1000, 0xee);
  const got = await s.get('packs/p', { offset: 100, length: 900, into });
  assert.deepEqual(got, bytes.subarray(100, 1000));
  assert.equal(got.buffer, into.buffer, 'a view of the buffer given');
  assert.equal(got.byteOffset, into.byteOffset);
  const small = Buffer.alloc(10);
  const other = await s.get('packs/p', { offset: 0, length: 100, into: small });
  assert.deepEqual(other, bytes.subarray(0, 100));
  assert.notEqual(other.buffer, small.buffer, 'a buffer too small is not used');
  assert.deepEqual(small, Buffer.alloc(10));
});
