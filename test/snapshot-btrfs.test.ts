/**
 * File backups from volume snapshots, end to end on real file systems in loop-mounted images:
 * a btrfs volume rewritten by a writer while it is backed up (the point is the snapshot's
 * instant, exactly, `filesystem`), a nested subvolume, a `kill -9` mid-read and the next run,
 * pre/post-scripts around the snapshot, a scheduled run with the stored options, and ext4,
 * where `auto` reads live and says so.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { VaultClient } from '../src/agent/client.js';
import { runDueOnce } from '../src/agent/daemon.js';
import { registerAgent } from '../src/agent/register.js';
import { restore } from '../src/agent/restore.js';
import { BtrfsSnapshotter } from '../src/agent/snapshot/btrfs.js';
import { systemRunner } from '../src/agent/snapshot/runner.js';
import { backupFiles, type SnapshotBackupOptions } from '../src/agent/snapshot/snapshot-backup.js';
import type { SnapshotRef } from '../src/agent/snapshot/snapshotter.js';
import { requireState } from '../src/agent/state.js';
import { ManualClock } from '../src/core/clock.js';
import { CoffreError } from '../src/core/errors.js';
import { keysFromJSON } from '../src/core/crypto.js';
import { startServer, type RunningServer } from '../src/vault/server.js';
import { cli, clientFor, credentialsFor, PASSPHRASE, tempDir } from '../testkit/harness.js';
import { loopFs, sh, type LoopFs } from '../testkit/loop-fs.js';

let dir: string;
let clock: ManualClock;
let server: RunningServer;
let admin: VaultClient;
let btrfs: LoopFs;
let ext4: LoopFs;
let machines = 0;

before(async () => {
  dir = await tempDir('coffre-snap-');
  clock = new ManualClock(new Date());
  server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', clock });
  admin = clientFor(server);
  await admin.createVault({ name: 'v' });
  btrfs = await loopFs(dir, 'btrfs', 320);
  ext4 = await loopFs(dir, 'ext4', 64);
});

after(async () => {
  await btrfs?.close();
  await ext4?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

async function machine() {
  const agentDir = join(dir, `agent-${machines++}`);
  const state = await registerAgent({ agentDir, passphrase: PASSPHRASE, machine: `m${machines}`, credentials: await credentialsFor(server, 'v') });
  return { agentDir, state, keys: keysFromJSON(state.keys), client: clientFor(server, state.token) };
}
type Machine = Awaited<ReturnType<typeof machine>>;
const opts = (m: Machine, item: string, paths: string[]): SnapshotBackupOptions =>
  ({ client: m.client, containerId: m.state.containerId, keys: m.keys, agentDir: m.agentDir, vaultId: m.state.vaultId, item, paths });

/** A btrfs subvolume (with files) on the test volume. */
async function subvolume(path: string, files: Record<string, string | Buffer> = {}): Promise<string> {
  sh('btrfs', ['subvolume', 'create', path]);
  for (const [name, body] of Object.entries(files)) await writeFile(join(path, name), body);
  return path;
}

/** Coffre's snapshots on the btrfs volume: subvolumes named coffre-*, wherever they are. */
function coffreSubvolumes(): string[] {
  return sh('btrfs', ['subvolume', 'list', btrfs.mnt]).split('\n').filter((l) => /path .*coffre-/.test(l));
}

async function records(m: Machine): Promise<string[]> {
  return readdir(join(m.agentDir, 'snapshots')).catch(() => []);
}

async function script(name: string, body: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, `#!/bin/bash\n${body}\n`);
  await chmod(p, 0o755);
  return p;
}

