/**
 * VM snapshots: pre-script → snapshot → post-script ordering and the consistency labels
 * (including a failing and a hanging pre-script), fsfreeze handling, and the instant-restore
 * window (a snapshot past it is gone, restores then read the vault).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManualClock } from '../src/core/clock.js';
import { CoffreError } from '../src/core/errors.js';
import type { VmConfig } from '../src/agent/vm/config.js';
import { snapshotConsistently, type Quiescer } from '../src/agent/consistency.js';
import type { CommandResult } from '../src/agent/scripts.js';
import { defaultSnapshotRoot, listSnapshots, sweepSnapshots } from '../src/agent/vm/snapshot-store.js';
import { backupVm } from '../src/agent/vm/vm-backup.js';
import { restoreVm } from '../src/agent/vm/vm-restore.js';
import { harness, type Harness, type TestAgent } from '../testkit/harness.js';
import { MiB, seededBytes } from '../testkit/vm-fixtures.js';

function vmConfig(name: string, disks: string[], extra: Partial<VmConfig> = {}): VmConfig {
  const now = new Date().toISOString();
  return { version: 1, name, disks: disks.map((path) => ({ path })), scriptTimeoutSeconds: 30, blockSize: MiB, policyAssigned: false, createdAt: now, updatedAt: now, ...extra };
}
const backupOpts = (a: TestAgent, config: VmConfig) => ({ client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, config });

async function script(dir: string, name: string, body: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, `#!/bin/bash\n${body}\n`);
  await chmod(p, 0o755);
  return p;
}

/** Whether a process still runs; a killed one its new parent (pid 1) has not reaped yet is a zombie, i.e. dead. */
async function alive(pid: number): Promise<boolean> {
  try {
    return !/^State:\s+Z/m.test(await readFile(`/proc/${pid}/status`, 'utf8'));
  } catch {
    // No /proc entry: the process is gone.
    return false;
  }
}

/** The first bytes of disk 0 of a point, restored from the vault. */
async function pointHead(a: TestAgent, dir: string, pointId: string): Promise<string> {
  const r = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId, target: join(dir, `head-${pointId}`), source: 'vault' });
  return (await readFile(r.disks[0]!.file)).toString('latin1', 0, 8);
}

async function setup(h: Harness, name: string) {
  const a = await h.agent();
  const dir = join(h.dir, name);
  await mkdir(dir);
  const disk = join(dir, 'disk.img');
  await writeFile(disk, seededBytes(name, 3 * MiB));
  const log = join(dir, 'log');
  await writeFile(log, '');
  // The scripts stamp the disk: what the point holds shows when the snapshot was taken.
  const pre = await script(dir, 'pre.sh', `echo pre >> ${log}; printf QUIESCED | dd of="$COFFRE_DISKS" bs=1 seek=0 conv=notrunc status=none`);
  const post = await script(dir, 'post.sh', `echo "post pre=$COFFRE_PRE_SCRIPT snapshot=$COFFRE_SNAPSHOT" >> ${log}; printf RESUMED_ | dd of="$COFFRE_DISKS" bs=1 seek=0 conv=notrunc status=none`);
  return { a, dir, disk, log, pre, post };
}

