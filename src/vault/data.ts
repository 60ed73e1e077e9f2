/**
 * The data side of the vault: packs in, blob index, recovery points. A point becomes visible
 * only when its manifest, its reference list, its record and every chunk it references are
 * durable in the vault's store (whatever its redundancy makes of "durable": a quorum of zones
 * for ZRS). Reads are self-healing: a missing or damaged copy is served from another and
 * rewritten.
 */
import { createHash } from 'node:crypto';
import { lockKey } from '../catalog/engine.js';
import type { Kysely, Selectable } from 'kysely';
import type { Database, PointRow } from '../catalog/schema.js';
import type { BackupStart, BlobLocation, FileSource, Consistency, DbPointMeta, JobCounters, JobProblem, PointInfo, PointKind } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { ID_BYTES, storedChecksum } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { packKind, readPack } from '../core/pack.js';
import { validateAnyPolicy, type AnyPolicy } from '../policy/db-policy.js';
import { attachDbInfo } from './db-points.js';
import { itemRetention } from './item-retention.js';
import type { RedundantStore } from '../store/copies.js';
import type { ByteRange } from '../store/object-store.js';
import { healingRead, type CopyCheck, type CopyRepair } from '../store/self-healing.js';
import { requireContainer, requireVault, type Principal } from './access.js';
import { pointRecord, pointRecordKey, writeItemRecord } from './records.js';
import type { VaultStores } from './vault-stores.js';
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

export interface DataContext { db: Kysely<Database>; stores: VaultStores; clock: Clock }

/** Where a read may come from: any copy (self-healing), or the paired region only (cross-region restore). */
export type ReadFrom = 'any' | 'secondary';

export const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

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
  await (await ctx.stores.forContainer(containerId)).put(packKey(containerId, packId), data);
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

/** The copies a read may use: every copy, or those of the paired region for a cross-region restore. */
export function readableCopies(store: RedundantStore, from: ReadFrom) {
  const copies = store.copies();
  if (from === 'any') return copies;
  const secondary = copies.filter((c) => c.role === 'secondary');
  if (!secondary.length) throw new CoffreError('NotReplicated', 'this vault keeps no copy in a secondary region (only GRS vaults do)');
  return secondary;
}

/**
 * A range of a pack, checked against the checksums the vault recorded for the chunks inside
 * it. A copy that lacks the pack or holds damaged bytes is passed over and rewritten from an
 * intact one, and the repair is recorded on the restore job given (self-healing). With no
 * intact copy left, the damaged bytes are returned as they are: the agent authenticates
 * every chunk and leaves out only the files whose chunks are damaged.
 */
export async function readPackRange(ctx: DataContext, p: Principal, containerId: string, packId: string, range?: ByteRange, opts: { from?: ReadFrom; jobId?: string } = {}): Promise<Buffer> {
  requireContainer(p, containerId);
  if (!PACK_ID.test(packId)) throw new CoffreError('BadRequest', 'a pack id is 32 hexadecimal digits');
  const store = await ctx.stores.forContainer(containerId);
  const copies = readableCopies(store, opts.from ?? 'any');
  const key = packKey(containerId, packId);
  // One copy (LRS): nothing to heal from, and the agent authenticates every chunk anyway.
  if (copies.length === 1) return copies[0]!.store.get(key, range);
  let q = ctx.db.selectFrom('blobs').select(['offset', 'length', 'checksum']).where('pack_id', '=', packId);
  if (range) q = q.where('offset', '>=', range.offset).where('offset', '<', range.offset + range.length);
  const blobs = await q.execute();
  const check: CopyCheck = {
    part(data, r) {
      const base = r?.offset ?? 0;
      for (const b of blobs) {
        const start = Number(b.offset) - base;
        if (start + b.length > data.length) continue;
        if (storedChecksum(data.subarray(start, start + b.length)).toString('hex') !== b.checksum) return false;
      }
      return true;
    },
    whole(data) {
      try {
        readPack(data);
        return true;
      } catch (e) {
        if (e instanceof CoffreError) return false;
        throw e;
      }
    },
  };
  let read;
  try {
    read = await healingRead(copies, key, range, check);
  } catch (e) {
    if (!(e instanceof CoffreError) || e.code !== 'ChecksumMismatch') throw e;
    // No intact copy: the damaged bytes go to the agent, which leaves out what they break.
    return damagedBytes(copies, key, range, e);
  }
  if (read.repairs.length) await recordRepairs(ctx, p, read.repairs, opts.jobId);
  return read.data;
}

