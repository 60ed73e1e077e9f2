import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mountOf, mountsBelow, parseMountinfo } from './volumes.js';

// Lines as the kernel writes them (proc(5)), with an escaped space and optional fields.
const TABLE = [
  '26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
  '21 26 0:20 / /proc rw,relatime - proc proc rw',
  '45 26 0:39 /@home /home rw,relatime shared:5 master:2 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=256,subvol=/@home',
  '46 45 253:3 / /home/my\\040files rw,relatime - ext4 /dev/mapper/vg0-files rw',
  '47 45 0:51 / /home/pool rw - zfs tank/home rw,xattr',
  'garbage without fields',
  '48 26 0:60 / /mnt ro,relatime - tmpfs tmpfs ro',
  '49 26 0:61 / /mnt rw,relatime - btrfs /dev/loop1 rw,subvol=/',
].join('\n') + '\n';

test('mountinfo: fields, escapes, optional fields', () => {
  const mounts = parseMountinfo(TABLE);
  assert.equal(mounts.length, 7, 'a line that is not a mount is skipped');
  const home = mounts.find((m) => m.id === 45)!;
  assert.deepEqual({ root: home.root, mountPoint: home.mountPoint, fsType: home.fsType, source: home.source, device: home.device },
    { root: '/@home', mountPoint: '/home', fsType: 'btrfs', source: '/dev/loop0', device: '0:39' });
  assert.equal(mounts.find((m) => m.id === 46)!.mountPoint, '/home/my files');
  assert.deepEqual(mounts.find((m) => m.id === 48)!.superOptions, ['ro']);
});

test('mountOf: the deepest mount point, and of stacked mounts the top one', () => {
  const mounts = parseMountinfo(TABLE);
  assert.equal(mountOf('/home/alice/docs', mounts).id, 45);
  assert.equal(mountOf('/home/my files/a', mounts).id, 46);
  assert.equal(mountOf('/home/my filesX', mounts).id, 45, 'a prefix of a name is not a parent');
  assert.equal(mountOf('/etc/passwd', mounts).id, 26);
  assert.equal(mountOf('/mnt/x', mounts).id, 49, 'the later mount on /mnt hides the earlier');
  assert.equal(mountOf('/', mounts).id, 26);
});

test('mountsBelow: strictly below, top of each point, a mount before those inside it', () => {
  const mounts = parseMountinfo(TABLE);
  // A mount inside another has the longer path, so it comes after it.
  assert.deepEqual(mountsBelow('/home', mounts).map((m) => m.id), [47, 46]);
  assert.deepEqual(mountsBelow('/', mounts).map((m) => m.mountPoint).sort(), ['/home', '/home/my files', '/home/pool', '/mnt', '/proc']);
  assert.ok(mountsBelow('/', mounts).findIndex((m) => m.mountPoint === '/home') < mountsBelow('/', mounts).findIndex((m) => m.mountPoint === '/home/pool'));
  assert.equal(mountsBelow('/', mounts).find((m) => m.mountPoint === '/mnt')!.id, 49);
  assert.deepEqual(mountsBelow('/home/my files', mounts), []);
});
