/**
 * Scrubbing without keys, copy by copy: every copy a vault keeps (each zone, each region) is
 * read whole and checked — every chunk of every pack against the checksum the vault recorded
 * when the pack arrived, every manifest and reference list against the hash recorded at its
 * commit, every record against the catalog; everything a point reaches (through its tree pages)
 * must be indexed. With `repair`, a copy found missing or damaged is
 * rewritten from an intact one (a record from the catalog). The job reports, per store, what
 * it checked, found and fixed. Copies still queued for replication are not counted missing.
 */
import type { Selectable } from 'kysely';
import type { BlobRow } from '../catalog/schema.js';
import type { JobInfo, JobProblem } from '../core/api.js';
import { ID_BYTES, storedChecksum } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { readPack } from '../core/pack.js';
import type { StoreCopy } from '../store/copies.js';
import { rewriteCopy, type CopyCheck, type CopyRepair } from '../store/self-healing.js';
import type { Principal } from './access.js';
import { manifestKey, packKey, refsKey, sha256, type DataContext } from './data.js';
import { createJob, describeJob, finishJob } from './jobs.js';
import { expectedRecords } from './records.js';
import { findItem, resolveVault } from './vaults.js';
import { ReferenceGraph } from './references.js';

/** Points named per damaged chunk: enough to act on, bounded for chunks every point shares. */
const POINTS_NAMED = 10;

export interface StoreReport {
  store: string;
  role: string;
  objectsChecked: number;
  bytesChecked: number;
  missing: number;
  damaged: number;
  repaired: number;
  /** Copies still queued for this store (GRS replication, zone repair): not yet due. */
  pending: number;
  /** Why the store could not be read, when it could not. */
  unavailable?: string;
}

/** One object every copy must hold, with how to tell an intact copy and what a problem affects. */
interface Expected {
  key: string;
  check: CopyCheck;
  /** What to say when this object is missing or damaged in a store. */
  describe(problem: 'missing' | 'damaged', store: string, data?: Buffer): JobProblem[];
}

const intactIf = (ok: (d: Buffer) => boolean): CopyCheck => ({ part: ok, whole: ok });

