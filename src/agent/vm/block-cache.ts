/**
 * The block tables of a VM's last point, kept by the agent: the base the next backup
 * compares each block with (the agent's "checksums per block"). Losing it costs nothing but
 * the changed-block counter: what is sent is decided by the vault's chunk index.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ID_BYTES } from '../../core/crypto.js';
import { writeFileAtomic } from '../state.js';
import { vmRoot } from './config.js';
import { blockCount } from './disk-manifest.js';

export interface CachedDisk { path: string; dataSize: number; blockSize: number }
interface CacheState { version: 1; pointId: string; disks: CachedDisk[] }

const dirOf = (agentDir: string, vaultId: string, item: string) => join(vmRoot(agentDir), 'blocks', vaultId, item);

/** The previous table of each disk, or null where there is none with the same path and geometry; and the point they belong to. */
export async function loadPreviousBlocks(agentDir: string, vaultId: string, item: string, disks: CachedDisk[]): Promise<{ pointId: string | null; tables: (Buffer | null)[] }> {
  const dir = dirOf(agentDir, vaultId, item);
  let state: CacheState;
  try {
    state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as CacheState;
  } catch {
    // No cache yet, or a damaged one: every block counts as changed this time.
    return { pointId: null, tables: disks.map(() => null) };
  }
  const tables = await Promise.all(disks.map(async (d, i) => {
    const c = state.disks?.[i];
    if (!c || c.path !== d.path || c.dataSize !== d.dataSize || c.blockSize !== d.blockSize) return null;
    try {
      const table = await readFile(join(dir, `disk-${i}.bin`));
      return table.length === blockCount(d.dataSize, d.blockSize) * ID_BYTES ? table : null;
    } catch {
      // A missing table file: treated like no cache for this disk.
      return null;
    }
  }));
  return { pointId: typeof state.pointId === 'string' ? state.pointId : null, tables };
}

export async function savePreviousBlocks(agentDir: string, vaultId: string, item: string, pointId: string, disks: (CachedDisk & { blocks: Buffer })[]): Promise<void> {
  const dir = dirOf(agentDir, vaultId, item);
  // state.json is written last and names the point, so a half-written cache is never taken for a whole one.
  await rm(join(dir, 'state.json'), { force: true });
  for (const [i, d] of disks.entries()) await writeFileAtomic(join(dir, `disk-${i}.bin`), d.blocks);
  const state: CacheState = { version: 1, pointId, disks: disks.map(({ path, dataSize, blockSize }) => ({ path, dataSize, blockSize })) };
  await writeFileAtomic(join(dir, 'state.json'), JSON.stringify(state) + '\n');
}
