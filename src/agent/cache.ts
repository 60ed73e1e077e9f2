/**
 * The local metadata cache: for each file of the last backup, its stat signature and chunk
 * list. An unchanged file (same size, mtime, ctime, inode: EntryStat.key) costs one `stat`, no read.
 * The cache is only a hint: a chunk it names is reused only if the vault still has it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { ChunkRef } from '../core/manifest.js';
import { writeFileAtomic } from './state.js';

export interface MetadataCache { files: Record<string, { stat: string; chunks: ChunkRef[] }> }

function cacheFile(agentDir: string, vaultId: string, item: string): string {
  const name = createHash('sha256').update(`${vaultId}\0${item}`).digest('hex').slice(0, 24);
  return join(agentDir, 'cache', `${name}.json`);
}

export async function loadCache(agentDir: string, vaultId: string, item: string): Promise<MetadataCache> {
  try {
    const parsed = JSON.parse(await readFile(cacheFile(agentDir, vaultId, item), 'utf8')) as MetadataCache;
    return parsed && typeof parsed.files === 'object' ? parsed : { files: {} };
  } catch {
    // A missing or damaged cache only costs a full re-read; the backup stays correct.
    return { files: {} };
  }
}

export async function saveCache(agentDir: string, vaultId: string, item: string, cache: MetadataCache): Promise<void> {
  await writeFileAtomic(cacheFile(agentDir, vaultId, item), JSON.stringify(cache));
}
