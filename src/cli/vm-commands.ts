/** `coffre vm ...`: protect, back up and restore whole VMs (disk images, or a running QEMU's disks), and recover files from them. */
import { mkdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { systemClock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { VaultClient } from '../agent/client.js';
import type { VmConfig } from '../agent/vm/config.js';
import { DEFAULT_BLOCK_SIZE, DEFAULT_SCRIPT_TIMEOUT_SECONDS, MAX_BLOCK, MIN_BLOCK } from '../agent/vm/limits.js';
import type { RestoreFormat } from '../agent/vm/vm-restore.js';
import { adminClient, agentContext, agentDirOf, type GlobalOptions } from './context.js';
import { formatBytes, jobSummary, printJson, progressBar, table } from './output.js';
import { executable, retainUntil, seconds } from './arguments.js';
import { renderVmBackup } from './vm-backup-output.js';

/** Exit status of a job that completed with warnings (as `coffre backup`). */
const EXIT_WARNINGS = 4;

const collect = (value: string, previous: string[] = []) => [...previous, value];

function nonNegativeInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${what} must be a whole number`);
    return n;
  };
}

function blockSize(v: string): number {
  const m = /^(\d+)([KM])(?:i?B)?$/i.exec(v);
  const n = m ? Number(m[1]) * (m[2]!.toUpperCase() === 'K' ? 1024 : 1024 * 1024) : NaN;
  if (!Number.isInteger(n) || n < MIN_BLOCK || n > MAX_BLOCK || (n & (n - 1)) !== 0) {
    throw new InvalidArgumentError(`give a power of two from 64K to 16M, e.g. 1M`);
  }
  return n;
}

/**
 * Applies a VM's policy in the vault when the CLI holds an administrator's token; an agent's
 * key may not. Returns whether it is applied, and why not.
 */
async function tryAssign(g: GlobalOptions, policy: string, item: string): Promise<{ assigned: boolean; why?: string }> {
  let admin: VaultClient;
  try {
    admin = await adminClient(g);
  } catch (e) {
    if (e instanceof CoffreError && e.code === 'Unauthorized') return { assigned: false, why: 'no administrator token' };
    throw e;
  }
  try {
    await admin.assignPolicy(policy, item);
    return { assigned: true };
  } catch (e) {
    if (!(e instanceof CoffreError)) throw e;
    if (e.code === 'Forbidden' || e.code === 'Unauthorized') return { assigned: false, why: 'assigning a policy needs an administrator token (--token or COFFRE_TOKEN); this machine\'s agent key may not' };
    if (e.code === 'ItemNotFound') return { assigned: false, why: 'the vault knows the VM after its first backup' };
    throw e;
  }
}

/** The VM engine, loaded by the vm commands only: the other commands start faster without it. */
const vmEngine = () => import('../agent/vm/engine.js');

function policyNote(c: VmConfig, why?: string): string {
  if (!c.policy) return 'policy: the vault\'s DefaultPolicy (first backup creates the item)';
  if (c.policyAssigned) return `policy: ${c.policy}`;
  return `policy: ${c.policy}, recorded on this machine only (${why ?? 'not yet applied'}); apply it with \`coffre policy assign ${c.policy} --item ${c.name}\` as an administrator`;
}

export function registerVmCommands(program: Command, g: () => GlobalOptions): Command {
  const vm = program.command('vm').description('whole-VM backup: disk images in parallel, changed blocks only, instant restore, file recovery');
  // Every vm command first removes the instant-restore snapshots whose window has passed.
  // Only the snapshot store: a backup then loads what it needs, not the restore and file-recovery code.
  vm.hook('preAction', async () => { await (await import('../agent/vm/snapshot-store.js')).sweepSnapshots(agentDirOf(g()), systemClock); });

  vm.command('protect <name>')
    .description('protect a VM: its disks (raw, fixed VHD or qcow2 images, block devices, or a running QEMU\'s disks with --qmp), scripts and policy')
    .option('--disk <path>', 'a disk of the VM (repeatable, in the VM\'s order)', collect, [])
    .option('--qmp <socket>', 'the running VM\'s QEMU monitor (QMP unix socket): its disks are found and read through QEMU, only changed blocks')
    .option('--node <name>', 'with --qmp: back up this QEMU block node (repeatable; default: every disk of the VM)', collect, [])
    .option('--nbd-socket <socket>', 'with --qmp: the unix socket of an NBD server the VM\'s QEMU already runs (default: Coffre starts one for each backup)')
    .option('--guest-agent <socket>', 'the QEMU guest agent\'s socket: freeze the guest\'s file systems during the snapshot (filesystem consistency)')
    .option('--pre-script <file>', 'run before the snapshot to quiesce the application (exit 0 = quiesced)')
    .option('--post-script <file>', 'run after the snapshot to resume the application (always runs once the pre-script ran)')
    .option('--freeze <path>', 'fsfreeze this mounted file system during the snapshot (file-system consistency)')
    .option('--script-timeout <seconds>', `limit for each script (default ${DEFAULT_SCRIPT_TIMEOUT_SECONDS})`, seconds)
    .option('--policy <name>', 'backup policy of the vault (schedule, retention, instant-restore days)')
    .option('--block-size <size>', 'fixed block size, a power of two from 64K to 16M (default 1M)', blockSize)
    .option('--snapshot-dir <dir>', 'where snapshots are kept (default: the agent folder); on the disks\' file system, clones are reflinks')
    .option('--json', 'print the settings as JSON')
    .action(async (name: string, o: { disk: string[]; qmp?: string; node: string[]; nbdSocket?: string; guestAgent?: string; preScript?: string; postScript?: string; freeze?: string; scriptTimeout?: number; policy?: string; blockSize?: number; snapshotDir?: string; json?: boolean }) => {
      const { checkVmName, probeDisk, defaultSnapshotRoot, loadVmConfig, saveVmConfig, discoverQemuDisks } = await vmEngine();
      checkVmName(name);
      const agentDir = agentDirOf(g());
      if (!o.qmp && o.disk.length === 0) throw new CoffreError('InvalidArgument', 'give the VM\'s disks with --disk, or its running QEMU with --qmp SOCKET');
      if (o.qmp && o.disk.length) throw new CoffreError('InvalidArgument', 'with --qmp the disks are found in QEMU: give --node NAME to choose them, not --disk');
      if (!o.qmp && (o.node.length || o.nbdSocket)) throw new CoffreError('InvalidArgument', '--node and --nbd-socket go with --qmp SOCKET');
      const qmp = o.qmp ? resolve(o.qmp) : undefined;
      const probes = qmp
        ? (await discoverQemuDisks(qmp, o.node)).map((d) => ({ path: d.file, node: d.node, format: d.format, dataSize: d.size }))
        : (await Promise.all(o.disk.map((d) => probeDisk(d)))).map((p) => ({ path: p.path, node: undefined, format: p.format, dataSize: p.dataSize }));
      if (probes.length > 64) throw new CoffreError('InvalidArgument', 'a VM has at most 64 disks');
      if (new Set(probes.map((p) => p.node ?? p.path)).size !== probes.length) throw new CoffreError('InvalidArgument', 'the same disk is given twice');
      const preScript = o.preScript ? await executable(o.preScript, '--pre-script') : undefined;
      const postScript = o.postScript ? await executable(o.postScript, '--post-script') : undefined;
      const snapshotDir = o.snapshotDir ? resolve(o.snapshotDir) : undefined;
      let freezePath: string | undefined;
      if (o.freeze) {
        freezePath = resolve(o.freeze);
        const s = await stat(freezePath).catch(() => null);
        if (!s?.isDirectory()) throw new CoffreError('InvalidArgument', `--freeze ${o.freeze} must be the folder a file system is mounted on`);
        const root = snapshotDir ?? defaultSnapshotRoot(agentDir);
        await mkdir(root, { recursive: true, mode: 0o700 });
        if ((await stat(root)).dev === s.dev) {
          throw new CoffreError('InvalidArgument', `--freeze ${o.freeze} is the file system snapshots are written to (${root}); freezing it would block the backup: give --snapshot-dir on another file system`);
        }
      }
      const { client } = await agentContext(g());
      if (o.policy) await client.showPolicy(o.policy); // PolicyNotFound before anything is saved
      const previous = await loadVmConfig(agentDir, name);
      const now = new Date().toISOString();
      const config: VmConfig = {
        version: 1, name, disks: probes.map((p) => ({ path: p.path, ...(p.node ? { node: p.node } : {}) })),
        ...(qmp ? { qmp } : {}), ...(o.nbdSocket ? { nbdSocket: resolve(o.nbdSocket) } : {}), ...(o.guestAgent ? { guestAgent: resolve(o.guestAgent) } : {}),
        ...(preScript ? { preScript } : {}), ...(postScript ? { postScript } : {}), ...(freezePath ? { freezePath } : {}),
        scriptTimeoutSeconds: o.scriptTimeout ?? previous?.scriptTimeoutSeconds ?? DEFAULT_SCRIPT_TIMEOUT_SECONDS,
        blockSize: o.blockSize ?? previous?.blockSize ?? DEFAULT_BLOCK_SIZE,
        ...(o.policy ? { policy: o.policy } : {}), policyAssigned: false,
        ...(snapshotDir ? { snapshotDir } : {}),
        createdAt: previous?.createdAt ?? now, updatedAt: now,
      };
      let why: string | undefined;
      if (o.policy) {
        const r = await tryAssign(g(), o.policy, name);
        config.policyAssigned = r.assigned;
        why = r.why;
      }
      await saveVmConfig(agentDir, config);
      if (o.json) { printJson({ ...config, policyNote: why ?? null }); return; }
      const lines = [`protected VM ${name}: ${probes.length} disk(s)${qmp ? ` of the QEMU at ${qmp} (changed blocks tracked by dirty bitmaps)` : ''}`];
      probes.forEach((p, i) => lines.push(`  disk ${i}: ${p.path} (${[p.node ? `node ${p.node}` : '', p.format, formatBytes(p.dataSize)].filter(Boolean).join(', ')})`));
      const freezing = [freezePath ? `fsfreeze ${freezePath}` : '', config.guestAgent ? `guest agent ${config.guestAgent}` : ''].filter(Boolean).join(' and ');
      lines.push(`  consistency: ${preScript ? 'app (pre/post-scripts)' : freezing ? `filesystem (${freezing})` : 'crash (no scripts, no freeze)'}; script timeout ${config.scriptTimeoutSeconds} s`);
      lines.push(`  ${policyNote(config, why)}`);
      lines.push(`  back it up with \`coffre vm backup ${name}\``);
      process.stdout.write(lines.join('\n') + '\n');
    });

  vm.command('list')
    .description('list the VMs protected on this machine')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const { listVmConfigs } = await vmEngine();
      const all = await listVmConfigs(agentDirOf(g()));
      if (o.json) { printJson(all); return; }
      process.stdout.write(all.length ? table(['name', 'disks', 'scripts', 'freeze', 'policy'], all.map((c) => [
        c.name, (c.qmp ? [`qmp ${c.qmp}`] : []).concat(c.disks.map((d) => (d.node ? `${d.node}: ${d.path}` : d.path))).join('\n'), [c.preScript ? 'pre' : '', c.postScript ? 'post' : ''].filter(Boolean).join('+') || '-',
        [c.freezePath, c.guestAgent ? 'guest agent' : ''].filter(Boolean).join(', ') || '-', c.policy ? `${c.policy}${c.policyAssigned ? '' : ' (local)'}` : 'DefaultPolicy',
      ])) + '\n' : 'no VM is protected on this machine; run `coffre vm protect NAME --disk IMAGE`\n');
    });

  vm.command('backup <name>')
    .description('back up a protected VM now: snapshot (with its scripts), then changed blocks of every disk in parallel')
    .option('--retain-until <date>', 'keep this on-demand point until this day (YYYY-MM-DD; default: 30 days)', retainUntil)
    .option('--script-timeout <seconds>', 'limit for each script, this run only', seconds)
    .option('--json', 'print the job as JSON')
    .action(async (name: string, o: { retainUntil?: string; scriptTimeout?: number; json?: boolean }) => {
      const [{ requireVmConfig, saveVmConfig }, { backupVm }] = await Promise.all([import('../agent/vm/config.js'), import('../agent/vm/vm-backup.js')]);
      const agentDir = agentDirOf(g());
      let config = await requireVmConfig(agentDir, name);
      const { state, client } = await agentContext(g());
      const bar = progressBar(!o.json, `vm ${name}`);
      let result;
      try {
        result = await backupVm({
          client, containerId: state.containerId, keys: state.keySet, agentDir, vaultId: state.vaultId, config, kind: 'OnDemand',
          ...(o.retainUntil ? { retainUntil: o.retainUntil } : {}), ...(o.scriptTimeout ? { scriptTimeoutSeconds: o.scriptTimeout } : {}),
          onProgress: (c) => bar.update(c),
        });
      } finally {
        bar.stop();
      }
      let why: string | undefined;
      if (config.policy && !config.policyAssigned) {
        const r = await tryAssign(g(), config.policy, name);
        why = r.why;
        if (r.assigned) {
          config = { ...config, policyAssigned: true, updatedAt: new Date().toISOString() };
          await saveVmConfig(agentDir, config);
        }
      }
      const job = await client.getJob(result.jobId);
      const out = renderVmBackup(job, result, o.json ?? false, config.policy && !config.policyAssigned ? policyNote(config, why) : undefined);
      process.stdout.write(out.stdout);
      if (out.exitCode) process.exitCode = out.exitCode;
    });

  vm.command('restore <point>')
    .description('restore the disks of a VM point as raw images (sparse), fixed VHDs or qcow2 images; from the instant-restore snapshot while it exists')
    .option('--target <dir>', 'folder to write the disks into; without it, over the original disks (needs --replace)')
    .addOption(new Option('--format <format>', 'raw image, fixed VHD or qcow2 (default: as each disk was)').choices(['raw', 'vhd', 'qcow2']))
    .option('--disk <n>', 'restore only this disk (repeatable; 0 is the first)', (v: string, prev: number[] = []) => [...prev, nonNegativeInt('--disk')(v)], [] as number[])
    .option('--replace', 'overwrite existing files, or the live disks themselves (stop the VM first)')
    .addOption(new Option('--source <source>', 'where blocks come from').choices(['auto', 'snapshot', 'vault']).default('auto'))
    .addOption(new Option('--from <region>', 'secondary: cross-region restore from the paired region\'s copy (GRS vaults with cross-region restore)').choices(['primary', 'secondary']))
    .option('--json', 'print the job as JSON')
    .action(async (point: string, o: { target?: string; format?: RestoreFormat; disk: number[]; replace?: boolean; source: 'auto' | 'snapshot' | 'vault'; from?: 'primary' | 'secondary'; json?: boolean }) => {
      const { restoreVm } = await vmEngine();
      if (!o.target && !o.replace) throw new CoffreError('InvalidArgument', 'give --target DIR (restoring over the live disks needs --replace)');
      const { state, client } = await agentContext(g());
      const bar = progressBar(!o.json, 'vm restore');
      let result;
      try {
        result = await restoreVm({
          client, keys: state.keySet, agentDir: agentDirOf(g()), pointId: point, ...(o.target ? { target: o.target } : {}),
          ...(o.format ? { format: o.format } : {}), disks: o.disk, replace: o.replace ?? false, source: o.source,
          ...(o.from === 'secondary' ? { from: 'secondary' as const } : {}), onProgress: (c) => bar.update(c),
        });
      } finally {
        bar.stop();
      }
      const job = result.job!;
      if (o.json) printJson(job);
      else {
        const lines = [jobSummary(job), `  restored point ${result.point.id} of ${result.point.item} from the ${result.source === 'snapshot+vault' ? 'snapshot and the vault' : result.source}`];
        for (const d of result.disks) lines.push(`  disk ${d.index} -> ${d.file} (${d.format}, ${formatBytes(d.size)}, from ${d.source})`);
        process.stdout.write(lines.join('\n') + '\n');
      }
      if (job.status === 'Failed') {
        process.stderr.write(`coffre: restore incomplete: ${result.errors.length} disk(s) could not be restored [${result.errors[0]?.code ?? 'Failed'}]\n`);
        process.exitCode = 1;
      } else if (job.status === 'CompletedWithWarnings') process.exitCode = EXIT_WARNINGS;
    });

  vm.command('files <point>')
    .description('list (--list) or extract (--target) files and folders of an ext2/3/4 file system inside a disk of a VM point')
    .requiredOption('--path <path>', 'absolute path inside the disk\'s file system, e.g. /etc/nginx')
    .option('--disk <n>', 'the disk (0 is the first)', nonNegativeInt('--disk'), 0)
    .option('--partition <n>', 'partition of a partitioned disk (1 is the first)', nonNegativeInt('--partition'))
    .option('--target <dir>', 'extract into this folder (as DIR/<name>)')
    .option('--list', 'list the folder (or describe the file) instead of extracting')
    .addOption(new Option('--source <source>', 'where the disk image comes from').choices(['auto', 'snapshot', 'vault']).default('auto'))
    .option('--json', 'print JSON')
    .action(async (point: string, o: { path: string; disk: number; partition?: number; target?: string; list?: boolean; source: 'auto' | 'snapshot' | 'vault'; json?: boolean }) => {
      const { listFiles, extractFiles } = await vmEngine();
      if (!o.list === !o.target) throw new CoffreError('InvalidArgument', 'give either --list or --target DIR');
      const { state, client } = await agentContext(g());
      const base = { client, keys: state.keySet, agentDir: agentDirOf(g()), pointId: point, disk: o.disk, path: o.path, source: o.source, ...(o.partition ? { partition: o.partition } : {}) };
      if (o.list) {
        const r = await listFiles(base);
        if (o.json) { printJson(r); return; }
        process.stdout.write(table(['mode', 'uid', 'gid', 'size', 'name'], r.entries.map((e) => [
          `${e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' ? '-' : '?'}${e.mode.toString(8).padStart(4, '0')}`, e.uid, e.gid, e.size === null ? '' : e.size, e.type === 'dir' ? `${e.name}/` : e.name,
        ])) + `\n  ${r.entries.length} entries in ${o.path} (from the ${r.source})\n`);
        return;
      }
      const r = await extractFiles({ ...base, target: o.target! });
      const job = await client.getJob(r.jobId);
      if (o.json) printJson({ ...r, job });
      else process.stdout.write(`${jobSummary(job)}\n  extracted ${o.path} from disk ${o.disk} of point ${point} (from the ${r.source}) to ${r.written}: ${r.files} file(s), ${r.dirs} folder(s), ${formatBytes(r.bytes)}\n`);
      if (job.status === 'CompletedWithWarnings') process.exitCode = EXIT_WARNINGS;
    });

  vm.command('snapshots [name]')
    .description('instant-restore snapshots held on this machine, with their expiry')
    .option('--json', 'print JSON')
    .action(async (name: string | undefined, o: { json?: boolean }) => {
      const { checkVmName, listSnapshots } = await vmEngine();
      if (name) checkVmName(name);
      const all = await listSnapshots(agentDirOf(g()), name);
      if (o.json) { printJson(all); return; }
      process.stdout.write(all.length ? table(['vm', 'point', 'created', 'expires', 'clone', 'disks', 'space used'], all.map((s) => [
        s.item, s.pointId, s.createdAt.replace('T', ' ').slice(0, 19), s.expiresAt.replace('T', ' ').slice(0, 19), s.method, s.disks.length, formatBytes(s.bytesOnDisk),
      ])) + '\n' : `no instant-restore snapshot${name ? ` of ${name}` : ''} on this machine\n`);
    });
  return vm;
}
