/**
 * Crash safety: a backup cut short by kill -9 (of the agent or of the vault server) leaves no
 * partial point, never damages earlier points, and the next backup completes, reusing the
 * packs that had arrived, and restores byte for byte.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { backup, type BackupOptions } from '../src/agent/backup.js';
import { VaultClient } from '../src/agent/client.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { compareTrees } from '../src/agent/tree-compare.js';
import type { CredentialsFile, JobInfo } from '../src/core/api.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { sealManifest } from '../src/core/manifest.js';
import { CoffreError } from '../src/core/errors.js';
import { healthy, backupOptions, cli, harness, storeFiles, PASSPHRASE, tempDir, type CliResult } from '../testkit/harness.js';
import { freePort } from '../testkit/ports.js';

const MiB = 1024 * 1024;
const BIG_FILES = 8;
const BIG_FILE_SIZE = 16 * MiB;
const BIG_TOTAL = BIG_FILES * BIG_FILE_SIZE; // 128 MiB of incompressible data: 8 packs of 16 MiB
/** Wait for this many new packs before killing: with two uploads in flight, one is then surely indexed. */
const PACKS_BEFORE_KILL = 3;

let dataRoot: string;
let big: string;

before(async () => {
  dataRoot = await tempDir('coffre-crash-src-');
  big = join(dataRoot, 'big');
  await mkdir(big);
  for (let i = 0; i < BIG_FILES; i++) await writeFile(join(big, `part-${i}.bin`), randomBytes(BIG_FILE_SIZE));
});

after(async () => {
  await rm(dataRoot, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function smallTree(root: string): Promise<void> {
  await mkdir(join(root, 'docs'), { recursive: true });
  await writeFile(join(root, 'docs', 'notes.txt'), 'the earlier point\n'.repeat(200));
  await writeFile(join(root, 'photo.raw'), randomBytes(300_000));
  await writeFile(join(root, 'empty'), '');
}


/** Polls the store until `count` packs that were not there before have arrived: the backup is mid-way. */
async function waitForNewPacks(dataDir: string, beforePacks: Map<string, number>, count: number, ended: () => boolean): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (ended()) throw new Error('the backup ended before enough packs arrived to kill it mid-way');
    const now = await storeFiles(dataDir, 'packs');
    if ([...now.keys()].filter((k) => !beforePacks.has(k)).length >= count) return;
    await sleep(10);
  }
  throw new Error('no pack arrived within 60 s');
}

/**
 * Polls the vault's index until chunks of at least `bytes` bytes that it did not hold before are
 * indexed: packs merely present in the store may still be waiting for their index rows.
 */
async function waitForIndexed(client: VaultClient, containerId: string, before: Set<string>, bytes: number, ended: () => boolean): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (ended()) throw new Error('the backup ended before enough data was indexed to kill the vault mid-way');
    const ids = await client.blobIds(containerId);
    const fresh: string[] = [];
    for (let o = 0; o < ids.length; o += 32) {
      const id = ids.toString('hex', o, o + 32);
      if (!before.has(id)) fresh.push(id);
    }
    const located = fresh.length > 0 ? await client.locate(containerId, fresh) : [];
    if (located.reduce((n, l) => n + l.length, 0) >= bytes) return;
    await sleep(10);
  }
  throw new Error('not enough data indexed within 60 s');
}

async function indexedIds(client: VaultClient, containerId: string): Promise<Set<string>> {
  const ids = await client.blobIds(containerId);
  const out = new Set<string>();
  for (let o = 0; o < ids.length; o += 32) out.add(ids.toString('hex', o, o + 32));
  return out;
}

function newPackBytes(beforePacks: Map<string, number>, afterPacks: Map<string, number>): number {
  let n = 0;
  for (const [k, size] of afterPacks) if (!beforePacks.has(k)) n += size;
  return n;
}


interface ChildServer { pid: number; exited: Promise<CliResult>; done: boolean }

/** The real `coffre server` in its own process, so it can be killed -9. */
async function startChildServer(dataDir: string, port: number, cwd: string): Promise<ChildServer> {
  const child: ChildServer = { pid: 0, done: false, exited: Promise.resolve({ code: null, stdout: '', stderr: '', signal: null }) };
  child.exited = cli(['server', '--data', dataDir, '--listen', `127.0.0.1:${port}`], {}, { cwd, onSpawn: (pid) => { child.pid = pid; } });
  void child.exited.then(() => { child.done = true; }, () => { child.done = true; });
  for (let i = 0; ; i++) {
    if (child.done) {
      const r = await child.exited;
      throw new Error(`coffre server exited (${r.code ?? r.signal}): ${r.stderr}`);
    }
    if (await healthy(`https://127.0.0.1:${port}`)) return child;
    if (i > 1000) {
      process.kill(child.pid, 'SIGKILL');
      await child.exited;
      throw new Error('coffre server did not start within 20 s');
    }
    await sleep(20);
  }
}

async function stopChildServer(child: ChildServer | undefined): Promise<void> {
  if (!child || child.done || !child.pid) return;
  process.kill(child.pid, 'SIGTERM');
  await child.exited;
}

