/**
 * Serving a disk image file over NBD with `qemu-nbd`, for what QEMU's block layer reads and
 * writes better than Coffre would: the guest data of a qcow2 file (or of an internal snapshot
 * inside it) and writing a restored qcow2. One qemu-nbd process serves one image for a whole
 * backup or restore; Coffre's NBD client does the reading and writing.
 *
 * qemu-nbd runs with `--fork`: its parent exits once the socket listens, so readiness is an
 * event, not a poll. The server exits by itself when Coffre's connection ends; `close()`
 * also ends it (by its pid file) when no connection was ever made.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import { NbdClient } from './nbd-client.js';
import { BASE_ALLOCATION } from './nbd-protocol.js';

export interface ServeOptions {
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  /** Export this internal snapshot of a qcow2 file (read-only). */
  snapshot?: string;
  /**
   * Open without taking QEMU's image lock: for reading an internal snapshot of a disk a
   * running QEMU holds (its clusters do not change while the snapshot exists).
   */
  noLock?: boolean;
  /** Connections served at once (default 1). */
  clients?: number;
}

export interface ServedImage {
  socket: string;
  /** Connects Coffre's NBD client (with `base:allocation` unless asked otherwise). */
  connect(metaContexts?: string[]): Promise<NbdClient>;
  close(): Promise<void>;
}

/** Why qemu-nbd could not open an image: the locking error means a running QEMU holds it. */
function explain(file: string, output: string): CoffreError {
  if (/lock/i.test(output)) {
    return new CoffreError('InvalidArgument', `${file} is in use by a running QEMU (its image lock is held): protect the VM with --qmp SOCKET so that backups go through QEMU, or stop the VM`);
  }
  return new CoffreError('HypervisorError', `qemu-nbd cannot serve ${file}: ${output.trim() || 'it exited with an error'}`);
}

/** Whether a process runs (a zombie, exited but not yet reaped by init, does not). */
async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    // ESRCH: gone.
    return false;
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/^\d+ \(.*\) Z/.test(stat);
}

/** Waits for a process that is not our child (qemu-nbd forked itself): no exit event exists, so its pid is watched. */
async function exited(pid: number): Promise<void> {
  for (let waited = 0; await alive(pid); waited += 5) {
    if (waited > 30_000) throw new CoffreError('HypervisorError', `qemu-nbd (process ${pid}) did not exit`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function serveImage(file: string, o: ServeOptions): Promise<ServedImage> {
  // Unix socket paths are limited to 108 bytes: a short private folder under the temp dir.
  const dir = await mkdtemp(join(tmpdir(), 'coffre-nbd-'));
  const socket = join(dir, 's');
  const pidFile = join(dir, 'pid');
  const image = o.noLock
    ? ['--image-opts', `driver=${o.format},file.driver=file,file.filename=${file.replace(/,/g, ',,')},file.locking=off`]
    : ['--format', o.format, file];
  const args = [
    '--fork', '--pid-file', pidFile, '--socket', socket, '--shared', String(o.clients ?? 1), '--cache', 'writeback',
    ...(o.readOnly || o.snapshot ? ['--read-only'] : []), ...(o.snapshot ? ['--load-snapshot', `snapshot.name=${o.snapshot}`] : []),
    ...image,
  ];
  let output = '';
  const exit = await new Promise<number | null>((resolve) => {
    const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-2000); });
    child.on('error', (e) => { output = `${e.message} (install qemu-utils)`; resolve(null); });
    // 'exit', not 'close': the forked server keeps the inherited stderr pipe open.
    child.on('exit', (code) => resolve(code));
  });
  let pid: number | null = null;
  const close = async () => {
    if (pid === null) pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim()) || null;
    if (pid !== null) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Already gone: it exits by itself when its one connection ends.
      }
      // Until it has exited it holds the image's lock: the image is not ours to hand back before.
      await exited(pid);
    }
    await rm(dir, { recursive: true, force: true });
  };
  if (exit !== 0) {
    await close();
    throw explain(file, output);
  }
  pid = Number((await readFile(pidFile, 'utf8')).trim()) || null;
  return {
    socket,
    connect: (metaContexts = [BASE_ALLOCATION]) => NbdClient.connect({ socket, export: '', metaContexts }),
    close,
  };
}