async function damagedBytes(copies: ReturnType<typeof readableCopies>, key: string, range: { offset: number; length: number } | undefined, why: CoffreError): Promise<Buffer> {
  for (const c of copies) {
    try {
      return await c.store.get(key, range);
    } catch (e) {
      // This copy gave nothing usable; the next one may.
      if (!(e instanceof CoffreError)) throw e;
    }
  }
  throw why;
}

/** Repairs made while reading: logged, and named on the job that read (a restore) when there is one. */
export async function recordRepairs(ctx: DataContext, p: Principal, repairs: CopyRepair[], jobId?: string): Promise<void> {
  for (const r of repairs) {
    process.stderr.write(`${new Date().toISOString()} self-healing: ${r.key} was ${r.problem} in store ${r.store}; ${r.repaired ? 'rewritten from an intact copy' : `not repaired: ${r.error ?? 'unknown'}`}\n`);
  }
  if (!jobId) return;
  const job = await ctx.db.selectFrom('jobs').select(['id', 'vault_id', 'container_id', 'status']).where('id', '=', jobId).executeTakeFirst();
  if (!job || job.status !== 'InProgress') return;
  requireVault(p, job.vault_id);
  if (job.container_id) requireContainer(p, job.container_id);
  await ctx.db.transaction().execute(async (tx) => {
    const row = await tx.selectFrom('jobs').select('details').where('id', '=', jobId).executeTakeFirstOrThrow();
    const details = JSON.parse(row.details) as { repairs?: CopyRepair[] };
    details.repairs = [...(details.repairs ?? []), ...repairs];
    await tx.updateTable('jobs').set({ details: JSON.stringify(details) }).where('id', '=', jobId).execute();
  });
}

export async function startBackup(ctx: DataContext, p: Principal, input: { item: string; kind?: string; source?: unknown }): Promise<BackupStart> {
  const item = await itemForBackup(ctx, p, input.item, input.kind ?? 'files');
  const pointId = newId();
  const jobId = await createJob(ctx, { vaultId: item.vault_id, itemId: item.id, containerId: item.container_id, operation: 'Backup', pointId, details: { source: input.source ?? null } });
  let changed = false;
  if (item.kind === 'files' && isFileSource(input.source)) changed = await rememberSource(ctx, item.id, input.source);
  // A VM's disks and scripts live on its machine: the schedule only names the VM.
  if (item.kind === 'vm') changed = await rememberSource(ctx, item.id, { vm: item.name });
  // The item's record carries what it backs up, so a recovered vault schedules it again.
  if (changed) await writeItemRecord(ctx, item.id);
  return { job: await describeJob(ctx, jobId), pointId, item: await itemInfo(ctx, item) };
}

/** The point of a backup job already committed, if it is. */
async function committedPoint(ctx: DataContext, p: Principal, pointId: string, jobId: string): Promise<PointInfo | null> {
  const job = await loadJob(ctx, p, jobId);
  if (job.operation !== 'Backup' || job.point_id !== pointId || (job.status !== 'Completed' && job.status !== 'CompletedWithWarnings')) return null;
  const point = await ctx.db.selectFrom('points').select('id').where('id', '=', pointId).where('job_id', '=', jobId).executeTakeFirst();
  return point ? describePoint(ctx, pointId) : null;
}

async function backupJob(ctx: DataContext, p: Principal, pointId: string, jobId: string) {
  const job = await loadJob(ctx, p, jobId);
  if (job.operation !== 'Backup' || job.point_id !== pointId) throw new CoffreError('BadRequest', `job ${jobId} is not the backup of point ${pointId}`);
  if (job.status === 'Cancelled') throw new CoffreError('JobCancelled', `backup job ${jobId} was cancelled; nothing of it is kept as a point`);
  if (job.status !== 'InProgress') throw new CoffreError('BadRequest', `job ${jobId} is ${job.status}; start a new backup`);
  return job;
}

