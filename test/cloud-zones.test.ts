/**
 * End to end on real object services: zones in Azure Blob (Azurite) and zones in S3 (an S3
 * service from npm), each region paired with the other kind. A ZRS vault backs up and restores
 * across three containers or buckets; a GRS vault replicates to the other service and
 * restores from it alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { AzureBlobStore } from '../src/store/azure-blob.js';
import { S3Store } from '../src/store/s3.js';
import { parseConfig } from '../src/vault/config.js';
import { startServer } from '../src/vault/server.js';
import { clientFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, azblobUrl, S3_KEY_ID, S3_SECRET, s3Url, startAzurite, startS3, type ObjectServer } from '../testkit/object-servers.js';
import { MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

const azure: ObjectServer = await startAzurite();
const s3: ObjectServer = await startS3();
test.after(async () => { await azure.stop(); await s3.stop(); });

const azZone = (name: string, container: string) => `      - { name: ${name}, store: "${azblobUrl(azure, container, 'coffre')}", accountKey: "${AZURITE_KEY}" }`;
const s3Zone = (name: string, bucket: string) => `      - { name: ${name}, store: "${s3Url(s3, bucket, 'coffre')}", accessKeyId: ${S3_KEY_ID}, secretAccessKey: ${S3_SECRET} }`;

async function roundTrips(kind: string, primaryZones: string[], secondaryZone: string, countPacks: () => Promise<number>): Promise<void> {
  const dir = await tempDir(`coffre-${kind}-`);
  const yaml = ['regions:', '  primary:', '    name: west', '    zones:', ...primaryZones, '  secondary:', '    name: east', '    zones:', secondaryZone, ''].join('\n');
  await writeFile(join(dir, 'coffre.yaml'), yaml);
  const server = await startServer({ config: parseConfig(yaml, join(dir, 'coffre.yaml')), dataDir: join(dir, 'data'), listen: '127.0.0.1:0', log: () => undefined });
  try {
    const admin = clientFor(server);
    const src = join(dir, 'src');
    await writeTree(src, { 'a.txt': seededText(kind, 800), 'b/blob.bin': seededBytes(kind, MiB + 123), 'b/empty': '' });
    for (const [name, redundancy] of [['zoned', 'ZRS'], ['geo', 'GRS']] as const) {
      const vault = await admin.createVault({ name, redundancy, ...(redundancy === 'GRS' ? { crossRegionRestore: true } : {}) });
      const c = await admin.createCredentials(name);
      const state = await registerAgent({
        agentDir: join(dir, `agent-${name}`), passphrase: PASSPHRASE, machine: `m-${name}`,
        credentials: { kind: 'coffre-vault-credentials', version: 1, server: server.url, vault: name, vaultId: vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint: server.fingerprint },
      });
      const client = clientFor(server, state.token);
      const keys = keysFromJSON(state.keys);
      const { point } = await backup({ client, containerId: state.containerId, keys, agentDir: join(dir, `agent-${name}`), vaultId: state.vaultId, item: 'src', paths: [src] });
      if (redundancy === 'GRS') assert.equal(await server.drainReplication(), 0);
      const target = join(dir, `restore-${name}`);
      const r = await restore({ client, keys, pointId: point.id, target, ...(redundancy === 'GRS' ? { from: 'secondary' as const } : {}) });
      assert.equal(r.job.status, 'Completed', `${kind} ${name}: ${JSON.stringify(r.errors)}`);
      assert.deepEqual(await compareTrees(src, join(target, 'src'), { mtimes: true }), [], `${kind} ${name}`);
      const v = await admin.verify({ vault: name });
      assert.equal(v.status, 'Completed', JSON.stringify(v.errors));
    }
    assert.ok(await countPacks() > 0, 'the packs are in the service');
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('Azure Blob zones (Azurite), paired with an S3 region: ZRS and GRS back up and restore byte-identical', async () => {
  await roundTrips('azure', [azZone('a1', 'zone-a1'), azZone('a2', 'zone-a2'), azZone('a3', 'zone-a3')], s3Zone('s1', 'east-1'), async () => {
    const store = new AzureBlobStore({ name: 'check', account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, container: 'zone-a2', prefix: 'coffre', endpoint: azure.endpoint });
    let n = 0;
    for await (const key of store.list('vaults')) if (key.includes('/packs/')) n++;
    return n;
  });
});

test('S3 zones, paired with an Azure Blob region: ZRS and GRS back up and restore byte-identical', async () => {
  await roundTrips('s3', [s3Zone('b1', 'zone-b1'), s3Zone('b2', 'zone-b2'), s3Zone('b3', 'zone-b3')], azZone('e1', 'east-e1'), async () => {
    const store = new S3Store({ name: 'check', bucket: 'zone-b3', prefix: 'coffre', region: 'us-east-1', endpoint: s3.endpoint, accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET });
    let n = 0;
    for await (const key of store.list('vaults')) if (key.includes('/packs/')) n++;
    store.close();
    return n;
  });
});
