/**
 * `coffre vm backup` through the running agent (issue 16): `coffre agent run` listens on a
 * control socket in the agent folder (owner-only), and the command asks it to make the backup
 * instead of loading the engine itself. With real QEMU (qemu-storage-daemon serving two qcow2
 * disks) and the real `coffre` command in child processes, the test checks:
 *
 * - without an agent, the command backs up in its own process (as before);
 * - with one, the backup is the agent's: the agent's log names the job the command prints, and
 *   while the agent backs up a VM, a command forced to run in its own process finds the VM's
 *   lock held by the agent's process;
 * - output and exit codes are the in-process ones: the job's JSON, the human summary (ids and
 *   figures aside), an unknown VM's error, a bad option value's usage error;
 * - the agent refuses a second backup of a VM it is backing up (ItemBusy);
 * - the socket is mode 0600, another user gets no service from it, a socket left by a killed
 *   agent is stale (the command works without it, the next agent takes its name back), and a
 *   stopped agent removes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:net';
import { once } from 'node:events';
import type { JobInfo } from '../src/core/api.js';
import { NbdClient } from '../src/agent/vm/nbd-client.js';
import { BIN, cli, harness, type CliResult } from '../testkit/harness.js';
import { qemuImg, startStorageDaemon, type StorageDaemon } from '../testkit/qemu.js';
import { MiB, seededBytes } from '../testkit/vm-fixtures.js';

/** `coffre agent run` in a child process, its stderr collected. */
interface RunningAgent { child: ChildProcess; log(): string; waitFor(re: RegExp): Promise<string>; stop(signal: NodeJS.Signals): Promise<void> }