export async function verify(ctx: DataContext, p: Principal, filter: { vault?: string; item?: string; repair?: boolean }): Promise<JobInfo> {
  const vault = await resolveVault(ctx, p, filter.vault);
  const item = filter.item ? await findItem(ctx, p, filter.item, vault.id) : null;
  let pq = ctx.db.selectFrom('points').leftJoin('point_objects', 'point_objects.point_id', 'points.id')
    .select(['points.id', 'points.container_id', 'point_objects.manifest_sha256', 'point_objects.refs_sha256']).where('points.vault_id', '=', vault.id);
  if (item) pq = pq.where('points.item_id', '=', item.id);
  if (p.kind === 'agent') pq = pq.where('points.container_id', '=', p.containerId);
  const points = await pq.execute();
  const jobId = await createJob(ctx, { vaultId: vault.id, itemId: item?.id ?? null, containerId: p.kind === 'agent' ? p.containerId : null, operation: 'Verify', details: { repair: filter.repair ?? false } });
  const store = ctx.stores.forVault(vault);
  const copies = store.copies();
  const errors: JobProblem[] = [];
  const repairs: CopyRepair[] = [];

  // blob id → (some of the) points that need it, so a damaged blob names the points it breaks.
  const needed = new Map<string, Set<string>>();
  const containers = new Set<string>();
  const graphs = new Map<string, ReferenceGraph>();
  const expected: Expected[] = [];
  for (const pt of points) {
    containers.add(pt.container_id);
    for (const kind of ['manifest', 'refs'] as const) {
      const want = kind === 'manifest' ? pt.manifest_sha256 : pt.refs_sha256;
      const what = kind === 'manifest' ? 'manifest' : 'reference list';
      expected.push({
        key: kind === 'manifest' ? manifestKey(pt.id) : refsKey(pt.id),
        check: intactIf((d) => (want ? sha256(d) === want : kind === 'manifest' || d.length % ID_BYTES === 0)),
        describe: (problem, s) => [{ code: problem === 'missing' ? 'ObjectMissing' : 'ChecksumMismatch', message: `point ${pt.id}: its ${what} is ${problem} in store ${s}` }],
      });
    }
    let refs: Buffer;
    try {
      refs = await store.get(refsKey(pt.id));
    } catch (e) {
      if (!(e instanceof CoffreError)) throw e;
      // Reported copy by copy below; without any readable list the point's chunks are unknown.
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
  const affected = (containerId: string, blobIds: string[]) => {
    const out = new Set<string>();
    for (const b of blobIds) for (const pt of needed.get(`${containerId}:${b}`) ?? []) out.add(pt);
    return out.size ? `; points affected: ${[...out].join(', ')}` : ' (no live point uses it)';
  };
  let chunksChecked = 0;
  for (const containerId of containers) {
    const packs = await ctx.db.selectFrom('packs').select(['id']).where('container_id', '=', containerId).execute();
    for (const pack of packs) {
      const blobs: Pick<Selectable<BlobRow>, 'id' | 'offset' | 'length' | 'checksum'>[] = await ctx.db.selectFrom('blobs')
        .select(['id', 'offset', 'length', 'checksum']).where('pack_id', '=', pack.id).execute();
      const damagedBlobs = (d: Buffer) => blobs.filter((b) => {
        const stored = d.subarray(Number(b.offset), Number(b.offset) + b.length);
        return stored.length !== b.length || storedChecksum(stored).toString('hex') !== b.checksum;
      });
      expected.push({
        key: packKey(containerId, pack.id),
        check: {
          part: (d) => damagedBlobs(d).length === 0,
          whole: (d) => {
            if (damagedBlobs(d).length) return false;
            try { readPack(d); return true; } catch (e) { if (e instanceof CoffreError) return false; throw e; }
          },
        },
        describe: (problem, s, d) => problem === 'missing'
          ? [{ code: 'ObjectMissing', message: `pack ${pack.id} is missing from store ${s}${affected(containerId, blobs.map((b) => b.id))}` }]
          : damagedBlobs(d!).map((b) => ({ code: 'ChecksumMismatch', message: `pack ${pack.id}: chunk ${b.id.slice(0, 16)} is damaged in store ${s}${affected(containerId, [b.id])}` })),
      });
      chunksChecked += blobs.length;
    }
    // Chunks a point needs must be indexed at all.
    for (const [key, pts] of needed) {
      if (!key.startsWith(containerId + ':')) continue;
      const id = key.slice(containerId.length + 1);
      const row = await ctx.db.selectFrom('blobs').select('id').where('container_id', '=', containerId).where('id', '=', id).executeTakeFirst();
      if (!row) errors.push({ code: 'ChunkMissing', message: `chunk ${id.slice(0, 16)} is missing; points affected: ${[...pts].join(', ')}` });
    }
  }
  // Records, when the whole vault is verified by an administrator: they must say what the catalog says.
  const records = !item && p.kind !== 'agent' ? await expectedRecords(ctx, vault.id) : new Map<string, Buffer>();
  for (const [key, data] of records) {
    expected.push({
      key, check: intactIf((d) => d.equals(data)),
      describe: (problem, s) => [{ code: problem === 'missing' ? 'ObjectMissing' : 'RecordStale', message: `record ${key} is ${problem === 'missing' ? 'missing from' : 'out of date in'} store ${s}` }],
    });
  }

  const reports: StoreReport[] = [];
  for (const copy of copies) {
    const report: StoreReport = { store: copy.name, role: copy.role, objectsChecked: 0, bytesChecked: 0, missing: 0, damaged: 0, repaired: 0, pending: 0 };
    reports.push(report);
    const pending = await ctx.stores.queue.pendingKeys(vault.id, copy.name);
    for (const obj of expected) {
      if (pending.has(obj.key)) { report.pending++; continue; }
      let data: Buffer | null = null;
      try {
        data = await copy.store.get(obj.key);
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
        if (e.code !== 'NotFound') {
          report.unavailable = e.message;
          errors.push({ code: e.code, message: `store ${copy.name} could not be verified: ${e.message}` });
          break;
        }
      }
      report.objectsChecked++;
      report.bytesChecked += data?.length ?? 0;
      const problem = data === null ? 'missing' : obj.check.whole(data) ? null : 'damaged';
      if (!problem) continue;
      report[problem]++;
      if (filter.repair) {
        const fixed = await repairCopy(copies, copy, obj, records.get(obj.key));
        repairs.push({ ...fixed, problem });
        if (fixed.repaired) { report.repaired++; continue; }
        errors.push(...obj.describe(problem, copy.name, data ?? undefined).map((e) => ({ ...e, message: `${e.message} (not repaired: ${fixed.error})` })));
      } else {
        errors.push(...obj.describe(problem, copy.name, data ?? undefined));
      }
    }
  }
  await finishJob(ctx, jobId, {
    status: errors.length ? 'Failed' : 'Completed', errors,
    counters: { bytesScanned: reports.reduce((n, r) => n + r.bytesChecked, 0), filesScanned: chunksChecked },
    details: { points: points.length, chunksChecked, repair: filter.repair ?? false, stores: reports, repairs },
  });
  return describeJob(ctx, jobId);
}

/** Rewrites a bad copy: a record from the catalog, anything else from an intact copy elsewhere. */
async function repairCopy(copies: readonly StoreCopy[], bad: StoreCopy, obj: Expected, record?: Buffer): Promise<CopyRepair> {
  if (record) {
    try {
      await bad.store.put(obj.key, record);
      return { store: bad.name, key: obj.key, problem: 'damaged', repaired: true };
    } catch (e) {
      return { store: bad.name, key: obj.key, problem: 'damaged', repaired: false, error: (e as Error).message };
    }
  }
  return rewriteCopy(copies, bad, obj.key, obj.check);
}
