/**
 * The data side of the vault: packs in, blob index, recovery points. A point becomes visible
 * only when its manifest, its reference list and every chunk it references are durable.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Database, PointRow } from '../catalog/schema.js';
import type { BackupStart, BlobLocation, FileSource, Consistency, JobCounters, JobProblem, PointInfo, PointKind } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { ID_BYTES } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { packKind, readPack } from '../core/pack.js';
import { validatePolicy, type Policy } from '../policy/policy.js';
import { evaluateRetention } from '../policy/retention.js';
import type { ObjectStore } from '../store/object-store.js';
import { requireContainer, requireVault, type Principal } from './access.js';
import { createJob, describeJob, finishJob, loadJob } from './jobs.js';
import { findItem, itemForBackup, itemInfo, resolveVault } from './vaults.js';
import { rememberSource } from './scheduler.js';
import { checkClosure, idsOf, indexTreePack, markVerified } from './references.js';
import { itemState, NEVER, type ProtectionState } from './item-state.js';
import { visibleVaults } from './authorize.js';

function isFileSource(s: unknown): s is FileSource {
  const src = s as Record<string, unknown> | null;
  const optional = (k: string, type: string) => src?.[k] === undefined || typeof src[k] === type;
  return Array.isArray(src?.paths) && src.paths.every((p) => typeof p === 'string') && (src.excludes === undefined || Array.isArray(src.excludes))
    && optional('snapshot', 'string') && optional('preScript', 'string') && optional('postScript', 'string')
    && optional('scriptTimeoutSeconds', 'number') && optional('snapshotSize', 'string');
}

export interface DataContext { db: Kysely<Database>; store: ObjectStore; clock: Clock }

const PACK_ID = /^[0-9a-f]{32}$/;
const BATCH = 400;

export const packKey = (containerId: string, packId: string) => `packs/${containerId}/${packId.slice(0, 2)}/${packId}`;
export const manifestKey = (pointId: string) => `points/${pointId}/manifest`;
export const refsKey = (pointId: string) => `points/${pointId}/refs`;

function batches<T>(all: readonly T[], size = BATCH): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
}

/** All chunk ids a container has, as 32-byte ids back to back: the agent's dedup set. */
export async function blobIds(ctx: DataContext, p: Principal, containerId: string): Promise<Buffer> {
  requireContainer(p, containerId);
  const rows = await ctx.db.selectFrom('blobs').select('id').where('container_id', '=', containerId).execute();
  const out = Buffer.allocUnsafe(rows.length * ID_BYTES);
  rows.forEach((r, i) => out.write(r.id, i * ID_BYTES, 'hex'));
  return out;
}

/**
 * Stores a pack, then indexes its blobs (and, for a pack of tree pages, what each page
 * references). The pack is durable before any index row exists, so an indexed chunk is always
 * readable; a crash in between leaves an unindexed pack that the next backup simply re-sends
 * and garbage collection removes.
 */
export async function putPack(ctx: DataContext, p: Principal, containerId: string, packId: string, data: Buffer): Promise<{ blobs: number }> {
  requireContainer(p, containerId);
  if (!PACK_ID.test(packId)) throw new CoffreError('BadRequest', 'a pack id is 32 hexadecimal digits');
  const entries = readPack(data);
  // An indexed pack is never replaced: a retried upload finds it done, and a key that tries to
  // overwrite a pack (with garbage, under the same id) cannot damage the points that use it.
  const known = await ctx.db.selectFrom('packs').select('blob_count').where('id', '=', packId).where('container_id', '=', containerId).executeTakeFirst();
  if (known) return { blobs: known.blob_count };
  await ctx.store.put(packKey(containerId, packId), data);
  const now = ctx.clock.now().toISOString();
  await ctx.db.transaction().execute(async (tx) => {
    await tx.insertInto('packs').values({ id: packId, container_id: containerId, size: data.length, blob_count: entries.length, created_at: now })
      .onConflict((oc) => oc.column('id').doNothing()).execute();
    for (const group of batches(entries)) {
      await tx.insertInto('blobs').values(group.map((e) => ({
        container_id: containerId, id: e.id.toString('hex'), pack_id: packId, offset: e.offset, length: e.length, checksum: e.checksum.toString('hex'),
      }))).onConflict((oc) => oc.columns(['container_id', 'id']).doNothing()).execute();
    }
    if (packKind(data) === 'tree') await indexTreePack(tx, containerId, data, entries);
  });
  return { blobs: entries.length };
}

