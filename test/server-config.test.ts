/**
 * `coffre server --config`: a configuration is checked before anything starts, and each
 * mistake gets a message naming the field and what to write (exit status 2). A topology that
 * cannot keep a redundancy says so when such a vault is created. A full store ends a backup
 * with StorageFull, naming the store; nothing is committed, and the next backup works once
 * there is room.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { JobInfo } from '../src/core/api.js';
import { CoffreError } from '../src/core/errors.js';
import { Topology } from '../src/store/topology.js';
import { loadConfig, parseConfig } from '../src/vault/config.js';
import { startServer } from '../src/vault/server.js';
import { cli, clientFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { serverFails } from '../testkit/server-process.js';
import { MiB, seededBytes, writeTree } from '../testkit/vm-fixtures.js';

/** What `coffre server --config` does with a file before starting anything: parse it, open its stores. */
async function checkConfig(file: string, env: NodeJS.ProcessEnv): Promise<void> {
  (await Topology.open(loadConfig(file).topology, env)).close();
}

test('a configuration with a mistake is refused with a message that names the field', async () => {
  const dir = await tempDir('coffre-config-');
  try {
    const zone = (name: string, store: string) => `      - { name: ${name}, store: "${store}" }`;
    const file = (name: string) => pathToFileURL(join(dir, name)).href;
    const cases: [string, string, RegExp][] = [
      ['syntax', 'regions: [unclosed', /not valid YAML or JSON/],
      ['unknown-field', `regions:\n  primary:\n    name: p\n    zone: []\n`, /regions\.primary.*(zone|Unrecognized)/i],
      ['no-zones', `regions:\n  primary:\n    name: p\n    zones: []\n`, /regions\.primary\.zones: a region needs at least one zone/],
      ['scheme', `regions:\n  primary:\n    name: p\n    zones:\n${zone('z1', 'ftp://host/x')}\n`, /regions\.primary\.zones\.0\.store: .*unknown kind of store ftp:/],
      ['twice', `regions:\n  primary:\n    name: p\n    zones:\n${zone('z1', file('a'))}\n${zone('z2', file('a'))}\n`, /regions\.primary\.zones\.1\.store: .* is also regions\.primary\.zones\.0; each zone needs a store of its own/],
      ['no-key', `regions:\n  primary:\n    name: p\n    zones:\n${zone('z1', 'azblob://acct/cont?endpoint=http://127.0.0.1:9/acct')}\n`, /no key for storage account acct: set accountKey .* or AZURE_STORAGE_KEY/],
      ['no-s3-keys', `regions:\n  primary:\n    name: p\n    zones:\n${zone('z1', 's3://bucket-a/x?region=eu-west-3')}\n`, /no credentials for bucket bucket-a: .*AWS_ACCESS_KEY_ID/],
      ['same-region', `regions:\n  primary:\n    name: p\n    zones:\n${zone('z1', file('a'))}\n  secondary:\n    name: p\n    zones:\n${zone('z1', file('b'))}\n`, /regions\.secondary\.name: the paired region needs a name of its own/],
    ];
    const env = { AZURE_STORAGE_KEY: '', AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' };
    for (const [name, text, message] of cases) {
      const f = join(dir, `${name}.yaml`);
      await writeFile(f, text);
      // Checked as the server checks it; the command line's exit status and format once below.
      await assert.rejects(checkConfig(f, env), (e: unknown) => e instanceof CoffreError && e.code === 'ConfigInvalid' && message.test(e.message), name);
    }
    const r = await serverFails(['--config', join(dir, 'twice.yaml'), '--data', join(dir, 'data')], env, dir);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^coffre: configuration .*twice\.yaml: regions\.primary\.zones\.1\.store: .* each zone needs a store of its own.* \[ConfigInvalid\]\n$/);
    const missing = await serverFails(['--config', join(dir, 'nope.yaml')], env, dir);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.yaml: cannot be read: ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a topology without enough zones or a paired region refuses the redundancies it cannot keep', async () => {
  const dir = await tempDir('coffre-config-');
  const yaml = `regions:\n  primary:\n    name: solo\n    zones:\n      - { name: z1, store: "${pathToFileURL(join(dir, 'z1')).href}" }\n`;
  const server = await startServer({ config: parseConfig(yaml, join(dir, 'c.yaml')), dataDir: join(dir, 'data'), listen: '127.0.0.1:0', log: () => undefined });
  try {
    const admin = (args: string[]) => cli(args, { COFFRE_SERVER: server.url, COFFRE_TOKEN: server.adminToken, COFFRE_FINGERPRINT: server.fingerprint ?? '' }, { cwd: dir });
    const grs = await admin(['vault', 'create', 'v1']);
    assert.equal(grs.code, 2);
    assert.match(grs.stderr, /cannot keep GRS vaults: GRS needs a secondary \(paired\) region/);
    const zrs = await admin(['vault', 'create', 'v2', '--redundancy', 'ZRS']);
    assert.equal(zrs.code, 2);
    assert.match(zrs.stderr, /ZRS needs a primary region of at least 3 zones; region solo has 1/);
    assert.equal((await admin(['vault', 'create', 'v3', '--redundancy', 'LRS'])).code, 0);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a full store: the backup fails with StorageFull naming the store, commits nothing, and works once there is room', async () => {
  const dir = await tempDir('coffre-full-');
  const disk = join(dir, 'disk');
  await mkdir(disk);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk]);
  const yaml = `regions:\n  primary:\n    name: small\n    zones:\n      - { name: z1, store: "${pathToFileURL(join(disk, 'coffre')).href}" }\n`;
  const server = await startServer({ config: parseConfig(yaml, join(dir, 'c.yaml')), dataDir: join(dir, 'data'), listen: '127.0.0.1:0', log: () => undefined });
  try {
    const admin = (args: string[]) => cli(args, { COFFRE_SERVER: server.url, COFFRE_TOKEN: server.adminToken, COFFRE_FINGERPRINT: server.fingerprint ?? '' }, { cwd: dir });
    assert.equal((await admin(['vault', 'create', 'v', '--redundancy', 'LRS'])).code, 0);
    assert.equal((await admin(['vault', 'credentials', 'v', '--out', join(dir, 'v.cred')])).code, 0);
    const agent = (args: string[]) => cli(['--agent-dir', join(dir, 'agent'), ...args], { COFFRE_PASSPHRASE: PASSPHRASE }, { cwd: dir });
    assert.equal((await agent(['agent', 'register', '--credentials', join(dir, 'v.cred')])).code, 0);
    const src = join(dir, 'src');
    await writeTree(src, { 'big.bin': seededBytes('full', 6 * MiB) });
    const full = await agent(['backup', src, '--item', 'src']);
    assert.equal(full.code, 1, full.stdout);
    assert.match(full.stderr, /store small\/z1.*the store is full; free space .* nothing was lost \[StorageFull\]/);
    assert.deepEqual(await clientFor(server).listPoints({}), [], 'nothing was committed');
    execFileSync('mount', ['-o', 'remount,size=64m', disk]);
    const again = await agent(['backup', src, '--item', 'src', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as JobInfo).status, 'Completed');
  } finally {
    await server.close();
    execFileSync('umount', [disk]);
    await rm(dir, { recursive: true, force: true });
  }
});
