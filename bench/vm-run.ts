/**
 * `npm run bench:vm [-- --runs N] [--size-mib N] [--keep] [--no-install] [--out FILE]`
 *
 * Issue 16's table, measured side by side in one run: a 1.5 GiB ext4 file system filled from
 * /usr/share (mkfs.ext4 -d), as the qcow2 disk of a running VM. The "VM" is
 * qemu-storage-daemon serving the image (QMP for Coffre) and exporting it through FUSE as a raw
 * file, through which debugfs writes a 20 MiB file inside the guest file system, as the guest
 * would. Steps: initial backup, backup after the 20 MiB write, full restore from the vault;
 * then the incremental again through a running agent (`coffre agent run`, which `coffre vm
 * backup` asks through its control socket): after another 20 MiB file, the agent's first backup,
 * and after a third its next one (warm: engine loaded, buffers touched), restic after each too.
 * Coffre runs as two processes on loopback (`coffre server`, and `coffre vm backup/restore`);
 * restic 0.14 backs up and restores the same image file (`restic backup vm.qcow2`). Each
 * command runs under GNU time; the CPU time of QEMU (the daemon serving the disk) during each
 * Coffre step is reported beside it. Coffre's restore is checked with `qemu-img compare`
 * against the disk as it was at the point. Writes the table to docs/benchmarks.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededBytes } from '../testkit/vm-fixtures.js';
import { BIN, COFFRE_PASSPHRASE, CoffreServer, PASSWORD, ROOT, cleanEnv, machine, machineBusySeconds, median, mib, must, registerCoffreAgent, replaceSection, timed, type Timed } from './lib.js';

interface Options { runs: number; sizeMiB: number; keep: boolean; install: boolean; out: string }

function parseOptions(argv: string[]): Options {
  const o: Options = { runs: 1, sizeMiB: 1536, keep: false, install: true, out: join(ROOT, 'docs', 'benchmarks.md') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--runs') o.runs = Number(value());
    else if (a === '--size-mib') o.sizeMiB = Number(value());
    else if (a === '--keep') o.keep = true;
    else if (a === '--no-install') o.install = false;
    else if (a === '--out') o.out = value();
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: npm run bench:vm -- [--runs N] [--size-mib N] [--keep] [--no-install] [--out FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isInteger(o.sizeMiB) || o.sizeMiB < 256) throw new Error('--size-mib must be an integer of at least 256');
  return o;
}

/** In table order: the incremental in the command's own process, then through a running agent. */
const STEPS = ['initial', 'incremental', 'agent-first', 'agent', 'restore'] as const;
type Step = (typeof STEPS)[number];
const STEP_NAMES: Record<Step, string> = {
  initial: 'initial', incremental: 'after writing a 20 MiB file inside', restore: 'restore (from the vault)',
  'agent-first': 'the same, through a running agent (its first)', agent: 'the same, through a running agent (next)',
};
const TARGETS: Record<Step, number> = { initial: 0.8, incremental: 0.3, restore: 0.8, 'agent-first': 0.3, agent: 0.3 };

interface Sample { tool: 'coffre' | 'restic'; step: Step; run: number; wall: number; cpu: number; rssMiB: number; serverCpu?: number; qemuCpu?: number; agentCpu?: number; otherCpu: number; detail: string }

const log = (s: string) => process.stderr.write(`bench:vm: ${s}\n`);

