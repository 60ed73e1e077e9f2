/**
 * Online copies cut short, and throttled. The backup server is killed with SIGKILL in the middle
 * of an online copy (a real `coffre backup-server run` process): the vault holds no partial
 * point, and the next copy completes without sending again what had arrived. The network
 * between the two tiers is cut in the middle of a copy (a TCP proxy that drops every
 * connection): the same. And a copy under a 2 MiB/s limit takes at least the time the limit
 * implies. Data is random (incompressible), a few MiB, sent in small packs so that a copy is
 * surely cut between two of them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { VaultClient } from '../src/agent/client.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { backupFiles } from '../src/agent/snapshot/snapshot-backup.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { CredentialsFile } from '../src/core/api.js';
import { keysFromJSON } from '../src/core/crypto.js';
import type { Kysely } from 'kysely';
import type { Database } from '../src/catalog/schema.js';
import { startServer } from '../src/vault/server.js';
import { cli, clientFor, credentialsFor, healthy, PASSPHRASE, tempDir, type CliResult, type TestAgent } from '../testkit/harness.js';
import { twoTiers, UPSTREAM_VAULT } from '../testkit/two-tiers.js';
import { seededBytes } from '../testkit/vm-fixtures.js';
import { freePort } from '../testkit/ports.js';

const MiB = 1024 * 1024;
const LIMIT = 2 * MiB;
/** 2 MiB/s at every hour: no work days, the same limit outside them. */
const THROTTLE = { workDays: [], workBytesPerSecond: null, otherBytesPerSecond: LIMIT };
const PACK = 256 * 1024;
const SHORT_TERM = { schedule: { frequency: 'Hourly', intervalHours: 4 }, retention: { daily: { count: 7 } } };
const ONLINE = { schedule: { frequency: 'Daily', times: ['23:00'] }, retention: { daily: { count: 30 } } };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function makeData(dir: string, seed: string, files: number, size: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(join(dir, `part-${i}.bin`), seededBytes(`${seed}-${i}`, size));
}

/** What the vault holds for a machine: blobs, and blobs counted pack by pack (equal when none came twice). */
async function vaultHolds(db: Kysely<Database>, machine: string) {
  const c = await db.selectFrom('containers').select('id').where('name', '=', machine).executeTakeFirst();
  if (!c) return { container: null, blobs: 0, packs: 0, inPacks: 0, ids: new Set<string>() };
  const blobs = await db.selectFrom('blobs').select('id').where('container_id', '=', c.id).execute();
  const packs = await db.selectFrom('packs').select('blob_count').where('container_id', '=', c.id).execute();
  return { container: c.id, blobs: blobs.length, packs: packs.length, inPacks: packs.reduce((n, p) => n + p.blob_count, 0), ids: new Set(blobs.map((b) => b.id)) };
}

/**
 * What the vault holds once it stopped changing: a pack whose body had wholly arrived when the
 * connection was cut is still indexed a moment later.
 */
async function settledHolds(db: Kysely<Database>, machine: string) {
  let last = await vaultHolds(db, machine);
  for (;;) {
    await sleep(300);
    const now = await vaultHolds(db, machine);
    if (now.blobs === last.blobs && now.packs === last.packs) return now;
    last = now;
  }
}

/** Waits until at least `packs` packs of the machine are indexed in the vault (a copy is mid-way). */
async function waitForPacks(db: Kysely<Database>, machine: string, packs: number, ended: () => boolean): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (ended()) throw new Error('the copy ended before it could be cut mid-way');
    if ((await vaultHolds(db, machine)).packs >= packs) return;
    await sleep(20);
  }
  throw new Error(`no ${packs} packs arrived within a minute`);
}


