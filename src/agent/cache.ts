/**
 * The local metadata cache: for each file of the last backup, its stat signature and chunk
 * list. An unchanged file (same size, mtime, ctime, inode: EntryStat.key) costs one `stat`, no read.
 * The cache is only a hint: a chunk it names is reused only if the vault still has it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { ChunkRef, Xattr } from '../core/manifest.js';
import { writeFileAtomic } from './state.js';

/** Per file: its stat key, its chunks and its extended attributes (an attribute change moves the ctime, so the key). */
export interface MetadataCache { version?: number; files: Record<string, { stat: string; chunks: ChunkRef[]; xattrs?: Xattr[] }> }

/**
 * Version 2 keeps extended attributes. A cache of an earlier version is dropped: reusing its
 * entries would back up unchanged files without the attributes it never recorded.
 */
export const CACHE_VERSION = 2;

function cacheFile(agentDir: string, vaultId: string, item: string): string {
  const name = createHash('sha256').update(`${vaultId}\0${item}`).digest('hex').slice(0, 24);
  return join(agentDir, 'cache', `${name}.json`);
}

export async function loadCache(agentDir: string, vaultId: string, item: string): Promise<MetadataCache> {
  try {
    const parsed = JSON.parse(await readFile(cacheFile(agentDir, vaultId, item), 'utf8')) as MetadataCache;
    return parsed && parsed.version === CACHE_VERSION && typeof parsed.files === 'object' ? parsed : { files: {} };
  } catch {
    // A missing or damaged cache only costs a full re-read; the backup stays correct.
    return { files: {} };
  }
}

export async function saveCache(agentDir: string, vaultId: string, item: string, cache: MetadataCache): Promise<void> {
  await writeFileAtomic(cacheFile(agentDir, vaultId, item), JSON.stringify({ ...cache, version: CACHE_VERSION }));
}