test('pre-script, snapshot, post-script: order and consistency labels', async (t) => {
  const h = await harness();
  try {
    await t.test('both scripts succeed: the point is app-consistent and holds the quiesced disk', async () => {
      const { a, dir, disk, log, pre, post } = await setup(h, 'app');
      const r = await backupVm(backupOpts(a, vmConfig('app', [disk], { preScript: pre, postScript: post })));
      assert.equal(r.consistency, 'app');
      assert.equal(r.point.consistency, 'app');
      assert.deepEqual(r.warnings, []);
      assert.equal(await readFile(log, 'utf8'), 'pre\npost pre=ok snapshot=ok\n');
      assert.equal(await pointHead(a, dir, r.point.id), 'QUIESCED', 'the snapshot was taken after the pre-script');
      assert.equal((await readFile(disk)).toString('latin1', 0, 8), 'RESUMED_', 'and before the post-script');
      assert.deepEqual(r.steps.map((s) => `${s.step}:${s.ok}`), ['pre-script:true', 'snapshot:true', 'post-script:true']);
      const job = await a.client.getJob(r.jobId);
      assert.equal(job.status, 'Completed');
      assert.equal((job.details as { consistency: string }).consistency, 'app');
    });

    await t.test('a failing pre-script: crash-consistent point with a warning, post-script still runs', async () => {
      const { a, dir, disk, log, post } = await setup(h, 'prefail');
      const pre = await script(dir, 'fail.sh', `echo pre >> ${log}; echo "database busy" >&2; exit 3`);
      const r = await backupVm(backupOpts(a, vmConfig('prefail', [disk], { preScript: pre, postScript: post })));
      assert.equal(r.consistency, 'crash');
      assert.deepEqual(r.warnings.map((w) => w.code), ['PreScriptFailed']);
      assert.match(r.warnings[0]!.message, /exited with status 3: database busy/);
      assert.equal(await readFile(log, 'utf8'), 'pre\npost pre=failed snapshot=ok\n');
      const job = await a.client.getJob(r.jobId);
      assert.equal(job.status, 'CompletedWithWarnings');
      assert.equal((await a.client.listPoints({ item: 'prefail' }))[0]!.consistency, 'crash');
    });

    await t.test('a hanging pre-script is killed at its timeout, with what it started; the backup goes on', async () => {
      const { a, dir, disk, log, post } = await setup(h, 'prehang');
      const pids = join(dir, 'pids');
      const pre = await script(dir, 'hang.sh', `echo pre >> ${log}; echo $$ > ${pids}; sleep 600 & echo $! >> ${pids}; wait`);
      const r = await backupVm({ ...backupOpts(a, vmConfig('prehang', [disk], { preScript: pre, postScript: post })), scriptTimeoutSeconds: 1 });
      assert.equal(r.consistency, 'crash');
      assert.deepEqual(r.warnings.map((w) => w.code), ['PreScriptTimeout']);
      assert.match(r.warnings[0]!.message, /did not finish within 1 s and was killed/);
      assert.equal(await readFile(log, 'utf8'), 'pre\npost pre=failed snapshot=ok\n');
      const [shell, sleeper] = (await readFile(pids, 'utf8')).trim().split('\n').map(Number);
      assert.ok(!(await alive(shell!)) && !(await alive(sleeper!)), 'the script and its sleep are gone');
    });

    await t.test('a failing post-script: not app-consistent, warned', async () => {
      const { a, dir, disk, pre } = await setup(h, 'postfail');
      const post = await script(dir, 'postfail.sh', 'exit 1');
      const r = await backupVm(backupOpts(a, vmConfig('postfail', [disk], { preScript: pre, postScript: post })));
      assert.equal(r.consistency, 'crash');
      assert.deepEqual(r.warnings.map((w) => w.code), ['PostScriptFailed']);
    });

    await t.test('the snapshot fails: the post-script still runs, the backup fails, nothing is left', async () => {
      const { a, dir, disk, log, post } = await setup(h, 'snapfail');
      // The pre-script takes the disk away, so the snapshot cannot be taken; the post-script puts it back.
      const pre = await script(dir, 'away.sh', `echo pre >> ${log}; mv "$COFFRE_DISKS" "$COFFRE_DISKS.away"`);
      const back = await script(dir, 'back.sh', `mv "$COFFRE_DISKS.away" "$COFFRE_DISKS"; ${post}`);
      await assert.rejects(backupVm(backupOpts(a, vmConfig('snapfail', [disk], { preScript: pre, postScript: back }))), (e: unknown) => e instanceof CoffreError);
      assert.equal(await readFile(log, 'utf8'), 'pre\npost pre=ok snapshot=failed\n');
      assert.ok((await stat(disk)).isFile());
      const jobs = (await a.client.listJobs()).filter((j) => j.item === 'snapfail');
      assert.deepEqual(jobs.map((j) => j.status), ['Failed']);
      assert.deepEqual(await a.client.listPoints({ item: 'snapfail' }).catch(() => []), []);
      assert.deepEqual(await readdir(join(defaultSnapshotRoot(a.agentDir), 'snapfail')), [], 'no staging left');
    });

    await t.test('fsfreeze: file-system consistent when frozen; never on the file system snapshots go to', async () => {
      const { a, disk } = await setup(h, 'freeze');
      const calls: string[] = [];
      const ok = (): CommandResult => ({ ok: true, exitCode: 0, signal: null, timedOut: false, output: '', durationMs: 0 });
      const fake: Quiescer = {
        script: async () => ok(),
        freeze: async (p) => { calls.push(`freeze ${p}`); return ok(); },
        thaw: async (p) => { calls.push(`thaw ${p}`); return ok(); },
      };
      // /dev is another file system than the agent folder: it may be frozen (here: pretend to).
      const r = await backupVm({ ...backupOpts(a, vmConfig('freeze', [disk], { freezePath: '/dev' })), quiescer: fake });
      assert.equal(r.consistency, 'filesystem');
      assert.deepEqual(calls, ['freeze /dev', 'thaw /dev']);
      assert.deepEqual(r.steps.map((s) => s.step), ['freeze', 'snapshot', 'thaw']);
      calls.length = 0;
      const same = await backupVm({ ...backupOpts(a, vmConfig('freeze', [disk], { freezePath: h.dir })), quiescer: fake });
      assert.equal(same.consistency, 'crash');
      assert.deepEqual(same.warnings.map((w) => w.code), ['FreezeSkipped']);
      assert.deepEqual(calls, []);
    });
  } finally {
    await h.close();
  }
});