export async function putPointObject(ctx: DataContext, p: Principal, pointId: string, jobId: string, kind: 'manifest' | 'refs', data: Buffer): Promise<void> {
  const job = await backupJob(ctx, p, pointId, jobId);
  if (kind === 'refs' && data.length % ID_BYTES !== 0) throw new CoffreError('BadRequest', 'a reference list is a sequence of 32-byte chunk ids');
  await (await ctx.stores.byId(job.vault_id)).put(kind === 'manifest' ? manifestKey(pointId) : refsKey(pointId), data);
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
  /** The point's time when it is not now: an online copy keeps the time its data was read (server-copies.ts). */
  time?: string;
}

/**
 * Makes a point visible, after checking that everything it references is stored. `within` runs
 * in the point's catalog transaction, after the point row (a database point's chain facts).
 */
export async function commitPoint(ctx: DataContext, p: Principal, pointId: string, input: CommitInput,
  /** A database point's chain facts: its record carries them, so a recovery brings the chain back. */
  database: DbPointMeta | null = null,
  within?: (tx: Kysely<Database>, row: Selectable<PointRow>) => Promise<void>): Promise<PointInfo> {
  // A commit repeated (the agent did not get the answer and asked again, maybe another node)
  // finds its point made and gets it again, rather than an error that would fail the backup.
  const done = await committedPoint(ctx, p, pointId, input.jobId);
  if (done) return done;
  const job = await backupJob(ctx, p, pointId, input.jobId);
  const item = await ctx.db.selectFrom('items').selectAll().where('id', '=', job.item_id!).executeTakeFirst();
  if (!item) throw new CoffreError('ItemNotFound', 'the item of this backup was deleted (purged) while it ran; nothing is kept');
  const vault = await ctx.db.selectFrom('vaults').select(['id', 'redundancy']).where('id', '=', item.vault_id).executeTakeFirstOrThrow();
  const store = ctx.stores.forVault(vault);
  let manifest: Buffer;
  try {
    manifest = await store.get(manifestKey(pointId));
  } catch (e) {
    if (e instanceof CoffreError && e.code === 'NotFound') throw new CoffreError('BadRequest', `point ${pointId} has no manifest yet`);
    throw e;
  }
  const refs = await store.get(refsKey(pointId));
  const ids = idsOf(refs);
  // Everything the point reaches must be stored; pages a previous commit found complete are not walked again.
  const closure = await checkClosure(ctx.db, item.container_id, ids);
  if (closure.missing.length) {
    const missing = closure.missing;
    throw new CoffreError('ChunkMissing', `${missing.length} chunk(s) this point references are not in the vault; run the backup again`, { missing: missing.slice(0, 100) });
  }
  const now = ctx.clock.now();
  const row: Selectable<PointRow> = {
    id: pointId, vault_id: item.vault_id, item_id: item.id, container_id: item.container_id, job_id: input.jobId,
    time: input.time ?? now.toISOString(), kind: input.kind, consistency: input.consistency, expires_at: now.toISOString(),
    retain_until: input.retainUntil ?? null, files: input.files, bytes: input.bytes, chunk_count: ids.length,
  };
  // The point's record goes to the store before the point exists in the catalog; its copy
  // task, queued by that put, is then below the watermark taken next (see replicatedPoints).
  const sums = { manifest_sha256: sha256(manifest), refs_sha256: sha256(refs) };
  await store.put(pointRecordKey(pointId), pointRecord(row, sums.manifest_sha256, sums.refs_sha256, database));
  const seq = await ctx.stores.queue.watermark(vault.id, ctx.stores.secondaryTargets(vault.redundancy));
  // One transaction: a point the retention rules refuse (e.g. OnDemand without a valid
  // retainUntil) must not stay visible, nor break every later commit of its item; and the point
  // and its completed job become visible together (one sync of the catalog, not two).
  try {
    await ctx.db.transaction().execute(async (tx) => {
      // Two nodes may receive the same commit (an agent that retried on another node): the
      // second waits here, then finds the job no longer in progress.
      await lockKey(tx, `job:${input.jobId}`);
      const current = await tx.selectFrom('jobs').select('status').where('id', '=', input.jobId).executeTakeFirstOrThrow();
      if (current.status !== 'InProgress') throw new CoffreError(current.status === 'Cancelled' ? 'JobCancelled' : 'BadRequest', `job ${input.jobId} is ${current.status}; its point is committed once`);
      await markVerified(tx, item.container_id, closure.verified);
      await tx.insertInto('points').values(row).execute();
      await tx.insertInto('point_objects').values({ point_id: pointId, ...sums, replication_seq: seq }).execute();
      await within?.(tx, row);
      await refreshExpiries({ ...ctx, db: tx }, item.id);
      await finishJob({ ...ctx, db: tx }, input.jobId, {
        status: input.warnings.length ? 'CompletedWithWarnings' : 'Completed', counters: input.counters, warnings: input.warnings, pointId,
        ...(input.details ? { details: input.details } : {}),
      });
    });
  } catch (e) {
    // The same commit, made meanwhile by another node: the point exists, its record stays.
    const done = await committedPoint(ctx, p, pointId, input.jobId);
    if (done) return done;
    // The point was refused: its record must not bring it back in a recovery. If this delete
    // fails too, garbage collection removes the record of a point the catalog does not know.
    await store.delete(pointRecordKey(pointId)).catch(() => undefined);
    throw e;
  }
  return describePoint(ctx, pointId);
}

