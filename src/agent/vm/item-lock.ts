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

/** Takes the VM's lock; resolves with its release. */
export async function lockItem(agentDir: string, item: string): Promise<() => Promise<void>> {
  const dir = join(vmRoot(agentDir), 'locks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${item}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => { await rm(file, { force: true }); };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new CoffreError('ItemBusy', `a backup of VM ${item} is already running (process ${pid}); wait for it to end`);
      }
      // The owner is gone (killed): its lock is stale.
      await rm(file, { force: true });
    }
  }
  throw new CoffreError('ItemBusy', `cannot take the lock of VM ${item} (${file}); another backup is starting`);
}