test('consistency rules, with a recording quiescer', async () => {
  const result = (ok: boolean, timedOut = false): CommandResult => ({ ok, exitCode: ok ? 0 : timedOut ? null : 1, signal: timedOut ? 'SIGTERM' : null, timedOut, output: '', durationMs: 1 });
  const cases: { name: string; plan: { pre?: boolean; post?: boolean; freeze?: boolean }; pre?: boolean; post?: boolean; freeze?: boolean; snapshot?: boolean; expect: string; calls: string[]; warnings: string[] }[] = [
    { name: 'nothing', plan: {}, expect: 'crash', calls: ['snapshot'], warnings: [] },
    { name: 'scripts ok', plan: { pre: true, post: true }, expect: 'app', calls: ['pre', 'snapshot', 'post'], warnings: [] },
    { name: 'pre only, ok', plan: { pre: true }, expect: 'app', calls: ['pre', 'snapshot'], warnings: [] },
    { name: 'freeze ok', plan: { freeze: true }, expect: 'filesystem', calls: ['freeze', 'snapshot', 'thaw'], warnings: [] },
    { name: 'freeze fails', plan: { freeze: true }, freeze: false, expect: 'crash', calls: ['freeze', 'snapshot'], warnings: ['FreezeFailed'] },
    { name: 'pre fails, frozen', plan: { pre: true, post: true, freeze: true }, pre: false, expect: 'filesystem', calls: ['pre', 'freeze', 'snapshot', 'thaw', 'post'], warnings: ['PreScriptFailed'] },
    { name: 'post fails', plan: { pre: true, post: true }, post: false, expect: 'crash', calls: ['pre', 'snapshot', 'post'], warnings: ['PostScriptFailed'] },
    { name: 'snapshot fails', plan: { pre: true, post: true, freeze: true }, snapshot: false, expect: 'failed', calls: ['pre', 'freeze', 'snapshot', 'thaw', 'post'], warnings: [] },
  ];
  for (const c of cases) {
    const calls: string[] = [];
    const q: Quiescer = {
      script: async (file) => { calls.push(file); return result(file === 'pre' ? c.pre ?? true : c.post ?? true); },
      freeze: async () => { calls.push('freeze'); return result(c.freeze ?? true); },
      thaw: async () => { calls.push('thaw'); return result(true); },
    };
    const out = await snapshotConsistently({ ...(c.plan.pre ? { preScript: 'pre' } : {}), ...(c.plan.post ? { postScript: 'post' } : {}), ...(c.plan.freeze ? { freezePath: '/mnt/x' } : {}), timeoutMs: 1000 },
      q, async () => { calls.push('snapshot'); if (c.snapshot === false) throw new Error('no space'); return 1; });
    assert.equal(out.ok ? out.consistency : 'failed', c.expect, c.name);
    assert.deepEqual(calls, c.calls, c.name);
    assert.deepEqual(out.warnings.map((w) => w.code), c.warnings, c.name);
  }
});