test('kill -9 of the agent mid-backup: no partial point, the earlier point is intact, the next backup reuses what arrived', async () => {
  const h = await harness();
  let pid = 0;
  let ended = false;
  try {
    const a = await h.agent();
    const dataDir = join(h.dir, 'data');
    const small = join(h.dir, 'small');
    await smallTree(small);
    const first = await backup(backupOptions(a, 'bulk', [small]));
    const packsBefore = await storeFiles(dataDir, 'packs');

    // The real CLI, killed -9 once a few packs of the big backup have been stored.
    const env = { COFFRE_AGENT_DIR: a.agentDir, COFFRE_SERVER: h.server.url };
    const run = cli(['backup', big, '--item', 'bulk', '--json'], env, { cwd: h.dir, onSpawn: (p) => { pid = p; } });
    void run.then(() => { ended = true; }, () => { ended = true; });
    await waitForNewPacks(dataDir, packsBefore, PACKS_BEFORE_KILL, () => ended);
    process.kill(pid, 'SIGKILL');
    const killed = await run;
    assert.equal(killed.signal, 'SIGKILL', `the backup must have been killed mid-way (stderr: ${killed.stderr})`);

    // No partial point: the item still has exactly its earlier point.
    assert.deepEqual((await h.admin.listPoints({ item: 'bulk' })).map((p) => p.id), [first.point.id]);
    const jobs = await h.admin.listJobs();
    const killedJob = jobs.find((j) => j.operation === 'Backup' && j.id !== first.jobId);
    assert.ok(killedJob, 'the killed backup has a job');
    assert.notEqual(killedJob.status, 'Completed');
    assert.notEqual(killedJob.status, 'CompletedWithWarnings');
    await assert.rejects(h.admin.getPoint(killedJob.pointId!), (e: unknown) => e instanceof CoffreError && e.code === 'PointNotFound');

    // The earlier point restores byte for byte.
    const earlier = join(h.dir, 'restore-earlier');
    const r1 = await restore({ client: a.client, keys: a.keys, pointId: first.point.id, target: earlier });
    assert.equal(r1.job.status, 'Completed');
    assert.deepEqual(await compareTrees(small, join(earlier, 'small')), []);

    // The same backup again completes and sends only what had not arrived.
    const arrived = newPackBytes(packsBefore, await storeFiles(dataDir, 'packs'));
    assert.ok(arrived >= 15 * MiB, `packs of the killed backup are kept in the vault (${arrived} bytes)`);
    const again = await cli(['backup', big, '--item', 'bulk', '--json'], env, { cwd: h.dir });
    assert.equal(again.code, 0, again.stderr);
    const job = JSON.parse(again.stdout) as JobInfo;
    assert.equal(job.status, 'Completed');
    assert.ok(job.pointId);
    assert.ok(job.bytesUploaded > 0);
    // Every pack that arrived before the kill is reused (1 MiB slack for pack and blob overhead).
    assert.ok(job.bytesUploaded <= BIG_TOTAL - arrived + MiB, `re-sent ${job.bytesUploaded} of ${BIG_TOTAL} bytes although ${arrived} had arrived`);
    assert.ok(job.bytesNew <= BIG_TOTAL - arrived + MiB, `${job.bytesNew} new bytes`);
    assert.deepEqual((await h.admin.listPoints({ item: 'bulk' })).map((p) => p.id), [first.point.id, job.pointId]);

    const target = join(h.dir, 'restore-big');
    const r2 = await restore({ client: a.client, keys: a.keys, pointId: job.pointId, target });
    assert.deepEqual(r2.errors, []);
    assert.equal(r2.job.status, 'Completed');
    assert.deepEqual(await compareTrees(big, join(target, 'big')), []);
  } finally {
    if (pid && !ended) process.kill(pid, 'SIGKILL'); // only if the test failed before its kill
    await h.close();
  }
});

