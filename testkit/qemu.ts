/**
 * Real QEMU for the VM tests: qemu-storage-daemon serving qcow2 disks (QEMU's block layer
 * without a guest: persistent dirty bitmaps, block jobs and NBD exports work as in a VM),
 * started with --daemonize so that readiness is its parent's exit, not a poll.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface StorageDaemon {
  qmp: string;
  /** The daemon's NBD server (exports `disk0`, `disk1`, ... writable), if asked for. */
  nbd: string | null;
  pid: number;
  /** Clean shutdown (QMP quit): persistent bitmaps are written into the images. */
  stop(): Promise<void>;
  /** kill -9: like a host crash; bitmaps not yet written are lost. */
  kill(): Promise<void>;
}

export interface DaemonDisk { file: string; node: string; format?: 'qcow2' | 'raw' }

/** Whether a process runs (a zombie waiting for init to reap it does not). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    // ESRCH: the process is gone.
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    // Gone between the two looks.
    return false;
  }
}

async function gone(pid: number): Promise<void> {
  // The daemon is not our child (it daemonized): no exit event to wait on; it ends within ms.
  for (let i = 0; i < 1000 && alive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  if (alive(pid)) throw new Error(`qemu-storage-daemon ${pid} did not exit`);
}

export async function startStorageDaemon(dir: string, disks: DaemonDisk[], opts: { nbd?: boolean; tag?: string } = {}): Promise<StorageDaemon> {
  const tag = opts.tag ?? 'qsd';
  const qmp = join(dir, `${tag}.qmp`);
  const nbd = opts.nbd ? join(dir, `${tag}.nbd`) : null;
  const pidFile = join(dir, `${tag}.pid`);
  await rm(qmp, { force: true });
  if (nbd) await rm(nbd, { force: true });
  const args: string[] = [];
  for (const d of disks) {
    args.push('--blockdev', `driver=file,filename=${d.file},node-name=${d.node}-file`);
    args.push('--blockdev', `driver=${d.format ?? 'qcow2'},file=${d.node}-file,node-name=${d.node}`);
  }
  args.push('--chardev', `socket,path=${qmp},server=on,wait=off,id=qmp0`, '--monitor', 'chardev=qmp0');
  if (nbd) {
    args.push('--nbd-server', `addr.type=unix,addr.path=${nbd}`);
    for (const d of disks) args.push('--export', `type=nbd,id=export-${d.node},node-name=${d.node},name=${d.node},writable=on`);
  }
  args.push('--daemonize', '--pidfile', pidFile);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`qemu-storage-daemon exited with ${code}: ${err}`))));
  });
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  return {
    qmp, nbd, pid,
    async stop() {
      if (!alive(pid)) return;
      process.kill(pid, 'SIGTERM'); // qemu-storage-daemon shuts down cleanly on SIGTERM, storing persistent bitmaps
      await gone(pid);
    },
    async kill() {
      if (!alive(pid)) return;
      process.kill(pid, 'SIGKILL');
      await gone(pid);
    },
  };
}

export async function qemuImg(args: string[]): Promise<string> {
  return (await run('qemu-img', args, { maxBuffer: 64 * 1024 * 1024 })).stdout;
}

/** `qemu-img compare` of two images (any formats); identical or not, with its words. */
export async function imagesIdentical(a: string, aFormat: string, b: string, bFormat: string): Promise<{ same: boolean; output: string }> {
  try {
    const r = await run('qemu-img', ['compare', '-U', '-f', aFormat, '-F', bFormat, a, b]);
    return { same: true, output: r.stdout };
  } catch (e) {
    return { same: false, output: `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}` };
  }
}
