/**
 * Garbage collection: return the space of chunks no live point references.
 *
 * Safety rules, in the order they are applied:
 * 1. The live set is everything the reference lists of a container's points reach (through
 *    tree pages: src/vault/references.ts). If any point's list cannot be read, the container
 *    is left alone: we cannot know what is live.
 * 2. A container with a backup in progress is skipped. A backup learns which chunks exist
 *    *after* its job row is written, and index rows are deleted in a transaction that first
 *    checks no backup is running (under the container's lock, which a backup's job row is
 *    written under too: src/vault/jobs.ts) and that no point appeared since the live set was
 *    read: so a backup never relies on a chunk GC removes, whichever node serves either.
 * 3. Index rows go before store objects, and a rewritten pack is durable and indexed before
 *    the old one is deleted: a crash at any point leaves every live chunk readable, and at
 *    worst an orphan object that the next run removes.
 * 4. Objects the catalog does not know (an upload whose indexing never happened) are removed
 *    only once older than a grace period, so an upload in flight is never touched.
 */
import type { JobInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { lockKey } from '../catalog/engine.js';
import { newId } from '../core/ids.js';
import { PackWriter, packKind, readPack } from '../core/pack.js';
import type { Principal } from './access.js';
import { packKey, refsKey, type DataContext } from './data.js';
import { createJob, describeJob, finishJob } from './jobs.js';
import { resolveVault } from './vaults.js';
import { dropTrees, ReferenceGraph } from './references.js';
import type { ObjectStore } from '../store/object-store.js';

/** Packs with more than this share of dead bytes are rewritten. */
export const REWRITE_DEAD_SHARE = 0.5;
export const ORPHAN_GRACE_MS = 60 * 60 * 1000;
const BATCH = 400;

export interface GcStats {
  containers: number;
  containersSkipped: string[];
  blobsDeleted: number;
  packsDeleted: number;
  packsRewritten: number;
  orphansDeleted: number;
  bytesFreed: number;
}

async function liveSet(ctx: DataContext, store: ObjectStore, containerId: string): Promise<{ live: Set<string>; points: Set<string> } | null> {
  const points = await ctx.db.selectFrom('points').select('id').where('container_id', '=', containerId).execute();
  const lists: Buffer[] = [];
  for (const p of points) {
    try {
      lists.push(await store.get(refsKey(p.id)));
    } catch (e) {
      if (e instanceof CoffreError) return null;
      throw e;
    }
  }
  return { live: (await ReferenceGraph.load(ctx.db, containerId)).closure(lists), points: new Set(points.map((p) => p.id)) };
}

async function backupRunning(ctx: DataContext, containerId: string): Promise<boolean> {
  const row = await ctx.db.selectFrom('jobs').select('id').where('container_id', '=', containerId)
    .where('operation', '=', 'Backup').where('status', '=', 'InProgress').executeTakeFirst();
  return row !== undefined;
}

async function collectContainer(ctx: DataContext, v: { id: string; redundancy: string }, containerId: string, stats: GcStats): Promise<void> {
  const store = ctx.stores.forVault(v);
  if (await backupRunning(ctx, containerId)) { stats.containersSkipped.push(containerId); return; }
  const found = await liveSet(ctx, store, containerId);
  if (!found) { stats.containersSkipped.push(containerId); return; }
  const live = found.live;
  const blobs = await ctx.db.selectFrom('blobs').select(['id', 'pack_id', 'length']).where('container_id', '=', containerId).execute();
  const dead = blobs.filter((b) => !live.has(b.id));
  if (dead.length) {
    const deleted = await ctx.db.transaction().execute(async (tx) => {
      // The same lock a backup's job row is written under (jobs.ts createJob).
      await lockKey(tx, `container:${containerId}`);
      const running = await tx.selectFrom('jobs').select('id').where('container_id', '=', containerId)
        .where('operation', '=', 'Backup').where('status', '=', 'InProgress').executeTakeFirst();
      if (running) return false;
      // A backup that started and committed while the live set was computed (on another node,
      // or between two awaits here) may reference chunks that set thinks dead: then wait for the next run.
      const now = await tx.selectFrom('points').select('id').where('container_id', '=', containerId).execute();
      if (now.some((p) => !found.points.has(p.id))) return false;
      for (let i = 0; i < dead.length; i += BATCH) {
        await tx.deleteFrom('blobs').where('container_id', '=', containerId).where('id', 'in', dead.slice(i, i + BATCH).map((b) => b.id)).execute();
      }
      await dropTrees(tx, containerId, dead.map((b) => b.id));
      return true;
    });
    if (!deleted) { stats.containersSkipped.push(containerId); return; }
    stats.blobsDeleted += dead.length;
  }

  // Packs: drop the empty ones, rewrite the mostly dead ones.
  const packs = await ctx.db.selectFrom('packs').select(['id', 'size']).where('container_id', '=', containerId).execute();
  for (const pack of packs) {
    const rows = await ctx.db.selectFrom('blobs').select(['id', 'offset', 'length']).where('pack_id', '=', pack.id).execute();
    const liveBytes = rows.reduce((n, r) => n + r.length, 0);
    const size = Number(pack.size);
    if (rows.length === 0) {
      await ctx.db.deleteFrom('packs').where('id', '=', pack.id).execute();
      await store.delete(packKey(containerId, pack.id));
      stats.packsDeleted++;
      stats.bytesFreed += size;
    } else if (size - liveBytes > size * REWRITE_DEAD_SHARE) {
      stats.bytesFreed += await rewritePack(ctx, v, store, containerId, pack.id, size, rows);
      stats.packsRewritten++;
    }
  }

  // Orphans: packs stored but never indexed (an upload cut short), older than the grace period.
  const known = new Set((await ctx.db.selectFrom('packs').select('id').where('container_id', '=', containerId).execute()).map((p) => p.id));
  const cutoff = ctx.clock.now().getTime() - ORPHAN_GRACE_MS;
  for await (const key of store.list(`packs/${containerId}`)) {
    const id = key.split('/').pop()!;
    if (known.has(id)) continue;
    const st = await store.stat(key);
    if (st && st.mtime.getTime() < cutoff && !(await backupRunning(ctx, containerId))) {
      await store.delete(key);
      stats.orphansDeleted++;
      stats.bytesFreed += st.size;
    }
  }
}

/** Copies the live blobs of a pack into a new pack (no key needed: blobs are opaque). */
async function rewritePack(ctx: DataContext, v: { id: string; redundancy: string }, store: ObjectStore, containerId: string, packId: string, size: number, rows: { id: string; offset: number; length: number }[]): Promise<number> {
  const data = await store.get(packKey(containerId, packId));
  const entries = new Map(readPack(data).map((e) => [e.id.toString('hex'), e]));
  // A pack of tree pages stays one: its blobs carry the prefixes the index of references is rebuilt from.
  const writer = new PackWriter(packKind(data) ?? 'data');
  for (const r of rows) {
    const e = entries.get(r.id);
    if (!e) throw new CoffreError('ChecksumMismatch', `pack ${packId} does not hold chunk ${r.id.slice(0, 16)} its index names; run \`coffre verify\``);
    writer.add(e.id, data.subarray(e.offset, e.offset + e.length));
  }
  const { data: fresh, entries: moved } = writer.finish();
  const newPack = newId(16);
  await store.put(packKey(containerId, newPack), fresh);
  // The moved chunks are not in the paired region until the new pack is: the container's
  // points wait for it before they count as replicated again.
  const seq = await ctx.stores.queue.watermark(v.id, ctx.stores.secondaryTargets(v.redundancy));
  await ctx.db.transaction().execute(async (tx) => {
    if (seq > 0) {
      const points = tx.selectFrom('points').select('id').where('container_id', '=', containerId);
      await tx.updateTable('point_objects').set({ replication_seq: seq }).where('point_id', 'in', points).where('replication_seq', '<', seq).execute();
    }
    await tx.insertInto('packs').values({ id: newPack, container_id: containerId, size: fresh.length, blob_count: moved.length, created_at: ctx.clock.now().toISOString() }).execute();
    for (const e of moved) {
      await tx.updateTable('blobs').set({ pack_id: newPack, offset: e.offset, length: e.length })
        .where('container_id', '=', containerId).where('id', '=', e.id.toString('hex')).execute();
    }
    await tx.deleteFrom('packs').where('id', '=', packId).execute();
  });
  await store.delete(packKey(containerId, packId));
  return size - fresh.length;
}

/** Point objects without a point (a backup that never committed), past the grace period. */
async function collectPointOrphans(ctx: DataContext, store: ObjectStore, stats: GcStats): Promise<void> {
  const cutoff = ctx.clock.now().getTime() - ORPHAN_GRACE_MS;
  for await (const key of store.list('points')) {
    const pointId = key.split('/')[1]!;
    const point = await ctx.db.selectFrom('points').select('id').where('id', '=', pointId).executeTakeFirst();
    if (point) continue;
    const job = await ctx.db.selectFrom('jobs').select('status').where('point_id', '=', pointId).where('operation', '=', 'Backup').executeTakeFirst();
    if (job?.status === 'InProgress') continue;
    const st = await store.stat(key);
    if (st && st.mtime.getTime() < cutoff) {
      await store.delete(key);
      stats.orphansDeleted++;
      stats.bytesFreed += st.size;
    }
  }
}

export async function collectGarbage(ctx: DataContext, p: Principal, vault?: string): Promise<JobInfo> {
  const v = await resolveVault(ctx, p, vault);
  const jobId = await createJob(ctx, { vaultId: v.id, itemId: null, containerId: null, operation: 'GarbageCollect' });
  const stats: GcStats = { containers: 0, containersSkipped: [], blobsDeleted: 0, packsDeleted: 0, packsRewritten: 0, orphansDeleted: 0, bytesFreed: 0 };
  try {
    const containers = await ctx.db.selectFrom('containers').select('id').where('vault_id', '=', v.id).execute();
    for (const c of containers) {
      stats.containers++;
      await collectContainer(ctx, v, c.id, stats);
    }
    await collectPointOrphans(ctx, ctx.stores.forVault(v), stats);
  } catch (e) {
    await finishJob(ctx, jobId, { status: 'Failed', errors: [{ code: e instanceof CoffreError ? e.code : 'Internal', message: (e as Error).message }], details: { ...stats } });
    return describeJob(ctx, jobId);
  }
  const warnings = stats.containersSkipped.length
    ? [{ code: 'Deferred', message: `${stats.containersSkipped.length} machine(s) had a backup running; their space is reclaimed by the next run` }]
    : [];
  await finishJob(ctx, jobId, { status: warnings.length ? 'CompletedWithWarnings' : 'Completed', warnings, details: { ...stats }, counters: { bytesNew: 0 } });
  return describeJob(ctx, jobId);
}