function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** qemu-storage-daemon serving the image: QMP for Coffre, and a FUSE export of the guest's view (raw) for debugfs. */
async function startVm(work: string, image: string): Promise<{ qmp: string; guest: string; pid: number; stop(): Promise<void> }> {
  const qmp = join(work, 'qmp.sock');
  const guest = join(work, 'guest.img');
  const pidFile = join(work, 'qsd.pid');
  await writeFile(guest, '');
  await new Promise<void>((resolve, reject) => {
    const child = spawn('qemu-storage-daemon', [
      '--blockdev', `driver=file,filename=${image},node-name=vda-file`, '--blockdev', 'driver=qcow2,file=vda-file,node-name=vda',
      '--chardev', `socket,path=${qmp},server=on,wait=off,id=qmp0`, '--monitor', 'chardev=qmp0',
      '--export', `type=fuse,id=guest,node-name=vda,mountpoint=${guest},writable=on`,
      '--daemonize', '--pidfile', pidFile,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`qemu-storage-daemon: ${err}`))));
  });
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  return {
    qmp, guest, pid,
    async stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return; // already gone
      }
      for (let i = 0; i < 1000; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** `coffre agent run` serving the agent folder, once its control socket listens and its first poll of the vault is over. */
async function startAgent(agent: string, work: string, env: NodeJS.ProcessEnv): Promise<{ pid: number; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [BIN, '--agent-dir', agent, 'agent', 'run', '--interval', '3600'], { cwd: work, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  for (let i = 0; !/local requests on/.test(log); i++) {
    if (child.exitCode !== null || i > 600) throw new Error(`coffre agent run did not listen: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // The daemon asks the vault what is due right after it listens; let that settle (nothing is due: the VM was just backed up).
  await new Promise((r) => setTimeout(r, 3000));
  return {
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function oneRun(work: string, runNo: number, o: Options, samples: Sample[], notes: Set<string>): Promise<void> {
  const tfile = join(work, '.time');
  const coffreEnv = cleanEnv({ COFFRE_PASSPHRASE });
  const resticEnv = cleanEnv({ RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(work, 'restic-cache') });
  for (const p of ['coffre-data', 'coffre-agent', 'restic-repo', 'restic-cache', 'restore-coffre', 'restore-restic', 'vm.qcow2']) await rm(join(work, p), { recursive: true, force: true });
  await must('cp', ['--sparse=always', join(work, 'vm-orig.qcow2'), join(work, 'vm.qcow2')]);
  const vm = await startVm(work, join(work, 'vm.qcow2'));
  const server = await CoffreServer.start(join(work, 'coffre-data'), cleanEnv());
  try {
    const agent = join(work, 'coffre-agent');
    await registerCoffreAgent(server, work, agent, coffreEnv);
    await must(process.execPath, [BIN, '--agent-dir', agent, 'vm', 'protect', 'bench', '--qmp', vm.qmp], { cwd: work, env: coffreEnv });
    await must('restic', ['init', '-r', join(work, 'restic-repo')], { env: resticEnv });
    let point = '';

    let agentPid = 0;
    const measure = async (tool: Sample['tool'], step: Step, cmd: string, args: string[], env: NodeJS.ProcessEnv, detail: (t: Timed) => string) => {
      // Both tools start with the image in the page cache (the one measured first would otherwise
      // warm it for the other), and with no dirty pages left by the step before.
      await must('dd', [`if=${join(work, 'vm.qcow2')}`, 'of=/dev/null', 'bs=4M', 'status=none']);
      await must('sync', []);
      const busy0 = machineBusySeconds();
      const server0 = server.cpuSeconds();
      const qemu0 = cpuOf(vm.pid);
      const agent0 = agentPid ? cpuOf(agentPid) : 0;
      const t = await timed(cmd, args, { cwd: work, env, timeFile: tfile });
      const serverCpu = server.cpuSeconds() - server0;
      const qemuCpu = cpuOf(vm.pid) - qemu0;
      // The resident agent's CPU during the step (it does the backup; the command only asks and prints).
      const agentCpu = agentPid ? cpuOf(agentPid) - agent0 : undefined;
      const own = t.user + t.sys + (tool === 'coffre' ? serverCpu + qemuCpu + (agentCpu ?? 0) : 0);
      const s: Sample = {
        tool, step, run: runNo, wall: t.wall, cpu: t.user + t.sys, rssMiB: t.rssKiB / 1024, otherCpu: Math.max(0, machineBusySeconds() - busy0 - own), detail: detail(t),
        ...(tool === 'coffre' ? { serverCpu, qemuCpu, ...(agentCpu !== undefined ? { agentCpu } : {}) } : {}),
      };
      samples.push(s);
      log(`run ${runNo} ${tool.padEnd(6)} ${STEP_NAMES[step].padEnd(46)} wall ${t.wall.toFixed(2)} s, cpu ${s.cpu.toFixed(2)} s${tool === 'coffre' ? ` (server ${serverCpu.toFixed(2)} s, QEMU ${qemuCpu.toFixed(2)} s${agentCpu !== undefined ? `, agent ${agentCpu.toFixed(2)} s` : ''})` : ''}, other load ${s.otherCpu.toFixed(1)} CPU s; ${s.detail}`);
    };
    const coffreJob = (t: Timed) => {
      const job = JSON.parse(t.stdout) as { status: string; pointId: string | null; bytesScanned: number; bytesUploaded: number; details: { disks?: { changeTracking?: { mode: string } }[] } };
      if (job.pointId) point = job.pointId;
      if (job.status !== 'Completed') notes.add(`Coffre ended a step with status ${job.status}.`);
      const mode = job.details.disks?.[0]?.changeTracking?.mode;
      return `job ${job.status}, ${mib(job.bytesScanned).toFixed(1)} MiB read${mode ? ` (${mode})` : ''}, ${mib(job.bytesUploaded).toFixed(1)} MiB ${point && mode ? 'sent' : 'fetched'}`;
    };
    const vmBackup = (step: Step) => measure('coffre', step, process.execPath, [BIN, '--agent-dir', agent, 'vm', 'backup', 'bench', '--json'], coffreEnv, coffreJob);
    const resticBackup = (step: Step) => measure('restic', step, 'restic', ['-r', join(work, 'restic-repo'), 'backup', '--compression', 'auto', 'vm.qcow2'], resticEnv, () => 'image file');

    await vmBackup('initial');
    await resticBackup('initial');
    // A 20 MiB file written inside the guest's ext4, through QEMU (FUSE export), as the guest would.
    const write20MiB = async (seed: string, name: string) => {
      await writeFile(join(work, 'new-20m.bin'), seededBytes(seed, 20 * 2 ** 20));
      await must('debugfs', ['-w', '-R', `write ${join(work, 'new-20m.bin')} ${name}`, vm.guest]);
    };
    await write20MiB(`bench-vm-${runNo}`, 'coffre-bench-20m.bin');
    await vmBackup('incremental');
    await resticBackup('incremental');
    const target = join(work, 'restore-coffre');
    await measure('coffre', 'restore', process.execPath, [BIN, '--agent-dir', agent, 'vm', 'restore', point, '--target', target, '--source', 'vault', '--json'], coffreEnv, coffreJob);
    await measure('restic', 'restore', 'restic', ['-r', join(work, 'restic-repo'), 'restore', 'latest', '--target', join(work, 'restore-restic')], resticEnv, () => 'image file');
    // Nothing wrote to the disk since the second backup: its restore must equal the disk now.
    const cmp = await must('qemu-img', ['compare', '-U', '-f', 'qcow2', join(target, 'vm.qcow2'), '-F', 'raw', vm.guest], { okCodes: [1] });
    if (!/identical/.test(cmp.stdout)) throw new Error(`Coffre's restore differs from the disk: ${cmp.stdout}`);
    log(`run ${runNo} coffre restore identical to the disk at its point (qemu-img compare)`);

    // The same incremental through a running agent: the same command, answered by `coffre agent run`.
    const resident = await startAgent(agent, work, coffreEnv);
    agentPid = resident.pid;
    try {
      for (const step of ['agent-first', 'agent'] as const) {
        await write20MiB(`bench-vm-${runNo}-${step}`, `coffre-bench-20m-${step}.bin`);
        await vmBackup(step);
        await resticBackup(step);
      }
    } finally {
      agentPid = 0;
      await resident.stop();
    }
  } finally {
    await server.stop();
    await vm.stop();
  }
}

function table(samples: Sample[], o: Options, image: { used: number; file: number }, notes: Set<string>): string {
  const m = machine();
  const med = (tool: Sample['tool'], step: Step, f: (s: Sample) => number) => median(samples.filter((s) => s.tool === tool && s.step === step).map(f));
  const lines = [
    `## VM backup: a running QEMU's qcow2 disk (${new Date().toISOString().slice(0, 10)}, ${o.runs === 1 ? '1 run' : `median of ${o.runs} runs`})`,
    '',
    `Command: \`npm run bench:vm${o.runs > 1 ? ` -- --runs ${o.runs}` : ''}\` (bench/vm-run.ts). Machine: ${m.cpu}, ${m.memory}, kernel ${m.kernel}, Node.js ${m.node}, ${m.restic}, Coffre ${m.coffre}, load average before the run ${loadavg().map((x) => x.toFixed(1)).join(' ')}.`,
    '',
    `Disk: a ${o.sizeMiB} MiB ext4 file system filled from /usr/share (${mib(image.used).toFixed(0)} MiB used), as a qcow2 image of ${mib(image.file).toFixed(0)} MiB served by qemu-storage-daemon (QMP; the guest's view exported through FUSE). Coffre: \`coffre vm protect bench --qmp SOCKET\`, \`coffre vm backup bench\`, \`coffre vm restore POINT --source vault\` (to qcow2, checked with \`qemu-img compare\`). restic: \`restic backup --compression auto vm.qcow2\` and \`restic restore latest\` on the same image file. The change is a 20 MiB file written inside the guest's ext4 (debugfs through the FUSE view, so QEMU's dirty bitmap sees the writes as a guest's). "Through a running agent": \`coffre agent run\` is started after the restore, and the same \`coffre vm backup bench\` asks it through its control socket; each of those rows follows another 20 MiB file, restic backing up the image after the same change (its own row's figure).`,
    '',
    '| step | `coffre vm` | restic on the image file | ratio | target | met? |',
    '|---|---|---|---|---|---|',
  ];
  for (const step of STEPS) {
    const c = med('coffre', step, (s) => s.wall);
    const r = med('restic', step, (s) => s.wall);
    const detail = samples.find((s) => s.tool === 'coffre' && s.step === step)?.detail ?? '';
    lines.push(`| ${STEP_NAMES[step]} | ${c.toFixed(2)} s (${detail.replace(/^job \w+, /, '')}) | ${r.toFixed(2)} s | ${(c / r).toFixed(2)} | ≤ ${TARGETS[step]} | ${c / r <= TARGETS[step] ? 'met' : '**not met**'} |`);
  }
  lines.push('', 'CPU seconds per step (Coffre: the CLI, the vault server, and QEMU — which takes the snapshot and serves the changed-block map; the CLI reads the snapshot clusters from the image file itself; "other" is what the rest of the machine used meanwhile — well above a few tenths means the step shared the CPUs):', '',
    '| step | Coffre CLI | Coffre agent (resident) | vault server | QEMU | restic | other (Coffre step) | other (restic step) |', '|---|---|---|---|---|---|---|---|');
  for (const step of STEPS) {
    const agentCpu = med('coffre', step, (s) => s.agentCpu ?? NaN);
    lines.push(`| ${STEP_NAMES[step]} | ${med('coffre', step, (s) => s.cpu).toFixed(2)} | ${Number.isNaN(agentCpu) ? '—' : agentCpu.toFixed(2)} | ${med('coffre', step, (s) => s.serverCpu ?? NaN).toFixed(2)} | ${med('coffre', step, (s) => s.qemuCpu ?? NaN).toFixed(2)} | ${med('restic', step, (s) => s.cpu).toFixed(2)} | ${med('coffre', step, (s) => s.otherCpu).toFixed(1)} | ${med('restic', step, (s) => s.otherCpu).toFixed(1)} |`);
  }
  if (notes.size) lines.push('', ...[...notes].map((n) => `- ${n}`));
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (o.install) await must('bash', [join(ROOT, 'bench', 'install-peers.sh')]);
  await must('bash', [join(ROOT, 'scripts', 'test-deps.sh')]);
  const work = await mkdtemp(join(tmpdir(), 'coffre-bench-vm-'));
  log(`work folder ${work}`);
  try {
    log('building the disk: mkfs.ext4 -d /usr/share, then qemu-img convert to qcow2');
    const raw = join(work, 'raw.img');
    await must('mkfs.ext4', ['-q', '-F', '-d', '/usr/share', raw, `${o.sizeMiB}M`]);
    const used = await must('dumpe2fs', ['-h', raw]);
    const free = Number(/Free blocks:\s+(\d+)/.exec(used.stdout)?.[1]);
    const total = Number(/Block count:\s+(\d+)/.exec(used.stdout)?.[1]);
    const blockSize = Number(/Block size:\s+(\d+)/.exec(used.stdout)?.[1]);
    await must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, join(work, 'vm-orig.qcow2')]);
    await rm(raw);
    const image = { used: (total - free) * blockSize, file: (await import('node:fs')).statSync(join(work, 'vm-orig.qcow2')).size };
    const samples: Sample[] = [];
    const notes = new Set<string>();
    for (let r = 1; r <= o.runs; r++) await oneRun(work, r, o, samples, notes);
    const body = table(samples, o, image, notes);
    process.stdout.write(body + '\n');
    let text = '';
    try {
      text = await readFile(o.out, 'utf8');
    } catch {
      // No report yet: this section starts it.
    }
    await writeFile(o.out, replaceSection(text, 'vm-results', body));
    log(`wrote ${o.out}`);
  } finally {
    if (!o.keep) await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:vm: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