/** Every file, folder and link under `a` equals the one under `b`: names, kinds, bytes, modes, mtimes (to the nanosecond), targets. */
async function assertSameTree(a: string, b: string, skip: Set<string> = new Set(), rel = ''): Promise<void> {
  const names = async (p: string) => (await readdir(p)).filter((n) => !skip.has(rel ? `${rel}/${n}` : n)).sort();
  const [na, nb] = [await names(a), await names(b)];
  assert.deepEqual(na, nb, `the entries of ${rel || '.'}`);
  for (const n of na) {
    const [pa, pb] = [join(a, n), join(b, n)];
    const [sa, sb] = [await lstat(pa, { bigint: true }), await lstat(pb, { bigint: true })];
    const what = rel ? `${rel}/${n}` : n;
    assert.equal(sa.mode, sb.mode, `mode of ${what}`);
    if (sa.isDirectory()) await assertSameTree(pa, pb, skip, what);
    else if (sa.isSymbolicLink()) assert.equal(await readlink(pa), await readlink(pb), `target of ${what}`);
    else {
      assert.equal(sa.mtimeNs, sb.mtimeNs, `mtime of ${what}`);
      assert.ok((await readFile(pa)).equals(await readFile(pb)), `bytes of ${what}`);
    }
  }
}

/** Keeps rewriting every file of `files` with a round counter until stopped. */
function writer(files: string[]): { stop(): Promise<number> } {
  const code = `
    const fs = require('node:fs');
    const files = ${JSON.stringify(files)};
    let round = 0, stop = false;
    process.on('SIGTERM', () => { stop = true; });
    const step = () => {
      if (stop) { process.stdout.write(String(round)); process.exit(0); }
      round++;
      for (const f of files) fs.writeFileSync(f, Buffer.from(('round ' + round + '\\n').repeat(4096)));
      setImmediate(step);
    };
    step();`;
  const child: ChildProcess = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  return {
    stop: () => new Promise((resolve) => {
      child.on('exit', () => resolve(Number(out)));
      child.kill('SIGTERM');
    }),
  };
}

test('btrfs: a writer rewrites files during the backup; the point is the snapshot exactly, filesystem-consistent, and no snapshot is left', async () => {
  const m = await machine();
  const data = await subvolume(join(btrfs.mnt, 'data'), { 'static.txt': 'never changes\n' });
  await mkdir(join(data, 'docs'));
  const files: string[] = [];
  for (let i = 0; i < 24; i++) files.push(join(data, 'docs', `f${String(i).padStart(2, '0')}.txt`));
  await subvolume(join(data, 'sub'), { 'inner.txt': 'in a nested subvolume\n' });
  for (let i = 0; i < 8; i++) files.push(join(data, 'sub', `g${i}.txt`));
  for (const f of files) await writeFile(f, 'round 0\n');
  await writeFile(join(btrfs.mnt, 'outside.txt'), 'not backed up\n');

  // The reference: a read-only snapshot of each snapshot Coffre made, taken the moment it exists;
  // then the live tree changes for certain, on top of what the writer does.
  const refs = join(btrfs.mnt, 'refs');
  await mkdir(refs);
  const reference = new Map<string, string>();
  const real = new BtrfsSnapshotter(systemRunner);
  const witness = Object.assign(Object.create(real) as BtrfsSnapshotter, {
    async create(made: SnapshotRef[]) {
      await real.create(made);
      for (const ref of made) {
        const copy = join(refs, `ref-${reference.size}`);
        sh('btrfs', ['subvolume', 'snapshot', '-r', real.copyOf(ref, ref.volume.live), copy]);
        reference.set(ref.volume.live, copy);
      }
      await writeFile(join(data, 'after-snapshot.txt'), 'written after the snapshot\n');
    },
  });

  const w = writer(files);
  let rounds: number;
  let result;
  try {
    // Let the writer get going, so that the snapshot falls in the middle of its rewrites.
    await new Promise((r) => setTimeout(r, 300));
    result = await backupFiles({ ...opts(m, 'data', [data]), snapshotters: { btrfs: witness } });
  } finally {
    rounds = await w.stop();
  }
  assert.ok(rounds > 1, 'the writer kept rewriting during the backup');
  assert.equal(result.point.consistency, 'filesystem');
  assert.deepEqual(result.warnings, [], 'no file changed while read: the snapshot does not change');
  const job = await m.client.getJob(result.jobId);
  assert.equal(job.status, 'Completed');
  const details = job.details as { consistency: string; snapshot: { mode: string; snapshots: { method: string; volume: string }[]; live: unknown[] }; notes?: string[] };
  assert.equal(details.consistency, 'filesystem');
  assert.deepEqual(details.snapshot.snapshots.map((s) => [s.method, s.volume]).sort(), [['btrfs', data], ['btrfs', join(data, 'sub')]]);
  assert.deepEqual(details.snapshot.live, []);
  assert.equal(details.notes, undefined);
  assert.deepEqual((job.details.source as { paths: string[]; snapshot: string }).paths, [data], 'the job records the original path');
  assert.equal((await admin.listPoints({ item: 'data' }))[0]!.consistency, 'filesystem', 'points --json carries the label');

  // The restore is the reference, byte for byte; the nested subvolume comes from its own snapshot.
  const target = join(dir, 'restore-writer');
  await restore({ client: m.client, keys: m.keys, pointId: result.point.id, target, paths: [], overwrite: 'rename' });
  assert.deepEqual(await readdir(target), ['data'], 'recorded under the original name, not the snapshot\'s');
  await assertSameTree(join(target, 'data'), reference.get(data)!, new Set(['sub']));
  await assertSameTree(join(target, 'data', 'sub'), reference.get(join(data, 'sub'))!);
  // No file mixes two rounds (one the writer was rewriting at the instant is empty or partly written, as in the snapshot).
  for (const f of files) {
    const text = await readFile(join(target, 'data', f.slice(data.length + 1)), 'utf8');
    assert.ok(new Set(text.split('\n').filter(Boolean)).size <= 1, `${f} holds one round`);
  }
  await assert.rejects(lstat(join(target, 'data', 'after-snapshot.txt')), 'a file made after the snapshot is not in the point');
  await assert.rejects(lstat(join(target, 'data', '.coffre-snapshots')));

  assert.deepEqual(coffreSubvolumes(), [], 'no snapshot is left');
  assert.deepEqual(await readdir(join(btrfs.mnt, '.coffre-snapshots')), []);
  assert.deepEqual(await records(m), []);
  for (const copy of reference.values()) sh('btrfs', ['subvolume', 'delete', copy]);
});

