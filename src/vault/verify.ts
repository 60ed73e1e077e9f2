/**
 * Scrubbing without keys: every stored blob is re-read and checked against the checksum the
 * vault recorded when its pack arrived; every point's manifest and reference list must exist,
 * and everything a point reaches (through its tree pages) must be indexed.
 */
import type { JobInfo, JobProblem } from '../core/api.js';
import { storedChecksum } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import type { Principal } from './access.js';
import { manifestKey, packKey, refsKey, type DataContext } from './data.js';
import { createJob, describeJob, finishJob } from './jobs.js';
import { findItem, resolveVault } from './vaults.js';
import { ReferenceGraph } from './references.js';

/** Points named per damaged chunk: enough to act on, bounded for chunks every point shares. */
const POINTS_NAMED = 10;

export async function verify(ctx: DataContext, p: Principal, filter: { vault?: string; item?: string }): Promise<JobInfo> {
  const vault = await resolveVault(ctx, p, filter.vault);
  const item = filter.item ? await findItem(ctx, p, filter.item, vault.id) : null;
  let pq = ctx.db.selectFrom('points').select(['id', 'container_id']).where('vault_id', '=', vault.id);
  if (item) pq = pq.where('item_id', '=', item.id);
  if (p.kind === 'agent') pq = pq.where('container_id', '=', p.containerId);
  const points = await pq.execute();
  const jobId = await createJob(ctx, { vaultId: vault.id, itemId: item?.id ?? null, containerId: p.kind === 'agent' ? p.containerId : null, operation: 'Verify' });
  const errors: JobProblem[] = [];
  let bytes = 0;
  // blob id → (some of the) points that need it, so a damaged blob names the points it breaks.
  const needed = new Map<string, Set<string>>();
  const containers = new Set<string>();
  const graphs = new Map<string, ReferenceGraph>();
  for (const pt of points) {
    containers.add(pt.container_id);
    if (!(await ctx.store.stat(manifestKey(pt.id)))) errors.push({ code: 'ObjectMissing', message: `point ${pt.id}: its manifest is missing from the store` });
    let refs: Buffer;
    try {
      refs = await ctx.store.get(refsKey(pt.id));
    } catch (e) {
      if (!(e instanceof CoffreError)) throw e;
      errors.push({ code: 'ObjectMissing', message: `point ${pt.id}: its reference list is missing from the store` });
      continue;
    }
    let graph = graphs.get(pt.container_id);
    if (!graph) graphs.set(pt.container_id, (graph = await ReferenceGraph.load(ctx.db, pt.container_id)));
    for (const id of graph.closure([refs])) {
      const key = `${pt.container_id}:${id}`;
      let set = needed.get(key);
      if (!set) needed.set(key, (set = new Set()));
      if (set.size < POINTS_NAMED) set.add(pt.id);
    }
  }
  let checked = 0;
  for (const containerId of containers) {
    const packs = await ctx.db.selectFrom('packs').select(['id']).where('container_id', '=', containerId).execute();
    for (const pack of packs) {
      const blobs = await ctx.db.selectFrom('blobs').select(['id', 'offset', 'length', 'checksum']).where('pack_id', '=', pack.id).execute();
      let data: Buffer;
      try {
        data = await ctx.store.get(packKey(containerId, pack.id));
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
        const affected = new Set<string>();
        for (const b of blobs) for (const pt of needed.get(`${containerId}:${b.id}`) ?? []) affected.add(pt);
        errors.push({ code: 'ObjectMissing', message: `pack ${pack.id} is missing from the store${affected.size ? `; points affected: ${[...affected].join(', ')}` : ' (no live point uses it)'}` });
        continue;
      }
      bytes += data.length;
      for (const b of blobs) {
        const stored = data.subarray(Number(b.offset), Number(b.offset) + b.length);
        checked++;
        if (stored.length !== b.length || storedChecksum(stored).toString('hex') !== b.checksum) {
          const affected = [...(needed.get(`${containerId}:${b.id}`) ?? [])];
          errors.push({ code: 'ChecksumMismatch', message: `pack ${pack.id}: chunk ${b.id.slice(0, 16)} is damaged${affected.length ? `; points affected: ${affected.join(', ')}` : ' (no live point uses it)'}` });
        }
      }
    }
    // Chunks a point needs must be indexed at all.
    for (const [key, pts] of needed) {
      if (!key.startsWith(containerId + ':')) continue;
      const id = key.slice(containerId.length + 1);
      const row = await ctx.db.selectFrom('blobs').select('id').where('container_id', '=', containerId).where('id', '=', id).executeTakeFirst();
      if (!row) errors.push({ code: 'ChunkMissing', message: `chunk ${id.slice(0, 16)} is missing; points affected: ${[...pts].join(', ')}` });
    }
  }
  await finishJob(ctx, jobId, {
    status: errors.length ? 'Failed' : 'Completed', errors,
    counters: { bytesScanned: bytes, filesScanned: checked },
    details: { points: points.length, chunksChecked: checked },
  });
  return describeJob(ctx, jobId);
}
