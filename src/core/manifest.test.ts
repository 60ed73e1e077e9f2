/** Version 2 manifests: attributes, special files and owner names are checked before a restore trusts them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoffreError } from './errors.js';
import { validateManifest, type Manifest } from './manifest.js';

const base = { mode: 0o644, uid: 0, gid: 0, mtime: '1600000000123456789' };
const root = { type: 'dir', path: ['root'], ...base } as const;
const valid = (entries: unknown[], extra: Record<string, unknown> = {}) => ({ version: 2, item: 'i', time: '2026-01-01T00:00:00Z', entries: [root, ...entries], ...extra });
const refused = (m: unknown) => assert.throws(() => validateManifest(m), (e: unknown) => e instanceof CoffreError && e.code === 'ManifestInvalid', JSON.stringify(m));

test('a version 2 manifest with attributes, FIFOs, devices and owner names is accepted', () => {
  const m = valid([
    { type: 'file', path: ['root', 'f'], size: 0, chunks: [], ...base, xattrs: [['security.capability', 'AQAAAg=='], ['user.empty', ''], ['user.text', 'aGk=']] },
    { type: 'fifo', path: ['root', 'p'], ...base },
    { type: 'chardev', path: ['root', 'null'], ...base, rdev: [1, 3] },
    { type: 'blockdev', path: ['root', 'loop'], ...base, rdev: [7, 4095] },
  ], { owners: { users: { 0: 'root', 1000: 'ada' }, groups: { 0: 'root' } } });
  assert.equal((validateManifest(m) as Manifest).entries.length, 5);
  // Version 1 manifests written before attributes existed stay readable.
  assert.equal(validateManifest({ ...valid([]), version: 1 }).version, 1);
});

test('forged attributes, device numbers and owner names are refused before anything is written', () => {
  const file = (xattrs: unknown) => valid([{ type: 'file', path: ['root', 'f'], size: 0, chunks: [], ...base, xattrs }]);
  refused(file('user.a=1'));
  refused(file([['user.a']]));
  refused(file([['', '']]));
  refused(file([['user.\0', '']]));
  refused(file([['user.' + 'n'.repeat(251), '']]));
  refused(file([['user.a', '***']]));
  refused(file([['user.a', ''], ['user.a', '']]));
  refused(valid([{ type: 'chardev', path: ['root', 'd'], ...base }]));
  refused(valid([{ type: 'chardev', path: ['root', 'd'], ...base, rdev: [1] }]));
  refused(valid([{ type: 'blockdev', path: ['root', 'd'], ...base, rdev: [-1, 0] }]));
  refused(valid([{ type: 'socket', path: ['root', 's'], ...base }]));
  refused(valid([], { owners: { users: { root: '0' }, groups: {} } }));
  refused(valid([], { owners: { users: { 0: '' }, groups: {} } }));
  refused(valid([], { owners: { users: {} } }));
  refused({ ...valid([]), version: 3 });
});