test('kill -9 of the vault server mid-backup: after a restart no partial point, the earlier point is intact, the next backup reuses data', async () => {
  const dir = await tempDir();
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  let server: ChildServer | undefined;
  try {
    server = await startChildServer(dataDir, port, dir);
    // The server's own certificate, as the CLI beside it finds it.
    const { fingerprint } = JSON.parse(await readFile(join(dataDir, 'server.json'), 'utf8')) as { fingerprint: string };
    const admin = new VaultClient(url, (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim(), { fingerprint });
    const vault = await admin.createVault({ name: 'crashvault' });
    const c = await admin.createCredentials(vault.name);
    const credentials: CredentialsFile = { kind: 'coffre-vault-credentials', version: 1, server: url, vault: vault.name, vaultId: vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint: c.fingerprint };
    const agentDir = join(dir, 'agent');
    const state = await registerAgent({ agentDir, credentials, passphrase: PASSPHRASE, machine: 'crashy' });
    const keys = keysFromJSON(state.keys);
    const client = new VaultClient(url, state.token, { fingerprint });
    const opts = (paths: string[]): BackupOptions => ({ client, containerId: state.containerId, keys, agentDir, vaultId: state.vaultId, item: 'bulk', paths });

    const small = join(dir, 'small');
    await smallTree(small);
    const first = await backup(opts([small]));
    const indexedBefore = await indexedIds(client, state.containerId);

    let ended = false;
    const outcome = backup(opts([big])).then(() => null, (e: unknown) => e);
    void outcome.then(() => { ended = true; });
    await waitForIndexed(client, state.containerId, indexedBefore, 20 * MiB, () => ended);
    const dying = server;
    server = undefined;
    process.kill(dying.pid, 'SIGKILL');
    assert.equal((await dying.exited).signal, 'SIGKILL');
    // The agent gives up (the vault is gone) before the vault comes back.
    assert.ok((await outcome) instanceof Error, 'a backup whose vault died must fail, not report success');

    server = await startChildServer(dataDir, port, dir);

    // No partial point; the earlier point is listed and restores byte for byte.
    assert.deepEqual((await admin.listPoints({ item: 'bulk' })).map((p) => p.id), [first.point.id]);
    const killedJob = (await admin.listJobs()).find((j) => j.operation === 'Backup' && j.id !== first.jobId);
    assert.ok(killedJob, 'the interrupted backup has a job');
    assert.notEqual(killedJob.status, 'Completed');
    await assert.rejects(admin.getPoint(killedJob.pointId!), (e: unknown) => e instanceof CoffreError && e.code === 'PointNotFound');
    const earlier = join(dir, 'restore-earlier');
    const r1 = await restore({ client, keys, pointId: first.point.id, target: earlier });
    assert.equal(r1.job.status, 'Completed');
    assert.deepEqual(await compareTrees(small, join(earlier, 'small')), []);
    // What the vault holds after the crash is sound.
    const check = await admin.verify({});
    assert.deepEqual(check.errors, []);
    assert.equal(check.status, 'Completed');

    // The next backup completes, sends less than everything, and restores exactly.
    const again = await backup(opts([big]));
    assert.ok(again.counters.bytesUploaded > 0);
    assert.ok(again.counters.bytesUploaded <= BIG_TOTAL - 15 * MiB, `re-sent ${again.counters.bytesUploaded} of ${BIG_TOTAL} bytes: the packs stored before the crash were not reused`);
    const job = await admin.getJob(again.jobId);
    assert.equal(job.status, 'Completed');
    assert.equal(job.bytesUploaded, again.counters.bytesUploaded);
    assert.deepEqual((await admin.listPoints({ item: 'bulk' })).map((p) => p.id), [first.point.id, again.point.id]);
    const target = join(dir, 'restore-big');
    const r2 = await restore({ client, keys, pointId: again.point.id, target });
    assert.deepEqual(r2.errors, []);
    assert.equal(r2.job.status, 'Completed');
    assert.deepEqual(await compareTrees(big, join(target, 'big')), []);
  } finally {
    await stopChildServer(server);
    await rm(dir, { recursive: true, force: true });
  }
});

test('a commit the vault refuses leaves no point behind and does not block the item\'s next backups', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const src = join(h.dir, 'small');
    await smallTree(src);
    const first = await backup(backupOptions(a, 'bulk', [src]));
    const counters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: 0, filesChanged: 0 };
    // On-demand points without a valid keep-until date: the API accepts the shape, retention refuses it.
    for (const retainUntil of [null, '2031-02-30']) {
      const start = await a.client.startBackup('bulk', 'files', { paths: [src] });
      await a.client.putPointObject(start.pointId, start.job.id, 'manifest',
        sealManifest(a.keys, start.pointId, { version: 1, item: 'bulk', time: new Date().toISOString(), entries: [] }));
      await a.client.putPointObject(start.pointId, start.job.id, 'refs', Buffer.alloc(0));
      await assert.rejects(
        a.client.commit(start.pointId, { jobId: start.job.id, files: 0, bytes: 0, kind: 'OnDemand', consistency: 'crash', retainUntil, counters, warnings: [] }),
        (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument', String(retainUntil));
      assert.deepEqual((await h.admin.listPoints({ item: 'bulk' })).map((p) => p.id), [first.point.id], `a refused commit (${retainUntil}) shows no point`);
      await assert.rejects(h.admin.getPoint(start.pointId), (e: unknown) => e instanceof CoffreError && e.code === 'PointNotFound');
      assert.notEqual((await h.admin.getJob(start.job.id)).status, 'Completed');
    }
    // The item still takes backups, and its points still restore.
    await writeFile(join(src, 'later.txt'), 'written after the refused commits');
    const next = await backup(backupOptions(a, 'bulk', [src]));
    assert.equal((await h.admin.getJob(next.jobId)).status, 'Completed');
    assert.deepEqual((await h.admin.listPoints({ item: 'bulk' })).map((p) => p.id), [first.point.id, next.point.id]);
    const target = join(h.dir, 'out');
    const r = await restore({ client: a.client, keys: a.keys, pointId: next.point.id, target });
    assert.equal(r.job.status, 'Completed');
    assert.deepEqual(await compareTrees(src, join(target, 'small')), []);
  } finally {
    await h.close();
  }
});
