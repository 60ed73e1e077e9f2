/**
 * Real file systems for tests: an image file, formatted (mkfs.btrfs from btrfs-progs, mkfs.ext4
 * from e2fsprogs, both installed by scripts/test-deps.sh) and loop-mounted in a temporary folder.
 * Needs root; `close` unmounts (which frees the loop device) and deletes the image.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface LoopFs { mnt: string; image: string; close(): Promise<void> }

export async function loopFs(dir: string, kind: 'btrfs' | 'ext4', sizeMiB: number): Promise<LoopFs> {
  const image = join(dir, `${kind}.img`);
  const mnt = join(dir, `${kind}-mnt`);
  const fh = await open(image, 'w');
  await fh.truncate(sizeMiB * 1024 * 1024);
  await fh.close();
  execFileSync(kind === 'btrfs' ? 'mkfs.btrfs' : 'mkfs.ext4', kind === 'btrfs' ? ['-q', image] : ['-q', '-F', image], { stdio: 'pipe' });
  await mkdir(mnt);
  execFileSync('mount', ['-o', 'loop', image, mnt], { stdio: 'pipe' });
  return {
    mnt, image,
    async close() {
      for (let i = 0; ; i++) {
        try {
          execFileSync('umount', [mnt], { stdio: 'pipe' });
          break;
        } catch (e) {
          // Busy for a moment after a killed process's files close; then give up loudly.
          if (i >= 20) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await rm(image, { force: true });
    },
  };
}

export function sh(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