export async function locateBlobs(ctx: DataContext, p: Principal, containerId: string, ids: string[]): Promise<BlobLocation[]> {
  requireContainer(p, containerId);
  const out: BlobLocation[] = [];
  for (const group of batches(ids)) {
    const rows = await ctx.db.selectFrom('blobs').select(['id', 'pack_id', 'offset', 'length'])
      .where('container_id', '=', containerId).where('id', 'in', group).execute();
    for (const r of rows) out.push({ id: r.id, pack: r.pack_id, offset: Number(r.offset), length: r.length });
  }
  return out;
}

export async function readPackRange(ctx: DataContext, p: Principal, containerId: string, packId: string, range?: { offset: number; length: number }): Promise<Buffer> {
  requireContainer(p, containerId);
  if (!PACK_ID.test(packId)) throw new CoffreError('BadRequest', 'a pack id is 32 hexadecimal digits');
  return ctx.store.get(packKey(containerId, packId), range);
}

export async function startBackup(ctx: DataContext, p: Principal, input: { item: string; kind?: string; source?: unknown }): Promise<BackupStart> {
  const item = await itemForBackup(ctx, p, input.item, input.kind ?? 'files');
  const pointId = newId();
  const jobId = await createJob(ctx, { vaultId: item.vault_id, itemId: item.id, containerId: item.container_id, operation: 'Backup', pointId, details: { source: input.source ?? null } });
  if (item.kind === 'files' && isFileSource(input.source)) await rememberSource(ctx, item.id, input.source);
  // A VM's disks and scripts live on its machine: the schedule only names the VM.
  if (item.kind === 'vm') await rememberSource(ctx, item.id, { vm: item.name });
  return { job: await describeJob(ctx, jobId), pointId, item: await itemInfo(ctx, item) };
}

async function backupJob(ctx: DataContext, p: Principal, pointId: string, jobId: string) {
  const job = await loadJob(ctx, p, jobId);
  if (job.operation !== 'Backup' || job.point_id !== pointId) throw new CoffreError('BadRequest', `job ${jobId} is not the backup of point ${pointId}`);
  if (job.status === 'Cancelled') throw new CoffreError('JobCancelled', `backup job ${jobId} was cancelled; nothing of it is kept as a point`);
  if (job.status !== 'InProgress') throw new CoffreError('BadRequest', `job ${jobId} is ${job.status}; start a new backup`);
  return job;
}

export async function putPointObject(ctx: DataContext, p: Principal, pointId: string, jobId: string, kind: 'manifest' | 'refs', data: Buffer): Promise<void> {
  await backupJob(ctx, p, pointId, jobId);
  if (kind === 'refs' && data.length % ID_BYTES !== 0) throw new CoffreError('BadRequest', 'a reference list is a sequence of 32-byte chunk ids');
  await ctx.store.put(kind === 'manifest' ? manifestKey(pointId) : refsKey(pointId), data);
}

export interface CommitInput {
  jobId: string;
  files: number;
  bytes: number;
  kind: PointKind;
  consistency: Consistency;
  retainUntil?: string | null;
  counters: JobCounters;
  warnings: JobProblem[];
  /** Recorded on the job, e.g. a VM backup's per-disk counters and snapshot steps. */
  details?: Record<string, unknown>;
}