test('btrfs: a kill -9 mid-read leaves a snapshot, which the next run finds and removes before completing', async () => {
  const m = await machine();
  const big = await subvolume(join(btrfs.mnt, 'big'));
  // Enough incompressible data that the read takes a while after it started.
  for (let i = 0; i < 24; i++) {
    // Deterministic and incompressible: AES-CTR of zeros under a key per file.
    const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, i + 1), Buffer.alloc(16));
    await writeFile(join(big, `blob${i}.bin`), cipher.update(Buffer.alloc(4 * 1024 * 1024)));
  }
  const env = { COFFRE_SERVER: server.url, COFFRE_AGENT_DIR: m.agentDir, COFFRE_TOKEN: '' };
  let pid = 0;
  const killed = cli(['backup', big, '--item', 'big', '--snapshot', 'btrfs', '--json'], env, { onSpawn: (p) => { pid = p; } });
  // Mid-read: the job reports its first bytes read.
  let reading = false;
  for (let i = 0; i < 2000 && !reading; i++) {
    const jobs = (await admin.listJobs()).filter((j) => j.item === 'big');
    reading = jobs.some((j) => j.status === 'InProgress' && j.bytesScanned > 0);
    if (!reading) await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(reading, 'the backup started reading');
  process.kill(pid, 'SIGKILL');
  const end = await killed;
  assert.equal(end.signal, 'SIGKILL');
  assert.deepEqual(await admin.listPoints({ item: 'big' }), [], 'killed before its commit');
  assert.equal(coffreSubvolumes().length, 1, 'the killed run left its snapshot');
  assert.equal((await records(m)).length, 1, 'and the record of it');

  const next = await cli(['backup', big, '--item', 'big', '--json'], env);
  assert.equal(next.code, 0, next.stderr);
  const job = JSON.parse(next.stdout) as { status: string; pointId: string; details: { notes?: string[]; consistency: string } };
  assert.equal(job.status, 'Completed');
  assert.equal(job.details.consistency, 'filesystem');
  assert.match(job.details.notes?.join('\n') ?? '', /removed 1 snapshot\(s\) left by an earlier run that was killed/);
  assert.deepEqual(coffreSubvolumes(), [], 'no snapshot is left');
  assert.deepEqual(await records(m), []);
  const target = join(dir, 'restore-big');
  await restore({ client: m.client, keys: m.keys, pointId: job.pointId, target, paths: [], overwrite: 'rename' });
  await assertSameTree(join(target, 'big'), big);
});