test('kill -9 of the backup server during an online copy: no partial point, and the next copy sends only what had not arrived', async () => {
  const dir = await tempDir('coffre-bs-kill-');
  const upstream = await startServer({ dataDir: join(dir, 'vault'), listen: '127.0.0.1:0' });
  let child: { pid: number; exited: Promise<CliResult>; done: boolean } | null = null;
  const kill = () => { if (child && !child.done) process.kill(child.pid, 'SIGKILL'); };
  try {
    const vaultAdmin = clientFor(upstream);
    await vaultAdmin.createVault({ name: UPSTREAM_VAULT });
    await vaultAdmin.createPolicy('Online', ONLINE, UPSTREAM_VAULT);
    const credFile = join(dir, 'vault.cred');
    await writeFile(credFile, JSON.stringify(await credentialsFor(upstream, UPSTREAM_VAULT)), { mode: 0o600 });
    const port = await freePort();
    const data = join(dir, 'bs');
    const config = join(dir, 'bs.json');
    // No automatic rounds (a day apart): the test asks for the copies.
    await writeFile(config, JSON.stringify({ data, listen: `127.0.0.1:${port}`, name: 'bs01', vaultCredentials: credFile, intervalSeconds: 86_400, throttle: THROTTLE, packBytes: PACK }));
    const start = async () => {
      const c = { pid: 0, done: false, exited: Promise.resolve({ code: null, stdout: '', stderr: '', signal: null } as CliResult) };
      c.exited = cli(['backup-server', 'run', '--config', config], {}, { cwd: dir, onSpawn: (pid) => { c.pid = pid; } });
      void c.exited.then(() => { c.done = true; });
      child = c;
      for (let i = 0; !(await healthy(`https://127.0.0.1:${port}`)); i++) {
        if (c.done) throw new Error(`coffre backup-server run exited: ${(await c.exited).stderr}`);
        if (i > 600) throw new Error('the backup server did not start');
        await sleep(50);
      }
      const info = JSON.parse(await readFile(join(data, 'server.json'), 'utf8')) as { url: string; fingerprint: string };
      return new VaultClient(info.url, (await readFile(join(data, 'admin.token'), 'utf8')).trim(), { fingerprint: info.fingerprint });
    };
    let bs = await start();

    // A machine of the backup server, 3 MiB of random data, in a group.
    const c = await bs.createCredentials('bs01');
    const credentials: CredentialsFile = { kind: 'coffre-vault-credentials', version: 1, server: bs.server, vault: c.vault.name, vaultId: c.vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint: c.fingerprint };
    const state = await registerAgent({ agentDir: join(dir, 'agent'), credentials, passphrase: PASSPHRASE, machine: 'm1' });
    const src = join(dir, 'src', 'data');
    await makeData(src, 'kill', 3, MiB);
    const point = await backupFiles({ client: new VaultClient(bs.server, state.token, { fingerprint: c.fingerprint }), containerId: state.containerId, keys: keysFromJSON(state.keys), agentDir: join(dir, 'agent'), vaultId: state.vaultId, item: 'data', paths: [src], snapshot: 'none' });
    await bs.createPolicy('ShortTerm', SHORT_TERM);
    await bs.createGroup({ name: 'g1', shortTermPolicy: 'ShortTerm', onlinePolicy: 'Online' });
    await bs.addToGroup('g1', 'm1', 'data');

    // The copy starts (about 1.5 s at 2 MiB/s); once a few packs are in the vault, kill -9.
    let copyEnded = false;
    const copying = bs.copyOnline('data').then(() => { copyEnded = true; }, () => { copyEnded = true; });
    await waitForPacks(upstream.db, 'm1', 2, () => copyEnded);
    kill();
    await child!.exited;
    await copying;
    const arrived = await settledHolds(upstream.db, 'm1');
    assert.ok(arrived.blobs > 0);

    // No partial point: nothing of the item is a point in the vault; its copy job is still open.
    assert.deepEqual(await vaultAdmin.listPoints({ vault: UPSTREAM_VAULT }), []);
    const open = await upstream.db.selectFrom('jobs').select(['id', 'status']).where('point_id', '=', point.point.id).execute();
    assert.deepEqual(open.map((j) => j.status), ['InProgress']);

    // Restarted, the server says the copy was interrupted; the next copy resumes it.
    bs = await start();
    const [interrupted] = await bs.listOnlineCopies('data');
    assert.equal(interrupted!.status, 'Failed');
    assert.equal(interrupted!.error?.code, 'Interrupted');
    const done = await bs.copyOnline('data');
    assert.equal(done.status, 'Completed', JSON.stringify(done.error));
    assert.equal(done.upstreamJob, open[0]!.id, 'the vault\'s job of the cut copy was taken up again');
    assert.equal(done.chunksPresent, arrived.blobs, 'what arrived before the kill was found in the vault...');
    assert.equal(done.chunksSent, done.chunksTotal - arrived.blobs, '...and not sent again');
    const after = await vaultHolds(upstream.db, 'm1');
    assert.equal(after.blobs, done.chunksTotal);
    assert.equal(after.inPacks, after.blobs, 'no chunk was sent twice');
    for (const id of arrived.ids) assert.ok(after.ids.has(id));

    // The point is whole in the vault: the machine, registered with the vault, restores it.
    const [copied, ...more] = await vaultAdmin.listPoints({ vault: UPSTREAM_VAULT, item: 'data' });
    assert.equal(more.length, 0);
    assert.equal(copied!.id, point.point.id);
    const direct = await registerAgent({ agentDir: join(dir, 'vault-agent'), credentials: await credentialsFor(upstream, UPSTREAM_VAULT), passphrase: PASSPHRASE, machine: 'm1' });
    const target = join(dir, 'restored');
    const r = await restore({ client: clientFor(upstream, direct.token), keys: keysFromJSON(direct.keys), pointId: copied!.id, target });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'data'), { owners: false }), []);
  } finally {
    kill();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/** A TCP proxy in front of the vault whose `cut()` drops every connection and refuses new ones until `heal()`. */
class Proxy {
  private readonly sockets = new Set<Socket>();
  private refusing = false;
  private server: Server | null = null;

  async start(target: string): Promise<string> {
    const { hostname, port } = new URL(target);
    this.server = createServer((client) => {
      if (this.refusing) { client.destroy(); return; }
      const up = connect(Number(port), hostname);
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => { client.destroy(); up.destroy(); });
      }
      client.pipe(up);
      up.pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void { this.refusing = false; }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

test('an online copy cut by the network resumes without re-sending; a 2 MiB/s limit takes at least the time it implies', async (t) => {
  const proxy = new Proxy();
  const env = await twoTiers({ throttle: THROTTLE, packBytes: PACK, upstreamVia: (url) => proxy.start(url) });
  try {
    await env.vaultAdmin.createPolicy('Online', ONLINE, UPSTREAM_VAULT);
    await env.bsAdmin.createPolicy('ShortTerm', SHORT_TERM);
    await env.bsAdmin.createGroup({ name: 'g1', shortTermPolicy: 'ShortTerm', onlinePolicy: 'Online' });
    const m1: TestAgent = await env.agent('m1');
    const src = join(env.dir, 'src', 'data');
    await makeData(src, 'cut', 3, MiB);
    const opts = { client: m1.client, containerId: m1.state.containerId, keys: m1.keys, agentDir: m1.agentDir, vaultId: m1.state.vaultId, item: 'data', paths: [src], snapshot: 'none' as const };
    const first = await backupFiles(opts);
    await env.bsAdmin.addToGroup('g1', 'm1', 'data');

    await t.test('cut mid-copy: no partial point; the next copy completes, sending only what did not arrive', async () => {
      let ended = false;
      const copying = env.bsAdmin.copyOnline('data').finally(() => { ended = true; });
      await waitForPacks(env.upstream.db, 'm1', 2, () => ended);
      proxy.cut();
      const cutShort = await copying;
      assert.equal(cutShort.status, 'Failed');
      assert.equal(cutShort.error?.code, 'ServerUnreachable');
      const arrived = await settledHolds(env.upstream.db, 'm1');
      assert.ok(arrived.blobs > 0 && arrived.blobs < cutShort.chunksTotal);
      assert.deepEqual(await env.vaultAdmin.listPoints({ vault: UPSTREAM_VAULT }), []);

      proxy.heal();
      const done = await env.bsAdmin.copyOnline('data');
      assert.equal(done.status, 'Completed', JSON.stringify(done.error));
      assert.equal(done.point, first.point.id);
      assert.equal(done.upstreamJob, cutShort.upstreamJob);
      assert.equal(done.chunksPresent, arrived.blobs);
      assert.equal(done.chunksSent, done.chunksTotal - arrived.blobs);
      const after = await vaultHolds(env.upstream.db, 'm1');
      assert.equal(after.inPacks, after.blobs, 'no chunk was sent twice');
      assert.equal((await env.vaultAdmin.listPoints({ vault: UPSTREAM_VAULT })).length, 1);
    });

    await t.test('a copy under a 2 MiB/s limit takes at least the time the limit implies', async () => {
      await makeData(join(src, 'more'), 'throttled', 2, MiB);
      await backupFiles(opts);
      const started = process.hrtime.bigint();
      const c = await env.bsAdmin.copyOnline('data');
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      assert.equal(c.status, 'Completed', JSON.stringify(c.error));
      assert.ok(c.bytesSent > 2 * MiB, `${c.bytesSent} bytes sent`);
      // Every byte of the copy's packs and point objects went through the limit.
      assert.ok(seconds >= c.bytesSent / LIMIT, `${c.bytesSent} bytes in ${seconds.toFixed(3)} s: faster than ${LIMIT} B/s`);
      assert.ok(c.throttledMs > 0);
      const info = await env.bsAdmin.throttleSettings();
      assert.equal(info.now.bytesPerSecond, LIMIT);
    });
  } finally {
    await env.close();
    await proxy.close();
  }
});
