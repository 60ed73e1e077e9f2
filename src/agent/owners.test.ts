/** Owner names: recorded from the system's databases, mapped back by name, by number when unknown. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OwnerDirectory, ownerMapper, ownerNames } from './owners.js';

function directory(passwd: string, group: string): OwnerDirectory {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-owners-'));
  try {
    writeFileSync(join(dir, 'passwd'), passwd);
    writeFileSync(join(dir, 'group'), group);
    return new OwnerDirectory({ passwd: join(dir, 'passwd'), group: join(dir, 'group'), getent: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('names are recorded for the ids the system knows, and ids without a name are left out', () => {
  const here = directory('# comment\nroot:x:0:0::/root:/bin/sh\nada:x:1000:1000::/home/ada:/bin/sh\nbroken line\n', 'root:x:0:\nstaff:x:50:ada\n');
  assert.deepEqual(ownerNames(here, [0, 1000, 4242], [0, 50, 1000]), { users: { 0: 'root', 1000: 'ada' }, groups: { 0: 'root', 50: 'staff' } });
});

test('a restore maps each recorded name to the local id, keeps numbers of unknown names, and keeps numbers when told', () => {
  const recorded = { users: { 1000: 'ada', 1001: 'bob' }, groups: { 1000: 'ada', 50: 'staff' } };
  const there = directory('ada:x:2000:2000::/:/bin/sh\n', 'ada:x:2000:\nstaff:x:60:\n');
  const ids = ownerMapper(recorded, there);
  assert.equal(ids.uid(1000), 2000);
  assert.equal(ids.uid(1001), 1001, 'bob does not exist here');
  assert.equal(ids.uid(7), 7, 'no name was recorded');
  assert.equal(ids.gid(1000), 2000);
  assert.equal(ids.gid(50), 60);
  const numeric = ownerMapper(recorded, null);
  assert.equal(numeric.uid(1000), 1000);
  assert.equal(ownerMapper(undefined, there).uid(1000), 1000, 'a version 1 manifest has no names');
});