/**
 * An item's points with their stored expiry and the one `policy` gives them in `state`: a
 * database's chain-aware, the others' by the shared rules (item-retention.ts).
 */
export async function expiriesUnder(ctx: DataContext, itemId: string, policy: AnyPolicy, state: ProtectionState): Promise<{ id: string; time: string; stored: string; expiresAt: string; keptFor?: string[] }[]> {
  const { points, results } = await itemRetention(ctx, itemId, policy, ctx.clock.now());
  // A stopped or soft-deleted item's points are kept until it is resumed or purged.
  if (state !== 'Protected') return points.map((pt) => ({ id: pt.id, time: pt.time, stored: pt.expires_at, expiresAt: NEVER }));
  return results.map((r, i) => ({
    id: r.id, time: points[i]!.time, stored: points[i]!.expires_at, expiresAt: r.expiresAt.toISOString(), ...(r.keptFor ? { keptFor: r.keptFor } : {}),
  }));
}

/** Expiries come from the item's current policy over all its points (retroactive by design). */
export async function refreshExpiries(ctx: DataContext, itemId: string): Promise<void> {
  const item = await ctx.db.selectFrom('items').innerJoin('policies', 'policies.id', 'items.policy_id').select(['policies.body']).where('items.id', '=', itemId).executeTakeFirstOrThrow();
  const { state } = await itemState(ctx.db, itemId);
  for (const pt of await expiriesUnder(ctx, itemId, validateAnyPolicy(JSON.parse(item.body)), state)) {
    if (pt.stored !== pt.expiresAt) await ctx.db.updateTable('points').set({ expires_at: pt.expiresAt }).where('id', '=', pt.id).execute();
  }
}

export async function failBackup(ctx: DataContext, p: Principal, jobId: string, errors: JobProblem[], counters?: Partial<JobCounters>): Promise<void> {
  const job = await loadJob(ctx, p, jobId);
  if (job.status !== 'InProgress') return;
  await finishJob(ctx, jobId, { status: 'Failed', errors, ...(counters ? { counters } : {}) });
}

/**
 * Whether each point is whole in the paired region: nothing queued for it up to the copy
 * queue's watermark taken at its commit (every object it needs was queued before that).
 */