/** Makes a point visible, after checking that everything it references is stored. */
export async function commitPoint(ctx: DataContext, p: Principal, pointId: string, input: CommitInput): Promise<PointInfo> {
  const job = await backupJob(ctx, p, pointId, input.jobId);
  const item = await ctx.db.selectFrom('items').selectAll().where('id', '=', job.item_id!).executeTakeFirst();
  if (!item) throw new CoffreError('ItemNotFound', 'the item of this backup was deleted (purged) while it ran; nothing is kept');
  if (!(await ctx.store.stat(manifestKey(pointId)))) throw new CoffreError('BadRequest', `point ${pointId} has no manifest yet`);
  const ids = idsOf(await ctx.store.get(refsKey(pointId)));
  // Everything the point reaches must be stored; pages a previous commit found complete are not walked again.
  const closure = await checkClosure(ctx.db, item.container_id, ids);
  if (closure.missing.length) {
    const missing = closure.missing;
    throw new CoffreError('ChunkMissing', `${missing.length} chunk(s) this point references are not in the vault; run the backup again`, { missing: missing.slice(0, 100) });
  }
  const now = ctx.clock.now();
  const row: Selectable<PointRow> = {
    id: pointId, vault_id: item.vault_id, item_id: item.id, container_id: item.container_id, job_id: input.jobId,
    time: now.toISOString(), kind: input.kind, consistency: input.consistency, expires_at: now.toISOString(),
    retain_until: input.retainUntil ?? null, files: input.files, bytes: input.bytes, chunk_count: ids.length,
  };
  // One transaction: a point the retention rules refuse (e.g. OnDemand without a valid
  // retainUntil) must not stay visible, nor break every later commit of its item; and the point
  // and its completed job become visible together (one sync of the catalog, not two).
  await ctx.db.transaction().execute(async (tx) => {
    await markVerified(tx, item.container_id, closure.verified);
    await tx.insertInto('points').values(row).execute();
    await refreshExpiries({ ...ctx, db: tx }, item.id);
    await finishJob({ ...ctx, db: tx }, input.jobId, {
      status: input.warnings.length ? 'CompletedWithWarnings' : 'Completed', counters: input.counters, warnings: input.warnings, pointId,
      ...(input.details ? { details: input.details } : {}),
    });
  });
  return describePoint(ctx, pointId);
}

/** An item's points with their stored expiry and the one `policy` gives them in `state`. */
export async function expiriesUnder(ctx: DataContext, itemId: string, policy: Policy, state: ProtectionState): Promise<{ id: string; time: string; stored: string; expiresAt: string }[]> {
  const points = await ctx.db.selectFrom('points').select(['id', 'time', 'kind', 'retain_until', 'expires_at']).where('item_id', '=', itemId).orderBy('time').execute();
  // A stopped or soft-deleted item's points are kept until it is resumed or purged.
  if (state !== 'Protected') return points.map((pt) => ({ id: pt.id, time: pt.time, stored: pt.expires_at, expiresAt: NEVER }));
  const results = evaluateRetention(policy, points.map((pt) => ({
    id: pt.id, time: new Date(pt.time), kind: pt.kind as PointKind, ...(pt.retain_until ? { retainUntil: pt.retain_until } : {}),
  })), ctx.clock.now());
  return results.map((r, i) => ({ id: r.id, time: points[i]!.time, stored: points[i]!.expires_at, expiresAt: r.expiresAt.toISOString() }));
}

/** Expiries come from the item's current policy over all its points (retroactive by design). */
export async function refreshExpiries(ctx: DataContext, itemId: string): Promise<void> {
  const item = await ctx.db.selectFrom('items').innerJoin('policies', 'policies.id', 'items.policy_id').select(['policies.body']).where('items.id', '=', itemId).executeTakeFirstOrThrow();
  const { state } = await itemState(ctx.db, itemId);
  for (const pt of await expiriesUnder(ctx, itemId, validatePolicy(JSON.parse(item.body)), state)) {
    if (pt.stored !== pt.expiresAt) await ctx.db.updateTable('points').set({ expires_at: pt.expiresAt }).where('id', '=', pt.id).execute();
  }
}

export async function failBackup(ctx: DataContext, p: Principal, jobId: string, errors: JobProblem[], counters?: Partial<JobCounters>): Promise<void> {
  const job = await loadJob(ctx, p, jobId);
  if (job.status !== 'InProgress') return;
  await finishJob(ctx, jobId, { status: 'Failed', errors, ...(counters ? { counters } : {}) });
}