test('pre/post-scripts around a btrfs snapshot: order, app label, failures and timeouts lower it with a warning, the post-script always runs', async (t) => {
  const m = await machine();
  const vol = await subvolume(join(btrfs.mnt, 'app'), { 'state.txt': 'RUNNING\n' });
  const log = join(dir, 'scripts.log');
  const stamp = (word: string) => `printf '${word}\\n' > ${join(vol, 'state.txt')}`;
  const pre = await script('pre.sh', `echo "pre item=$COFFRE_ITEM" >> ${log}; ${stamp('QUIESCED')}`);
  const post = await script('post.sh', `echo "post pre=$COFFRE_PRE_SCRIPT snapshot=$COFFRE_SNAPSHOT" >> ${log}; ${stamp('RESUMED')}`);
  const pointState = async (pointId: string) => {
    const target = join(dir, `restore-${pointId}`);
    await restore({ client: m.client, keys: m.keys, pointId, target, paths: [], overwrite: 'rename' });
    return readFile(join(target, 'app', 'state.txt'), 'utf8');
  };
  const run = async (extra: Partial<SnapshotBackupOptions>) => {
    await writeFile(log, '');
    return backupFiles({ ...opts(m, 'app', [vol]), snapshot: 'btrfs', ...extra });
  };

  await t.test('both succeed: app-consistent, the snapshot is taken between them', async () => {
    const r = await run({ preScript: pre, postScript: post });
    assert.equal(r.point.consistency, 'app');
    assert.deepEqual(r.warnings, []);
    assert.equal(await readFile(log, 'utf8'), 'pre item=app\npost pre=ok snapshot=ok\n');
    assert.equal(await pointState(r.point.id), 'QUIESCED\n', 'the snapshot was taken after the pre-script');
    assert.equal(await readFile(join(vol, 'state.txt'), 'utf8'), 'RESUMED\n', 'and the post-script ran after it');
    const steps = (await m.client.getJob(r.jobId)).details.steps as { step: string; ok: boolean }[];
    assert.deepEqual(steps.map((s) => `${s.step}:${s.ok}`), ['pre-script:true', 'snapshot:true', 'post-script:true']);
  });

  await t.test('a failing pre-script: filesystem-consistent with a warning; the post-script still runs', async () => {
    const fail = await script('pre-fail.sh', `echo "pre" >> ${log}; echo "database busy" >&2; exit 3`);
    const r = await run({ preScript: fail, postScript: post });
    assert.equal(r.point.consistency, 'filesystem');
    assert.deepEqual(r.warnings.map((w) => w.code), ['PreScriptFailed']);
    assert.match(r.warnings[0]!.message, /exited with status 3: database busy/);
    assert.equal(await readFile(log, 'utf8'), 'pre\npost pre=failed snapshot=ok\n');
    assert.equal((await m.client.getJob(r.jobId)).status, 'CompletedWithWarnings');
  });

  await t.test('a hanging pre-script is killed at its timeout; filesystem-consistent, warned, post-script runs', async () => {
    const hang = await script('pre-hang.sh', `echo "pre" >> ${log}; sleep 600`);
    const r = await run({ preScript: hang, postScript: post, scriptTimeoutSeconds: 1 });
    assert.equal(r.point.consistency, 'filesystem');
    assert.deepEqual(r.warnings.map((w) => w.code), ['PreScriptTimeout']);
    assert.match(r.warnings[0]!.message, /did not finish within 1 s and was killed/);
    assert.equal(await readFile(log, 'utf8'), 'pre\npost pre=failed snapshot=ok\n');
  });

  await t.test('a failing post-script: filesystem-consistent, warned', async () => {
    const fail = await script('post-fail.sh', 'exit 1');
    const r = await run({ preScript: pre, postScript: fail });
    assert.equal(r.point.consistency, 'filesystem');
    assert.deepEqual(r.warnings.map((w) => w.code), ['PostScriptFailed']);
  });

  await t.test('the snapshot fails after the pre-script: the post-script runs, the backup fails with a Failed job, nothing is left', async () => {
    const snapDir = join(btrfs.mnt, '.coffre-snapshots');
    // The pre-script puts a file where the snapshots go; the post-script puts the folder back.
    const block = await script('pre-block.sh', `echo pre >> ${log}; rmdir ${snapDir}; touch ${snapDir}`);
    const unblock = await script('post-unblock.sh', `echo "post snapshot=$COFFRE_SNAPSHOT" >> ${log}; rm ${snapDir}; mkdir -m 700 ${snapDir}`);
    const pointsBefore = (await admin.listPoints({ item: 'app' })).length;
    await assert.rejects(run({ preScript: block, postScript: unblock }), (e: unknown) => e instanceof CoffreError && e.code === 'SnapshotFailed');
    assert.equal(await readFile(log, 'utf8'), 'pre\npost snapshot=failed\n');
    assert.equal((await admin.listPoints({ item: 'app' })).length, pointsBefore);
    const failedJob = (await admin.listJobs()).filter((j) => j.item === 'app' && j.status === 'Failed')[0]!;
    assert.equal(failedJob.errors[0]!.code, 'SnapshotFailed');
    assert.deepEqual(coffreSubvolumes(), []);
    assert.deepEqual(await records(m), []);
  });
});

