/**
 * Upgrade: a data folder written before redundancy existed (packs, manifests and reference
 * lists in one folder store, `DATA/store`, no vault in their keys, no records) keeps working.
 * The old layout is produced here by running the vault API over that one folder for every
 * vault, as the previous server did; the new server then moves the objects into each vault's
 * store, records every point and vault, and restores the old points byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VaultClient } from '../src/agent/client.js';
import { backup } from '../src/agent/backup.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { openSqliteCatalog } from '../src/catalog/sqlite.js';
import { systemClock } from '../src/core/clock.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { SingleCopyStore } from '../src/store/copies.js';
import { LocalFolderStore } from '../src/store/local-folder.js';
import { Topology } from '../src/store/topology.js';
import { defaultTopology } from '../src/vault/config.js';
import { ensureAdminPrincipal } from '../src/vault/access.js';
import { buildApi } from '../src/vault/http.js';
import { startServer } from '../src/vault/server.js';
import { VaultStores } from '../src/vault/vault-stores.js';
import { clientFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

/** Every file under a folder, relative. */
async function list(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((d) => d.isFile()).map((d) => join(d.parentPath, d.name).slice(dir.length + 1)).sort();
}

test('a data folder of the previous layout (packs in DATA/store) is upgraded and its points restore byte-identical', async () => {
  const dir = await tempDir('coffre-upgrade-');
  const data = join(dir, 'data');
  try {
    // --- the previous server: one folder store for everything, no records ---
    await mkdir(data);
    const db = await openSqliteCatalog(join(data, 'catalog.sqlite'));
    await writeFile(join(data, 'admin.token'), 'cadm_old-token\n', { mode: 0o600 });
    const legacy = new LocalFolderStore(join(data, 'store'), 'store');
    await legacy.create();
    const oneFolder = new SingleCopyStore({ name: 'store', role: 'primary', store: legacy });
    const stores = new VaultStores(await Topology.open(defaultTopology(data)), db, systemClock).wrapped(() => oneFolder);
    await ensureAdminPrincipal(db, 'cadm_old-token', new Date().toISOString());
    const app = buildApi({ db, stores, clock: systemClock, credentialsPin: null });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const admin = new VaultClient(url, 'cadm_old-token');
    const vault = await admin.createVault({ name: 'old' });
    const c = await admin.createCredentials('old');
    const agentDir = join(dir, 'agent');
    const state = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: 'm', credentials: { kind: 'coffre-vault-credentials', version: 1, server: url, vault: 'old', vaultId: vault.id, secret: c.secret, expiresAt: c.expiresAt } });
    const keys = keysFromJSON(state.keys);
    const src = join(dir, 'src');
    await writeTree(src, { 'a.txt': seededText('old', 900), 'bin/b.bin': seededBytes('old', MiB + 5) });
    const opts = (client: VaultClient) => ({ client, containerId: state.containerId, keys, agentDir, vaultId: state.vaultId, item: 'src', paths: [src] });
    const p1 = (await backup(opts(new VaultClient(url, state.token)))).point;
    await writeTree(src, { 'c.txt': 'second point' });
    const p2 = (await backup(opts(new VaultClient(url, state.token)))).point;
    await app.close();
    // What the previous version did not have: records in the store, hashes and settings in the catalog.
    for (const key of await list(join(data, 'store'))) {
      if (!/^(packs\/|points\/[0-9a-f]+\/(manifest|refs)$)/.test(key)) await rm(join(data, 'store', key));
    }
    await db.deleteFrom('point_objects').execute();
    await db.deleteFrom('vault_storage').execute();
    await db.destroy();
    await rm(join(data, 'store', 'vault.json'), { force: true });
    const oldKeys = await list(join(data, 'store'));
    assert.ok(oldKeys.some((k) => k.startsWith('packs/')) && oldKeys.includes(`points/${p1.id}/manifest`));
    assert.ok(oldKeys.every((k) => k.startsWith('packs/') || k.startsWith('points/')), oldKeys.join(' '));

    // --- the new server on the same data folder ---
    const lines: string[] = [];
    const server = await startServer({ dataDir: data, listen: '127.0.0.1:0', log: (l) => lines.push(l) });
    try {
      assert.ok(lines.some((l) => /upgrade done: \d+ objects moved .*2 points and 1 vaults recorded .*removed/.test(l)), lines.join('\n'));
      await assert.rejects(stat(join(data, 'store')), { code: 'ENOENT' }, 'the old folder is gone once emptied');
      const client = clientFor(server, state.token);
      for (const [p, expectFiles] of [[p1, 2], [p2, 3]] as const) {
        const target = join(dir, `restore-${p.id}`);
        const r = await restore({ client, keys, pointId: p.id, target });
        assert.equal(r.job.status, 'Completed', JSON.stringify(r.errors));
        assert.equal(r.job.filesChanged, expectFiles);
      }
      assert.deepEqual(await compareTrees(src, join(dir, `restore-${p2.id}`, 'src'), { mtimes: true }), []);
      const newAdmin = clientFor(server);
      assert.equal((await newAdmin.verify({})).status, 'Completed');
      // The vault keeps its redundancy (GRS): its old points reach the paired region too.
      assert.equal(await server.drainReplication(), 0);
      assert.deepEqual((await newAdmin.listPoints({})).map((p) => p.replicated), [true, true]);
      const v = await newAdmin.showVault('old');
      assert.equal(v.redundancy, 'GRS');
      // And new backups go on.
      await writeTree(src, { 'd.txt': 'after the upgrade' });
      const p3 = (await backup(opts(client))).point;
      const target = join(dir, 'restore-new');
      assert.equal((await restore({ client, keys, pointId: p3.id, target })).job.status, 'Completed');
      assert.deepEqual(await compareTrees(src, join(target, 'src'), { mtimes: true }), []);
    } finally {
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