async function pointInfoRows(ctx: DataContext, rows: Selectable<PointRow>[]): Promise<PointInfo[]> {
  const out: PointInfo[] = [];
  const names = new Map<string, { item: string; vault: string; machine: string; itemKind: string }>();
  for (const r of rows) {
    let n = names.get(r.item_id);
    if (!n) {
      n = await ctx.db.selectFrom('items').innerJoin('vaults', 'vaults.id', 'items.vault_id').innerJoin('containers', 'containers.id', 'items.container_id')
        .select(['items.name as item', 'vaults.name as vault', 'containers.name as machine', 'items.kind as itemKind']).where('items.id', '=', r.item_id).executeTakeFirstOrThrow();
      names.set(r.item_id, n);
    }
    out.push({
      id: r.id, item: n.item, vault: n.vault, machine: n.machine, itemKind: n.itemKind, time: r.time, kind: r.kind as PointKind,
      consistency: r.consistency as Consistency, expiresAt: r.expires_at, retainUntil: r.retain_until, files: r.files, bytes: Number(r.bytes),
    });
  }
  return out;
}

export async function describePoint(ctx: DataContext, pointId: string): Promise<PointInfo> {
  const row = await ctx.db.selectFrom('points').selectAll().where('id', '=', pointId).executeTakeFirstOrThrow();
  return (await pointInfoRows(ctx, [row]))[0]!;
}

/** Points oldest first; an agent sees only its own machine's. */
export async function listPoints(ctx: DataContext, p: Principal, filter: { vault?: string; item?: string }): Promise<PointInfo[]> {
  let q = ctx.db.selectFrom('points').selectAll();
  if (filter.vault) q = q.where('vault_id', '=', (await resolveVault(ctx, p, filter.vault)).id);
  if (filter.item) q = q.where('item_id', '=', (await findItem(ctx, p, filter.item, filter.vault ? (await resolveVault(ctx, p, filter.vault)).id : undefined)).id);
  if (p.kind === 'agent') q = q.where('container_id', '=', p.containerId);
  const visible = await visibleVaults(ctx.db, p);
  if (visible !== 'all') q = q.where('vault_id', 'in', visible.size ? [...visible] : ['']); // '' matches no vault
  return pointInfoRows(ctx, await q.orderBy('time').orderBy('id').execute());
}

/** A point by id or by an unambiguous prefix of at least 6 characters, as users type them. */
export async function findPoint(ctx: DataContext, p: Principal, idOrPrefix: string): Promise<Selectable<PointRow>> {
  if (!/^[0-9a-f]{6,32}$/.test(idOrPrefix)) throw new CoffreError('PointNotFound', `no point ${idOrPrefix}: a point id is hexadecimal (see \`coffre points\`)`);
  const rows = await ctx.db.selectFrom('points').selectAll().where('id', 'like', `${idOrPrefix}%`).limit(2).execute();
  if (rows.length === 0) throw new CoffreError('PointNotFound', `no point ${idOrPrefix}; list points with \`coffre points\``);
  if (rows.length > 1) throw new CoffreError('InvalidArgument', `${idOrPrefix} matches several points: give more digits`);
  const row = rows[0]!;
  requireVault(p, row.vault_id);
  requireContainer(p, row.container_id);
  return row;
}

export async function getManifest(ctx: DataContext, p: Principal, pointId: string): Promise<{ point: PointInfo; containerId: string; manifest: Buffer }> {
  const row = await findPoint(ctx, p, pointId);
  return { point: await describePoint(ctx, row.id), containerId: row.container_id, manifest: await ctx.store.get(manifestKey(row.id)) };
}

export async function startRestore(ctx: DataContext, p: Principal, pointId: string, details: Record<string, unknown>): Promise<string> {
  const row = await findPoint(ctx, p, pointId);
  return createJob(ctx, { vaultId: row.vault_id, itemId: row.item_id, containerId: row.container_id, operation: 'Restore', pointId: row.id, details });
}