test('a scheduled run (agent run) backs the item up with the snapshot mode and scripts stored with it', async () => {
  const m = await machine();
  const vol = await subvolume(join(btrfs.mnt, 'sched'), { 'a.txt': 'scheduled\n' });
  const log = join(dir, 'sched.log');
  const pre = await script('sched-pre.sh', `echo pre >> ${log}`);
  const post = await script('sched-post.sh', `echo post >> ${log}`);
  // The first backup, through the CLI, stores the options with the item.
  const env = { COFFRE_SERVER: server.url, COFFRE_AGENT_DIR: m.agentDir, COFFRE_TOKEN: '' };
  const first = await cli(['backup', vol, '--item', 'sched', '--snapshot', 'btrfs', '--pre-script', pre, '--post-script', post, '--script-timeout', '30'], env);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /app-consistent/);
  await admin.createPolicy('Hourly', { name: 'Hourly', timeZone: 'UTC', schedule: { frequency: 'Daily', times: ['03:00'] }, retention: { daily: { count: 7 } } });
  await admin.assignPolicy('Hourly', 'sched');
  await writeFile(log, '');
  const next = new Date(clock.now().getTime() + 24 * 3_600_000);
  next.setUTCHours(3, 1, 0, 0);
  clock.set(next);
  const ran = await runDueOnce({ client: m.client, state: await requireState(m.agentDir), agentDir: m.agentDir });
  assert.equal(ran.length, 1);
  assert.equal(ran[0]!.error, undefined);
  const point = (await admin.listPoints({ item: 'sched' })).find((p) => p.kind === 'Scheduled')!;
  assert.equal(point.consistency, 'app');
  assert.equal(await readFile(log, 'utf8'), 'pre\npost\n');
  const job = await m.client.getJob(ran[0]!.result!.jobId);
  assert.equal((job.details.snapshot as { mode: string }).mode, 'btrfs');
  // A snapshot keeps inode numbers and times: the metadata cache knows the unchanged file, read from a new snapshot.
  assert.equal(job.filesScanned, 1);
  assert.equal(job.filesChanged, 0);
  assert.deepEqual(coffreSubvolumes(), []);
});

