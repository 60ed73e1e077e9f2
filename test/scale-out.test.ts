/**
 * Scale-out end to end: three `coffre server` processes on one PostgreSQL 15 catalog and one
 * Azure Blob store (Azurite), started as a script would (`--catalog postgresql://… --store
 * azblob://… --listen`). Two machines back up at once, each agent given every node
 * (URL1,URL2,URL3) while garbage collection loops; the node one backup runs on is killed with
 * SIGKILL in the middle of it (after its job started, before its first pack). Both backups
 * complete, each as one job; every point restores byte-identical; the dead node's leases pass
 * to a live node, as `coffre server status --json` shows; and a scheduled run, asked for by
 * agents on every live node at once, fires exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { basename, join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { VaultClient } from '../src/agent/client.js';
import { runDueOnce } from '../src/agent/daemon.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { requireState } from '../src/agent/state.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { keysFromJSON } from '../src/core/crypto.js';
import type { ClusterStatus } from '../src/core/cluster.js';
import { createDatabase } from '../testkit/catalog-nodes.js';
import { cli, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { AZURITE_KEY, azblobUrl, startAzurite } from '../testkit/object-servers.js';
import { startPostgres } from '../testkit/postgres.js';
import { startServerProcess, type ServerProcess } from '../testkit/server-process.js';
import { MiB, seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

const LEASE_TTL_MS = 2000;

test('three nodes on one PostgreSQL and one Azurite: a node killed mid-backup, both backups complete as single jobs, every point restores, a scheduled run fires once', async () => {
  const dir = await tempDir('coffre-scale-out-');
  const pg = await startPostgres();
  const azure = await startAzurite();
  const nodes: ServerProcess[] = [];
  // The dead node's port stays ours: a server of another test running meanwhile could take it,
  // and the agents would then meet a stranger's certificate there rather than a node that is gone.
  let deadPort = null as Server | null;
  try {
    const catalog = await createDatabase(pg);
    const store = azblobUrl(azure, 'shared', 'coffre');
    const env = { AZURE_STORAGE_KEY: AZURITE_KEY, COFFRE_LEASE_TTL_MS: String(LEASE_TTL_MS) };
    for (let i = 0; i < 3; i++) {
      const data = join(dir, `node-${i}`);
      if (i > 0) {
        // One deployment: every node has the same admin token and certificate.
        await mkdir(data, { mode: 0o700 });
        await cp(join(dir, 'node-0', 'admin.token'), join(data, 'admin.token'));
        await cp(join(dir, 'node-0', 'tls'), join(data, 'tls'), { recursive: true });
      }
      nodes.push(await startServerProcess(['--data', data, '--catalog', catalog, '--store', store], env, { dataDir: data }));
    }
    const fingerprint = nodes[0]!.fingerprint;
    assert.ok(fingerprint);
    assert.ok(nodes.every((n) => n.fingerprint === fingerprint));
    const urls = nodes.map((n) => n.url);
    const order = (...idx: number[]) => idx.map((i) => urls[i]).join(',');
    const admin = new VaultClient(order(0, 1, 2), nodes[0]!.token, { fingerprint });
    await admin.createVault({ name: 'v', redundancy: 'LRS' });

    const machine = async (name: string, servers: string) => {
      const c = await admin.createCredentials('v');
      const agentDir = join(dir, `agent-${name}`);
      const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: name, credentials: { kind: 'coffre-vault-credentials', version: 1, server: servers, vault: 'v', vaultId: c.vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint } });
      return { agentDir, st, keys: keysFromJSON(st.keys), client: new VaultClient(servers, st.token, { fingerprint }) };
    };
    // A talks to node 1 first, B to node 2: node 1 is the one killed.
    const a = await machine('a', order(1, 2, 0));
    const b = await machine('b', order(2, 0, 1));
    const s = await machine('s', order(0, 2, 1));

    // The scheduled item: backed up once, then given a policy whose run comes at the next minute.
    const sSrc = join(dir, 'src-s');
    await writeTree(sSrc, { 'notes.txt': seededText('s', 2000), 'data.bin': seededBytes('s', 300_000) });
    const first = await backup({ client: s.client, containerId: s.st.containerId, keys: s.keys, agentDir: s.agentDir, vaultId: s.st.vaultId, item: 'sched', paths: [sSrc] });
    const at = new Date(Math.ceil((Date.now() + 20_000) / 60_000) * 60_000);
    const hhmm = at.toISOString().slice(11, 16);
    await admin.createPolicy('Soon', { name: 'x', timeZone: 'UTC', schedule: { frequency: 'Daily', times: [hhmm] }, retention: { daily: { count: 7 } } }, 'v');
    await admin.assignPolicy('Soon', 'sched', 'v');

    // Two backups at once while GC loops; node 1 dies once A's job exists, before its first pack.
    const srcA = join(dir, 'src-a');
    const srcB = join(dir, 'src-b');
    await writeTree(srcA, { 'big.bin': seededBytes('a', 3 * MiB + 17), 'docs/x.txt': seededText('a', 5000), 'docs/same.txt': seededText('same', 4000) });
    await writeTree(srcB, { 'big.bin': seededBytes('b', 2 * MiB + 3), 'same.txt': seededText('same', 4000) });
    let killed = false;
    const aClient = new Proxy(a.client, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'putPack' || typeof value !== 'function') return typeof value === 'function' ? (value as (...x: unknown[]) => unknown).bind(target) : value;
        return async (...args: unknown[]) => {
          if (!killed) {
            killed = true;
            await nodes[1]!.kill9();
            deadPort = await holdPort(Number(new URL(urls[1]!).port));
          }
          return (value as (...x: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    });
    let backingUp = true;
    let gcRuns = 0;
    const gcLoop = (async () => {
      while (backingUp) {
        const j = await admin.gc('v');
        assert.ok(j.status === 'Completed' || j.status === 'CompletedWithWarnings', JSON.stringify(j.errors));
        gcRuns++;
      }
    })();
    const [ra, rb] = await Promise.all([
      backup({ client: aClient, containerId: a.st.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.st.vaultId, item: 'files-a', paths: [srcA] }),
      backup({ client: b.client, containerId: b.st.containerId, keys: b.keys, agentDir: b.agentDir, vaultId: b.st.vaultId, item: 'files-b', paths: [srcB] }),
    ]).finally(() => { backingUp = false; });
    await gcLoop;
    assert.ok(killed, 'node 1 was killed during backup A');
    assert.ok(gcRuns > 0);
    assert.notEqual(a.client.currentServer, urls[1], 'agent A moved off the dead node');

    const jobs = await admin.listJobs('v');
    for (const [item, r] of [['files-a', ra], ['files-b', rb]] as const) {
      const own = jobs.filter((j) => j.operation === 'Backup' && j.item === item);
      assert.equal(own.length, 1, `${item}: one job, not ${own.length}`);
      assert.equal(own[0]!.status, 'Completed');
      assert.equal(own[0]!.pointId, r.point.id);
    }

    // The dead node's leases go to live nodes; status on any node says so.
    await new Promise((r) => setTimeout(r, LEASE_TTL_MS * 2));
    const st = await cli(['server', 'status', '--json'], { COFFRE_SERVER: order(1, 0, 2), COFFRE_TOKEN: nodes[0]!.token, COFFRE_FINGERPRINT: fingerprint });
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as ClusterStatus;
    assert.equal(status.catalog.engine, 'postgresql');
    assert.equal(status.catalog.schemaVersion, status.catalog.codeSchemaVersion);
    assert.deepEqual(status.nodes.filter((n) => n.live).map((n) => n.url).sort(), [urls[0], urls[2]].sort());
    assert.deepEqual(status.leases.map((l) => l.name), ['maintenance', 'replication']);
    for (const l of status.leases) assert.ok(l.holderUrl === urls[0] || l.holderUrl === urls[2], `${l.name} held by ${l.holderUrl}`);

    // The scheduled run: the agent of S asks on both live nodes at once; the run fires once.
    const wait = at.getTime() + 1500 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const state = await requireState(s.agentDir);
    const polls = await Promise.all([order(0), order(2), order(0, 2)].map((servers) =>
      runDueOnce({ client: new VaultClient(servers, s.st.token, { fingerprint }), state, agentDir: s.agentDir })));
    const ran = polls.flat().filter((r) => r.result);
    assert.equal(ran.length, 1, JSON.stringify(polls));
    assert.equal(ran[0]!.scheduledAt, at.toISOString());
    const sJobs = (await admin.listJobs('v')).filter((j) => j.item === 'sched' && j.operation === 'Backup');
    assert.equal(sJobs.length, 2, 'the first backup and one scheduled run');
    assert.ok(sJobs.every((j) => j.status === 'Completed'));

    // Every point restores byte-identical, through the nodes still up.
    const restores: [typeof a, string, string][] = [[a, ra.point.id, srcA], [b, rb.point.id, srcB], [s, first.point.id, sSrc], [s, ran[0]!.result!.point.id, sSrc]];
    for (const [m, point, src] of restores) {
      const target = join(dir, `restore-${point}`);
      const r = await restore({ client: m.client, keys: m.keys, pointId: point, target });
      assert.equal(r.job.status, 'Completed', JSON.stringify(r.errors));
      assert.deepEqual(await compareTrees(src, join(target, basename(src))), []);
    }
    const points = await admin.listPoints({ vault: 'v' });
    assert.equal(points.length, 4, 'no point lost, none twice');
    const verify = await admin.verify({ vault: 'v' });
    assert.equal(verify.status, 'Completed', JSON.stringify(verify.errors));
  } finally {
    deadPort?.close();
    for (const n of nodes) await n.stop().catch(() => undefined);
    await azure.stop();
    await pg.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/** A listener on `port` that drops every connection at once, as a dead node's address would refuse it. */
function holdPort(port: number): Promise<Server> {
  const server = createServer((socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
