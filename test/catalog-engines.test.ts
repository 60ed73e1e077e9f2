/**
 * The catalog on both engines: SQLite (embedded default, one node) and a real PostgreSQL 15
 * started here (three nodes on one database and one store). The same scenarios run on each:
 * versioned migrations (and the refusal of a catalog newer than the code), the append-only
 * audit log, a backup/restore/prune/GC/verify round trip through the vault's API, and the
 * transactions that must hold under concurrency: commits (the same commit raced on every node,
 * many backups at once), scheduled and on-demand claims, missed runs recorded once when every
 * node reconciles at once, and the 500-vault limit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { backup } from '../src/agent/backup.js';
import { VaultClient } from '../src/agent/client.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import { openCatalog } from '../src/catalog/open.js';
import { SCHEMA_VERSION } from '../src/catalog/migrations.js';
import { redactUrl } from '../src/catalog/postgres.js';
import { parseConfig, singleStoreTopology } from '../src/vault/config.js';
import { tmpdir } from 'node:os';
import { ManualClock } from '../src/core/clock.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { CoffreError } from '../src/core/errors.js';
import { newId } from '../src/core/ids.js';
import { MAX_VAULTS_PER_SUBSCRIPTION } from '../src/vault/vaults.js';
import { pruneAndCollect } from '../src/vault/maintenance.js';
import { createDatabase, startNodes, type EngineName, type Nodes } from '../testkit/catalog-nodes.js';
import { clientFor, credentialsFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { serverFails } from '../testkit/server-process.js';
import { startPostgres, type PgCluster } from '../testkit/postgres.js';
import { seededBytes, seededText, writeTree } from '../testkit/vm-fixtures.js';

let cluster: PgCluster;
before(async () => { cluster = await startPostgres(); });
after(async () => { await cluster?.close(); });

test('the catalog is chosen by --catalog or the configuration file; --store is a one-zone LRS topology', async () => {
  const yaml = 'catalog: postgresql://coffre:secret@db:5432/coffre\nregions:\n  primary:\n    name: west\n    zones:\n      - { name: z, store: "file:///srv/coffre" }\n';
  assert.equal(parseConfig(yaml, '/etc/coffre.yaml').catalog, 'postgresql://coffre:secret@db:5432/coffre');
  assert.throws(() => parseConfig(yaml.replace('postgresql://', 'mysql://'), '/etc/coffre.yaml'), (e: unknown) => e instanceof CoffreError && e.code === 'ConfigInvalid' && /catalog/.test(e.message));
  assert.equal(await codeOf(openCatalog('mysql://x@y/z', tmpdir())), 'InvalidArgument');
  assert.deepEqual(singleStoreTopology('s3://bucket/coffre?endpoint=http://127.0.0.1:9000&region=us-east-1'), { primary: { name: 'primary', zones: [{ name: 'zone-1', store: 's3://bucket/coffre?endpoint=http://127.0.0.1:9000&region=us-east-1' }] } });
  assert.throws(() => singleStoreTopology('ftp://nowhere'), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument');
  assert.equal(redactUrl('postgresql://coffre:secret@db:5432/coffre'), 'postgresql://coffre:***@db:5432/coffre');
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof CoffreError) return e.code;
    throw e;
  }
}

for (const engine of ['sqlite', 'postgresql'] as EngineName[]) {
  describe(`catalog on ${engine}`, () => {
    let dir: string;
    let nodes: Nodes;
    const clock = new ManualClock(new Date('2026-05-04T08:00:00Z'));
    const node = (i: number) => nodes.servers[i % nodes.servers.length]!;

    before(async () => {
      dir = await tempDir(`coffre-catalog-${engine}-`);
      const catalog = engine === 'postgresql' ? await createDatabase(cluster) : undefined;
      nodes = await startNodes(dir, { catalog, count: engine === 'postgresql' ? 3 : 1, clock });
    });
    after(async () => {
      await nodes?.close();
      await rm(dir, { recursive: true, force: true });
    });

    test('migrations are versioned and applied once; a catalog newer than the code is refused', async () => {
      const db = node(0).db;
      assert.equal(node(0).catalog.engine, engine);
      assert.equal(await node(0).catalog.schemaVersion(), SCHEMA_VERSION);
      const versions = await db.selectFrom('schema_migrations' as never).select('version' as never).execute() as { version: number }[];
      assert.deepEqual(versions.map((v) => Number(v.version)).sort((a, b) => a - b), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
      // Opening it again (another node starting) changes nothing.
      const again = await openCatalog(nodes.catalog, node(0).dataDir);
      assert.equal(await again.schemaVersion(), SCHEMA_VERSION);
      await again.db.destroy();
      assert.equal((await db.selectFrom('schema_migrations' as never).select('version' as never).execute()).length, SCHEMA_VERSION);
      // A newer Coffre's migration: this code refuses the catalog, before writing anything.
      const ahead = engine === 'postgresql' ? await createDatabase(cluster, 'ahead') : undefined;
      const aheadDir = join(dir, 'ahead');
      await mkdir(aheadDir, { recursive: true });
      const fresh = await openCatalog(ahead, aheadDir);
      await fresh.db.insertInto('schema_migrations' as never).values({ version: SCHEMA_VERSION + 1, name: 'from the future', applied_at: clock.now().toISOString() } as never).execute();
      await fresh.db.destroy();
      assert.equal(await codeOf(openCatalog(ahead, aheadDir)), 'CatalogTooNew');
      // The command line says so with the code and exits non-zero.
      const r = await serverFails(['--data', aheadDir, '--insecure-http', ...(ahead ? ['--catalog', ahead] : [])]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /CatalogTooNew/);
    });

    test('every node reports the live nodes, one holder per lease, and the catalog engine and schema version', async () => {
      for (const s of nodes.servers) await s.leases.renew();
      const status = await clientFor(node(1)).clusterStatus();
      assert.equal(status.catalog.engine, engine);
      assert.equal(status.catalog.schemaVersion, SCHEMA_VERSION);
      assert.equal(status.node.url, node(1).url);
      assert.deepEqual(status.nodes.filter((n) => n.live).map((n) => n.url).sort(), nodes.servers.map((s) => s.url).sort());
      assert.deepEqual(status.leases.map((l) => l.name), ['maintenance', 'replication']);
      for (const l of status.leases) {
        const holders = nodes.servers.filter((s) => s.leases.holds(l.name as 'maintenance' | 'replication'));
        assert.equal(holders.length, 1, `lease ${l.name} held by ${holders.length} nodes`);
        assert.equal(l.holderUrl, holders[0]!.url);
      }
    });

    test('the audit log is append-only at the engine', async () => {
      const db = node(0).db;
      await clientFor(node(0)).listVaults();
      await clientFor(node(0)).createVault({ name: 'audited', redundancy: 'LRS' });
      const before = await db.selectFrom('audit_log').select('seq').execute();
      assert.ok(before.length > 0);
      await assert.rejects(db.updateTable('audit_log').set({ result: 'forged' }).execute(), /append-only/);
      await assert.rejects(db.deleteFrom('audit_log').execute(), /append-only/);
      assert.equal((await db.selectFrom('audit_log').select('seq').execute()).length, before.length);
    });

    test('backups through every node, raced commits, restore byte-identical, prune, GC and verify', async () => {
      const admin = clientFor(node(0));
      await admin.createVault({ name: 'v', redundancy: 'LRS' });
      const machines = await Promise.all([0, 1, 2, 3].map(async (i) => {
        const agentDir = join(dir, `agent-${i}`);
        const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: `m${i}`, credentials: await credentialsFor(node(i), 'v') });
        return { st, agentDir, keys: keysFromJSON(st.keys), client: clientFor(node(i), st.token) };
      }));
      const src = (i: number, round: number) => join(dir, `src-${i}-${round}`);
      const points: { machine: number; id: string; src: string }[] = [];
      for (const round of [0, 1]) {
        // Four machines back up at once, each through another node; each commit of machine 0 is sent to every node at once.
        const results = await Promise.all(machines.map(async (m, i) => {
          await writeTree(src(i, round), { 'a.txt': seededText(`a${i}`, 3000), 'b.bin': seededBytes(`b${i}-${round}`, 200_000 + i), 'same.txt': seededText('same', 5000) });
          let client = m.client;
          if (i === 0) client = racingClient(m.client, nodes.servers.map((s) => clientFor(s, m.st.token)));
          return backup({ client, containerId: m.st.containerId, keys: m.keys, agentDir: m.agentDir, vaultId: m.st.vaultId, item: `files-${i}`, paths: [src(i, round)] });
        }));
        results.forEach((r, i) => points.push({ machine: i, id: r.point.id, src: src(i, round) }));
      }
      const all = await admin.listPoints({ vault: 'v' });
      assert.deepEqual(all.map((p) => p.id).sort(), points.map((p) => p.id).sort(), 'one point per backup, none twice');
      const jobs = (await admin.listJobs('v')).filter((j) => j.operation === 'Backup');
      assert.equal(jobs.length, points.length);
      assert.ok(jobs.every((j) => j.status === 'Completed'), JSON.stringify(jobs.map((j) => [j.status, j.errors])));
      for (const p of points) {
        const m = machines[p.machine]!;
        const target = join(dir, `restored-${p.id}`);
        await restore({ client: clientFor(node(p.machine + 1), m.st.token), keys: m.keys, pointId: p.id, target });
        assert.deepEqual(await compareTrees(p.src, join(target, basename(p.src))), []);
      }
      // Retention: both points are kept; prune finds nothing to delete and GC frees nothing live.
      const { prune, gc } = await pruneAndCollect({ db: node(1).db, stores: node(1).stores, clock }, 'v');
      assert.equal(prune.status, 'Completed');
      assert.equal(gc.status, 'Completed');
      const verify = await admin.verify({ vault: 'v' });
      assert.equal(verify.status, 'Completed', JSON.stringify(verify.errors));
    });

    test('a run is claimed once, by one of many concurrent claims on every node', async () => {
      const admin = clientFor(node(0));
      await admin.createVault({ name: 'claims', redundancy: 'LRS' });
      const agentDir = join(dir, 'agent-claims');
      const st = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: 'claimer', credentials: await credentialsFor(node(0), 'claims') });
      const s = join(dir, 'src-claims');
      await writeTree(s, { 'x.txt': seededText('x', 100) });
      await backup({ client: clientFor(node(0), st.token), containerId: st.containerId, keys: keysFromJSON(st.keys), agentDir, vaultId: st.vaultId, item: 'sched', paths: [s] });
      const agents = nodes.servers.map((n) => clientFor(n, st.token));
      const race = (claim: (c: VaultClient) => Promise<void>) => Promise.all(Array.from({ length: 9 }, (_, i) => codeOf(claim(agents[i % agents.length]!))));
      const scheduledAt = new Date(clock.now().getTime() + 3_600_000).toISOString();
      const scheduled = await race((c) => c.claim('sched', scheduledAt));
      assert.equal(scheduled.filter((c) => c === 'ok').length, 1, scheduled.join(','));
      assert.ok(scheduled.every((c) => c === 'ok' || c === 'BadRequest'));
      const asked = await admin.backupItem('sched', undefined, 'claims');
      const onDemand = await race((c) => c.claim('sched', asked.requestedAt, { onDemand: true }));
      assert.equal(onDemand.filter((c) => c === 'ok').length, 1, onDemand.join(','));
    });

    test('missed runs are recorded once when every node reconciles at once', async () => {
      const admin = clientFor(node(0));
      const before = (await admin.listJobs('claims')).filter((j) => j.errors.some((e) => e.code === 'MissedSchedule')).length;
      // Three days and a half later: the daily 22:00 runs of the item were not claimed.
      clock.advance(3.5 * 86_400_000);
      await Promise.all(nodes.servers.flatMap((s) => [s.maintain(), s.maintain()]));
      const missed = (await admin.listJobs('claims')).filter((j) => j.errors.some((e) => e.code === 'MissedSchedule'));
      const times = missed.map((j) => String(j.details.scheduledAt));
      assert.ok(missed.length - before >= 2, `expected missed runs, got ${missed.length - before}`);
      assert.equal(new Set(times).size, times.length, `a missed run recorded twice: ${times.join(', ')}`);
    });

    test(`the ${MAX_VAULTS_PER_SUBSCRIPTION}-vault limit holds against concurrent creations on every node`, async () => {
      const db = node(0).db;
      const now = clock.now().toISOString();
      const present = MAX_VAULTS_PER_SUBSCRIPTION - 3;
      for (let i = 0; i < present; i += 100) {
        await db.insertInto('vaults').values(Array.from({ length: Math.min(100, present - i) }, (_, k) => ({ id: newId(), name: `pre-${i + k}`, subscription: 'full', redundancy: 'LRS', created_at: now }))).execute();
      }
      const codes = await Promise.all(Array.from({ length: 8 }, (_, i) => codeOf(clientFor(node(i)).createVault({ name: `race-${i}`, subscription: 'full', redundancy: 'LRS' }))));
      assert.equal(codes.filter((c) => c === 'ok').length, 3, codes.join(','));
      assert.equal(codes.filter((c) => c === 'VaultLimitReached').length, 5, codes.join(','));
      const { count } = await db.selectFrom('vaults').select((eb) => eb.fn.countAll<number>().as('count')).where('subscription', '=', 'full').executeTakeFirstOrThrow();
      assert.equal(Number(count), MAX_VAULTS_PER_SUBSCRIPTION);
    });
  });
}

/** A client whose commits go to every node at once (an agent retrying elsewhere): all must answer with the same point. */
function racingClient(base: VaultClient, everywhere: VaultClient[]): VaultClient {
  return new Proxy(base, {
    get(target, prop, receiver) {
      if (prop !== 'commit') return Reflect.get(target, prop, receiver) as unknown;
      return async (point: string, body: Parameters<VaultClient['commit']>[1]) => {
        const answers = await Promise.all(everywhere.map((c) => c.commit(point, body)));
        for (const a of answers) assert.equal(a.id, point);
        return answers[0]!;
      };
    },
  });
}