test('btrfs with an ext4 file system mounted inside: the btrfs part comes from its snapshot, the ext4 part is read live, nothing is lost, crash with a note', async () => {
  const m = await machine();
  const vol = await subvolume(join(btrfs.mnt, 'mixed'), { 'top.txt': 'on btrfs\n' });
  const inner = join(ext4.mnt, 'inner');
  await mkdir(inner);
  await writeFile(join(inner, 'e.txt'), 'on ext4\n');
  await mkdir(join(vol, 'ext'));
  sh('mount', ['--bind', inner, join(vol, 'ext')]);
  try {
    const r = await backupFiles(opts(m, 'mixed', [vol]));
    assert.equal(r.point.consistency, 'crash');
    const job = await m.client.getJob(r.jobId);
    const details = job.details as { snapshot: { snapshots: { volume: string }[]; live: { path: string }[] }; notes: string[] };
    assert.deepEqual(details.snapshot.snapshots.map((s) => s.volume), [vol]);
    assert.deepEqual(details.snapshot.live.map((l) => l.path), [join(vol, 'ext')]);
    assert.match(details.notes.join('\n'), /read live, without a snapshot, so the point is crash-consistent: .*mixed\/ext \(ext4 on \/dev\/loop\d+: /);
    const target = join(dir, 'restore-mixed');
    await restore({ client: m.client, keys: m.keys, pointId: r.point.id, target, paths: [], overwrite: 'rename' });
    assert.equal(await readFile(join(target, 'mixed', 'top.txt'), 'utf8'), 'on btrfs\n');
    assert.equal(await readFile(join(target, 'mixed', 'ext', 'e.txt'), 'utf8'), 'on ext4\n', 'the mount inside is backed up, as a live read would');
    assert.deepEqual(coffreSubvolumes(), []);
  } finally {
    sh('umount', [join(vol, 'ext')]);
  }
});

test('ext4 on a loop device: auto reads live, crash-consistent, with one note in the job; --snapshot btrfs fails clearly', async () => {
  const m = await machine();
  const folder = join(ext4.mnt, 'files');
  await mkdir(folder);
  await writeFile(join(folder, 'a.txt'), 'on ext4\n');
  const env = { COFFRE_SERVER: server.url, COFFRE_AGENT_DIR: m.agentDir, COFFRE_TOKEN: '' };

  const live = await cli(['backup', folder, '--item', 'ext', '--json'], env);
  assert.equal(live.code, 0, live.stderr);
  const job = JSON.parse(live.stdout) as { status: string; warnings: unknown[]; details: { consistency: string; notes: string[]; snapshot: { live: { path: string }[] } } };
  assert.equal(job.status, 'Completed', 'reading live is not a warning');
  assert.deepEqual(job.warnings, []);
  assert.equal(job.details.consistency, 'crash');
  assert.equal(job.details.notes.length, 1);
  assert.match(job.details.notes[0]!, /read live, without a snapshot, so the point is crash-consistent: .*files \(.*ext4/);
  assert.deepEqual(job.details.snapshot.live.map((l) => l.path), [folder]);
  const points = await cli(['points', '--item', 'ext', '--json'], { ...env, COFFRE_TOKEN: server.adminToken });
  assert.equal((JSON.parse(points.stdout) as { consistency: string }[])[0]!.consistency, 'crash');
  const text = await cli(['backup', folder, '--item', 'ext'], env);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /note: read live/);

  const refused = await cli(['backup', folder, '--item', 'ext', '--snapshot', 'btrfs'], env);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /cannot take a btrfs snapshot of .*files: .* is on ext4 .*\[SnapshotUnavailable\]/);
  const failed = (await admin.listJobs()).filter((j) => j.item === 'ext' && j.status === 'Failed')[0]!;
  assert.equal(failed.errors[0]!.code, 'SnapshotUnavailable');

  // Scripts with a live read frame the whole read: the point holds what the pre-script left.
  const state = join(folder, 'state.txt');
  const pre = await script('ext-pre.sh', `printf 'QUIESCED\\n' > ${state}`);
  const post = await script('ext-post.sh', `printf 'RESUMED\\n' > ${state}`);
  const r = await backupFiles({ ...opts(m, 'ext', [folder]), preScript: pre, postScript: post });
  assert.equal(r.point.consistency, 'crash');
  const steps = (await m.client.getJob(r.jobId)).details.steps as { step: string }[];
  assert.deepEqual(steps.map((s) => s.step), ['pre-script', 'post-script']);
  const target = join(dir, 'restore-ext');
  await restore({ client: m.client, keys: m.keys, pointId: r.point.id, target, paths: [], overwrite: 'rename' });
  assert.equal(await readFile(join(target, 'files', 'state.txt'), 'utf8'), 'QUIESCED\n');
  assert.equal(await readFile(state, 'utf8'), 'RESUMED\n');
});
