/**
 * The few `qemu-img` operations the VM agent needs on image files: create a qcow2 (a restore
 * target, a temporary fleecing overlay), and create, list and delete internal snapshots of a
 * qcow2 image that no running QEMU holds (with QMP, QEMU does it: see live-disks.ts).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CoffreError } from '../../core/errors.js';
import { runCommand } from '../scripts.js';

const exec = promisify(execFile);

const TIMEOUT_MS = 10 * 60_000;

async function qemuImg(args: string[], what: string): Promise<string> {
  const r = await runCommand('qemu-img', args, { timeoutMs: TIMEOUT_MS });
  if (r.exitCode === null && !r.timedOut && !r.signal) throw new CoffreError('HypervisorError', `cannot run qemu-img (${r.output}); install qemu-utils`);
  if (!r.ok) {
    if (/lock/i.test(r.output)) throw new CoffreError('InvalidArgument', `${what}: the image is in use by a running QEMU (its lock is held); protect the VM with --qmp SOCKET so that QEMU takes the snapshot, or stop the VM`);
    throw new CoffreError('HypervisorError', `${what}: ${r.output || `qemu-img exited with ${r.exitCode}`}`);
  }
  return r.output;
}

export async function createQcow2(file: string, size: number): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', file, String(size)], `cannot create ${file}`);
}

export async function createInternalSnapshot(image: string, name: string): Promise<void> {
  await qemuImg(['snapshot', '-q', '-c', name, image], `cannot take an internal snapshot of ${image}`);
}

export async function deleteInternalSnapshot(image: string, name: string): Promise<void> {
  await qemuImg(['snapshot', '-q', '-d', name, image], `cannot delete internal snapshot ${name} of ${image}`);
}

/** Names of the internal snapshots of a qcow2 image (read without its lock: the list is only looked at). */
export async function listInternalSnapshots(image: string): Promise<string[]> {
  let out: string;
  try {
    out = (await exec('qemu-img', ['info', '-U', '--output=json', image], { maxBuffer: 16 * 1024 * 1024, timeout: TIMEOUT_MS })).stdout;
  } catch (e) {
    throw new CoffreError('HypervisorError', `cannot read ${image}: ${((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
  }
  const info = JSON.parse(out) as { snapshots?: { name: string }[] };
  return (info.snapshots ?? []).map((s) => s.name);
}