test('instant-restore snapshots are kept for the policy\'s window, then removed; restores then use the vault', async () => {
  const h = await harness();
  try {
    const a = await h.agent();
    const disk = join(h.dir, 'disk.img');
    await writeFile(disk, Buffer.concat([seededBytes('window', 2 * MiB), Buffer.alloc(2 * MiB)]));
    const t0 = new Date();
    const clock = new ManualClock(t0);
    const r = await backupVm({ ...backupOpts(a, vmConfig('win', [disk])), clock });
    const held = await listSnapshots(a.agentDir, 'win');
    assert.equal(held.length, 1);
    assert.equal(held[0]!.expiresAt, new Date(t0.getTime() + 2 * 86_400_000).toISOString(), 'DefaultPolicy: 2 days');
    assert.equal(r.snapshot!.expiresAt, held[0]!.expiresAt);

    // A killed backup's staging folder is swept once it is old.
    const stale = join(defaultSnapshotRoot(a.agentDir), 'win', '0123456789abcdef.partial');
    await mkdir(stale, { recursive: true });
    await utimes(stale, t0, t0);

    clock.set(new Date(t0.getTime() + 2 * 86_400_000 - 1000));
    assert.deepEqual(await sweepSnapshots(a.agentDir, clock), []);
    assert.equal((await listSnapshots(a.agentDir, 'win')).length, 1, 'still inside its window');
    const inside = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: r.point.id, target: join(h.dir, 'in') });
    assert.equal(inside.source, 'snapshot');

    clock.set(new Date(t0.getTime() + 3 * 86_400_000));
    const removed = await sweepSnapshots(a.agentDir, clock);
    assert.deepEqual(removed.map((x) => x.pointId).sort(), ['0123456789abcdef', r.point.id].sort());
    assert.deepEqual(await listSnapshots(a.agentDir, 'win'), []);
    assert.deepEqual(await readdir(join(defaultSnapshotRoot(a.agentDir), 'win')), [], 'the copy is gone from disk');
    const after = await restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: r.point.id, target: join(h.dir, 'out') });
    assert.equal(after.source, 'vault');
    assert.ok((await readFile(after.disks[0]!.file)).equals(await readFile(disk)));
    await assert.rejects(restoreVm({ client: a.client, keys: a.keys, agentDir: a.agentDir, pointId: r.point.id, target: join(h.dir, 'x'), source: 'snapshot' }),
      (e: unknown) => e instanceof CoffreError && e.code === 'NotFound');

    // A policy with a 1-day window (recorded for the VM on this machine) sets the next expiry.
    await h.admin.createPolicy('Quick', { name: 'Quick', schedule: { frequency: 'Daily', times: ['01:00'] }, retention: { daily: { count: 7 } }, instantRestoreDays: 1 });
    const quick = await backupVm({ ...backupOpts(a, vmConfig('win', [disk], { policy: 'Quick' })), clock });
    assert.equal(quick.snapshot!.expiresAt, new Date(clock.now().getTime() + 86_400_000).toISOString());
  } finally {
    await h.close();
  }
});
