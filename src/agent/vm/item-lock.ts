/**
 * One backup of a VM at a time on this machine: a lock file per VM in the agent folder,
 * created exclusively and holding the owner's pid. A lock whose process is gone (a killed
 * agent) is taken over; a live one is refused with a clear error.
 */
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import { vmRoot } from './config.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else; ESRCH: it is gone.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Locks this process holds. The lock file holds the pid, so it cannot tell two backups of one
 * process apart: a resident agent (`coffre agent run`, serving scheduled runs and `coffre vm
 * backup` through its control socket) must refuse its own second backup of a VM here.
 */
const heldHere = new Set<string>();

/** Takes the VM's lock; resolves with its release. */
export async function lockItem(agentDir: string, item: string): Promise<() => Promise<void>> {
  const dir = join(vmRoot(agentDir), 'locks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${item}.lock`);
  if (heldHere.has(file)) throw new CoffreError('ItemBusy', `a backup of VM ${item} is already running (process ${process.pid}); wait for it to end`);
  // Taken before the first await: a second call of this process meanwhile is refused above.
  heldHere.add(file);
  try {
    return await takeFile(file, item);
  } catch (e) {
    heldHere.delete(file);
    throw e;
  }
}

async function takeFile(file: string, item: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        // The file first: a lock taken meanwhile by this process must not lose its file to this rm.
        await rm(file, { force: true });
        heldHere.delete(file);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new CoffreError('ItemBusy', `a backup of VM ${item} is already running (process ${pid}); wait for it to end`);
      }
      // The owner is gone (killed), or was an earlier life of this pid: its lock is stale.
      await rm(file, { force: true });
    }
  }
  throw new CoffreError('ItemBusy', `cannot take the lock of VM ${item} (${file}); another backup is starting`);
}