function startAgent(agentDir: string, cwd: string): RunningAgent {
  const child = spawn(process.execPath, [BIN, '--agent-dir', agentDir, 'agent', 'run', '--interval', '3600'], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const waiters: (() => void)[] = [];
  child.stderr!.on('data', (d: Buffer) => { log += d.toString(); for (const w of waiters.splice(0)) w(); });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    child,
    log: () => log,
    async waitFor(re) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const m = re.exec(log);
        if (m) return m[0];
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the agent never logged ${re}: ${log}`);
        await new Promise<void>((resolve) => { waiters.push(resolve); setTimeout(resolve, 200); });
      }
    },
    async stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** The human summary with what differs from run to run (ids, times, sizes, counts) taken out. */
const shape = (out: string) => out.replace(/[0-9a-f]{16,}/g, 'ID').replace(/\d{4}-\d{2}-\d{2}T[\d:.]+Z/g, 'TIME').replace(/\d+(\.\d+)?/g, 'N');

test('coffre vm backup through the running agent: the agent makes the point, the command prints and exits as in its own process', async (t) => {
  const h = await harness();
  let qsd: StorageDaemon | null = null;
  let agent: RunningAgent | null = null;
  const nbds: NbdClient[] = [];
  try {
    const a = await h.agent('hypervisor');
    const files = [join(h.dir, 'web.qcow2'), join(h.dir, 'slow.qcow2')];
    for (const f of files) await qemuImg(['create', '-q', '-f', 'qcow2', f, String(16 * MiB)]);
    qsd = await startStorageDaemon(h.dir, [{ file: files[0]!, node: 'disk0' }, { file: files[1]!, node: 'disk1' }], { nbd: true });
    for (const node of ['disk0', 'disk1']) nbds.push(await NbdClient.connect({ socket: qsd.nbd!, export: node }));
    const [web, slow] = nbds as [NbdClient, NbdClient];
    await web.write(0, seededBytes('web-0', 3 * MiB));
    await slow.write(0, seededBytes('slow-0', MiB));

    const coffre = (args: string[], opts: { env?: Record<string, string>; uid?: number } = {}): Promise<CliResult> =>
      cli(['--agent-dir', a.agentDir, ...args], opts.env ?? {}, { cwd: h.dir, ...(opts.uid !== undefined ? { uid: opts.uid } : {}) });
    // A pre-script that waits for the test: it looks at the VM while its backup runs, then opens the gate.
    const sleeper = join(h.dir, 'sleep.sh');
    const gate = join(h.dir, 'gate');
    await writeFile(sleeper, `#!/bin/sh\nwhile [ ! -e ${gate} ]; do sleep 0.1; done\n`);
    await chmod(sleeper, 0o755);
    for (const [name, node, extra] of [['web', 'disk0', []], ['slow', 'disk1', ['--pre-script', sleeper]]] as const) {
      const p = await coffre(['vm', 'protect', name, '--qmp', qsd.qmp, '--node', node, '--nbd-socket', qsd.nbd!, ...extra]);
      assert.equal(p.code, 0, p.stderr);
    }
    // The same 1 MiB change before each incremental, so that both summaries have the same shape.
    let change = 0;
    const changeWeb = () => web.write((4 + change) * MiB, seededBytes(`web-change-${change++}`, MiB));

    // In its own process: the reference output of each case.
    const first = await coffre(['vm', 'backup', 'web', '--json']);
    assert.equal(first.code, 0, first.stderr);
    await changeWeb();
    const ownHuman = await coffre(['vm', 'backup', 'web']);
    assert.equal(ownHuman.code, 0, ownHuman.stderr);
    assert.match(ownHuman.stdout, /incremental/);
    const ownUnknown = await coffre(['vm', 'backup', 'ghost']);
    const ownBadDate = await coffre(['vm', 'backup', 'web', '--retain-until', '2001-01-01']);
    assert.notEqual(ownUnknown.code, 0);
    assert.equal(ownBadDate.code, 2, ownBadDate.stderr);

    agent = startAgent(a.agentDir, h.dir);
    const socket = join(a.agentDir, 'agent.sock');
    await agent.waitFor(/local requests on \S+/);

    await t.test('the control socket is owner-only', async () => {
      const s = await lstat(socket);
      assert.ok(s.isSocket());
      assert.equal(s.mode & 0o777, 0o600);
    });

    await t.test('the backup is made by the agent; the command prints the same summary', async () => {
      await changeWeb();
      const viaAgent = await coffre(['vm', 'backup', 'web']);
      assert.equal(viaAgent.code, 0, viaAgent.stderr);
      assert.equal(shape(viaAgent.stdout), shape(ownHuman.stdout), `through the agent:\n${viaAgent.stdout}\nin its own process:\n${ownHuman.stdout}`);
      const point = /point ([0-9a-f]+):/.exec(viaAgent.stdout)![1]!;
      assert.match(agent!.log(), new RegExp(`web: point ${point} \\(job `), 'the agent logged the point the command printed');
    });

    await t.test('--json prints the job, as in its own process', async () => {
      await changeWeb();
      const viaAgent = await coffre(['vm', 'backup', 'web', '--json']);
      assert.equal(viaAgent.code, 0, viaAgent.stderr);
      const job = JSON.parse(viaAgent.stdout) as JobInfo;
      const own = JSON.parse(first.stdout) as JobInfo;
      assert.deepEqual(Object.keys(job).sort(), Object.keys(own).sort());
      assert.equal(job.status, 'Completed');
      assert.ok(job.bytesScanned >= MiB && job.bytesScanned <= 2 * MiB, `an incremental of the 1 MiB change: ${job.bytesScanned} bytes read`);
      assert.match(agent!.log(), new RegExp(`\\(job ${job.id}\\)`), 'the agent logged the job the command printed');
    });

    await t.test('errors: an unknown VM and a bad option value exit and print as in its own process', async () => {
      const unknown = await coffre(['vm', 'backup', 'ghost']);
      assert.deepEqual([unknown.code, unknown.stderr, unknown.stdout], [ownUnknown.code, ownUnknown.stderr, ownUnknown.stdout]);
      assert.match(agent!.log(), /ghost: failed/, 'the agent answered the unknown VM');
      const badDate = await coffre(['vm', 'backup', 'web', '--retain-until', '2001-01-01']);
      assert.deepEqual([badDate.code, badDate.stderr, badDate.stdout], [ownBadDate.code, ownBadDate.stderr, ownBadDate.stdout]);
    });

    await t.test('one backup of a VM at a time: the agent holds the VM while it backs it up', async () => {
      const running = coffre(['vm', 'backup', 'slow', '--json']);
      await agent!.waitFor(/backing up slow/);
      const second = await coffre(['vm', 'backup', 'slow']);
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, new RegExp(`already running \\(process ${agent!.child.pid}\\).*\\[ItemBusy\\]`));
      // Forced into its own process (another vault address than the agent's): the lock is the agent's.
      const own = await coffre(['--server', h.server.url, ...(h.server.fingerprint ? ['--fingerprint', h.server.fingerprint] : []), 'vm', 'backup', 'slow']);
      assert.match(own.stderr, new RegExp(`already running \\(process ${agent!.child.pid}\\).*\\[ItemBusy\\]`));
      await writeFile(gate, '');
      const done = await running;
      assert.equal(done.code, 0, done.stderr);
      assert.equal((JSON.parse(done.stdout) as JobInfo).status, 'Completed');
    });

    await t.test('another user gets nothing from the socket', async () => {
      // The folders let anyone reach the socket's name (execute-only): the socket's own mode is what refuses.
      await chmod(h.dir, 0o711);
      await chmod(a.agentDir, 0o711);
      const before = agent!.log().length;
      const other = await coffre(['vm', 'backup', 'web'], { uid: 65534 });
      assert.notEqual(other.code, 0);
      assert.equal(agent!.log().slice(before), '', 'the agent heard nothing');
    });

    await t.test('a killed agent leaves a stale socket: the command works without it, the next agent takes it back', async () => {
      await agent!.stop('SIGKILL');
      assert.ok((await lstat(socket)).isSocket(), 'the killed agent left its socket file');
      await changeWeb();
      const own = await coffre(['vm', 'backup', 'web', '--json']);
      assert.equal(own.code, 0, own.stderr);
      assert.equal((JSON.parse(own.stdout) as JobInfo).status, 'Completed');
      agent = startAgent(a.agentDir, h.dir);
      await agent.waitFor(/local requests on \S+/);
      await changeWeb();
      const viaAgent = await coffre(['vm', 'backup', 'web', '--json']);
      assert.equal(viaAgent.code, 0, viaAgent.stderr);
      assert.match(agent.log(), new RegExp(`\\(job ${(JSON.parse(viaAgent.stdout) as JobInfo).id}\\)`));
      // A caller connected but silent must not hold the agent up when it is told to stop.
      const silent = connect(socket);
      await once(silent, 'connect');
      silent.on('error', () => undefined);
      const stopped = await Promise.race([agent.stop('SIGTERM').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
      assert.ok(stopped, 'the agent stopped with a silent connection open');
      silent.destroy();
      await assert.rejects(lstat(socket), { code: 'ENOENT' }, 'a stopped agent removes its socket');
    });
  } finally {
    await agent?.stop('SIGKILL');
    for (const n of nbds) await n.close().catch(() => undefined);
    await qsd?.stop();
    await h.close();
  }
});