async function replicatedPoints(ctx: DataContext, rows: Selectable<PointRow>[]): Promise<Set<string>> {
  const out = new Set<string>();
  if (!rows.length) return out;
  const vaults = new Map<string, number | null | undefined>();
  for (const id of new Set(rows.map((r) => r.vault_id))) {
    const v = await ctx.db.selectFrom('vaults').select('redundancy').where('id', '=', id).executeTakeFirstOrThrow();
    const targets = ctx.stores.secondaryTargets(v.redundancy);
    // undefined: the vault keeps no secondary copy.
    vaults.set(id, targets.length ? await ctx.stores.queue.lowestPending(id, targets) : undefined);
  }
  const seqs = new Map<string, number>();
  for (const group of batches(rows.map((r) => r.id))) {
    for (const r of await ctx.db.selectFrom('point_objects').select(['point_id', 'replication_seq']).where('point_id', 'in', group).execute()) seqs.set(r.point_id, Number(r.replication_seq));
  }
  for (const r of rows) {
    const lowest = vaults.get(r.vault_id);
    const seq = seqs.get(r.id);
    if (lowest === undefined || seq === undefined) continue;
    if (lowest === null || lowest > seq) out.add(r.id);
  }
  return out;
}

async function pointInfoRows(ctx: DataContext, rows: Selectable<PointRow>[]): Promise<PointInfo[]> {
  const out: PointInfo[] = [];
  const replicated = await replicatedPoints(ctx, rows);
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
      replicated: replicated.has(r.id),
    });
  }
  await attachDbInfo(ctx, out);
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

/**
 * A point that a read may use. From the secondary, the vault must allow cross-region restore
 * and the point must be whole there (NotReplicated otherwise).
 */
export async function pointForRead(ctx: DataContext, p: Principal, pointId: string, from: ReadFrom): Promise<Selectable<PointRow>> {
  const row = await findPoint(ctx, p, pointId);
  if (from === 'secondary') {
    const v = await ctx.db.selectFrom('vaults').leftJoin('vault_storage', 'vault_storage.vault_id', 'vaults.id')
      .select(['vaults.name', 'vaults.redundancy', 'vault_storage.cross_region_restore']).where('vaults.id', '=', row.vault_id).executeTakeFirstOrThrow();
    if (v.redundancy !== 'GRS') throw new CoffreError('NotReplicated', `vault ${v.name} is ${v.redundancy}: only GRS vaults keep a copy in the secondary region`);
    if (v.cross_region_restore !== 1) {
      throw new CoffreError('CrossRegionRestoreDisabled', `cross-region restore is not enabled on vault ${v.name}; enable it with \`coffre vault set ${v.name} --cross-region-restore\``);
    }
    if (!(await replicatedPoints(ctx, [row])).has(row.id)) {
      throw new CoffreError('NotReplicated', `point ${row.id} is not yet replicated to the secondary region; see \`coffre vault show ${v.name}\` for the replication lag, or restore from the primary`);
    }
  }
  return row;
}

/** A point's object, read with self-healing and checked against the hash recorded at its commit. */
export async function readPointObject(ctx: DataContext, p: Principal, row: Selectable<PointRow>, kind: 'manifest' | 'refs', from: ReadFrom, jobId?: string): Promise<Buffer> {
  const store = await ctx.stores.byId(row.vault_id);
  const sums = await ctx.db.selectFrom('point_objects').select(['manifest_sha256', 'refs_sha256']).where('point_id', '=', row.id).executeTakeFirst();
  const want = sums ? (kind === 'manifest' ? sums.manifest_sha256 : sums.refs_sha256) : null;
  const intact = (d: Buffer) => want === null || sha256(d) === want;
  const read = await healingRead(readableCopies(store, from), kind === 'manifest' ? manifestKey(row.id) : refsKey(row.id), undefined, { part: intact, whole: intact });
  if (read.repairs.length) await recordRepairs(ctx, p, read.repairs, jobId);
  return read.data;
}

export async function getManifest(ctx: DataContext, p: Principal, pointId: string, from: ReadFrom = 'any'): Promise<{ point: PointInfo; containerId: string; manifest: Buffer }> {
  const row = await pointForRead(ctx, p, pointId, from);
  return { point: await describePoint(ctx, row.id), containerId: row.container_id, manifest: await readPointObject(ctx, p, row, 'manifest', from) };
}

export async function startRestore(ctx: DataContext, p: Principal, pointId: string, details: Record<string, unknown>): Promise<string> {
  const row = await pointForRead(ctx, p, pointId, details.from === 'secondary' ? 'secondary' : 'any');
  return createJob(ctx, { vaultId: row.vault_id, itemId: row.item_id, containerId: row.container_id, operation: 'Restore', pointId: row.id, details });
}

