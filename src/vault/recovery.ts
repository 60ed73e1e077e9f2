/**
 * `coffre server --recover-from secondary|primary`: rebuilds the catalog of an empty data
 * folder from the stores of one region, which hold everything it indexes — vault, policy,
 * machine and item records, point records, and packs whose footers list their chunks.
 *
 * A point comes back only when its region holds it whole: its manifest and reference list
 * match the hashes in its record and every chunk it references is in a pack there. Others
 * are named in the report (from the secondary, these are points not yet replicated).
 * Machines keep their wrapped keys; agents register again (new credentials, same passphrase).
 */
import { CoffreError } from '../core/errors.js';
import { packFooterLength, packKind, PACK_TRAILER_BYTES, readPack, readPackFooter } from '../core/pack.js';
import type { CopyRole, StoreCopy } from '../store/copies.js';
import type { ObjectStore } from '../store/object-store.js';
import { PrefixStore } from '../store/prefix.js';
import { isNotFound } from '../store/store-error.js';
import { manifestKey, refreshExpiries, refsKey, sha256, type DataContext } from './data.js';
import type { ContainerRecord, ItemRecord, PointRecord, PolicyRecord, VaultRecord } from './records.js';
import { VAULT_RECORD } from './records.js';
import { vaultPrefix } from './vault-stores.js';
import { DB_ITEM_KIND } from './db-points.js';
import { chainFactsProblem, dbPointMetaSchema, dbPointRow } from './db-point-rows.js';
import type { DbPointMeta } from '../core/api.js';
import { DB_BACKUP_TYPES } from '../policy/db-schedule.js';
import { defaultDbPolicy } from '../policy/db-policy.js';
import { newId } from '../core/ids.js';
import { checkClosure, idsOf, indexTreePack, markVerified } from './references.js';

export interface RecoveryReport {
  from: CopyRole;
  vaults: string[];
  policies: number;
  machines: number;
  items: number;
  points: number;
  packs: number;
  pointsSkipped: { id: string; vault: string; why: string }[];
  /** Items whose record names a machine that did not come back: their points stay out too. */
  itemsSkipped: { id: string; name: string; vault: string; why: string }[];
}

const BATCH = 400;

/** Reads a vault's objects from the zones of one region that hold them: the first that has each. */
class RegionReader {
  constructor(private readonly copies: readonly StoreCopy[]) {}

  async get(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    let last: unknown = null;
    for (const c of this.copies) {
      try {
        return await c.store.get(key, range);
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
        last = e;
      }
    }
    throw last ?? new CoffreError('NotFound', `object ${key} is missing`);
  }

  async stat(key: string): Promise<{ size: number } | null> {
    for (const c of this.copies) {
      const s = await c.store.stat(key).catch((e: unknown) => { if (e instanceof CoffreError) return null; throw e; });
      if (s) return s;
    }
    return null;
  }

  async json<T>(key: string): Promise<T> {
    return JSON.parse((await this.get(key)).toString('utf8')) as T;
  }

  /** Keys under a prefix in any of the zones, once each; zones that cannot be listed are passed over. */
  async list(prefix: string): Promise<string[]> {
    const out = new Set<string>();
    for (const c of this.copies) {
      try {
        for await (const k of c.store.list(prefix)) out.add(k);
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
      }
    }
    return [...out];
  }
}

async function vaultIds(zones: readonly { store: ObjectStore }[]): Promise<string[]> {
  const ids = new Set<string>();
  for (const z of zones) {
    try {
      for await (const key of z.store.list('vaults')) {
        const m = /^vaults\/([^/]+)\/vault\.json$/.exec(key);
        if (m) ids.add(m[1]!);
      }
    } catch (e) {
      if (!(e instanceof CoffreError)) throw e;
    }
  }
  return [...ids];
}

export async function recoverCatalog(ctx: DataContext, from: CopyRole, log: (line: string) => void): Promise<RecoveryReport> {
  const existing = await ctx.db.selectFrom('vaults').select('id').limit(1).execute();
  if (existing.length) throw new CoffreError('InvalidArgument', '--recover-from rebuilds the catalog of an empty data folder, and this one already has vaults: start it without --recover-from, or give an empty --data folder');
  const topology = ctx.stores.topology;
  const region = from === 'primary' ? topology.primary : topology.secondary;
  if (!region) throw new CoffreError('InvalidArgument', 'the configuration names no secondary region to recover from');
  const report: RecoveryReport = { from, vaults: [], policies: 0, machines: 0, items: 0, points: 0, packs: 0, pointsSkipped: [], itemsSkipped: [] };
  const now = ctx.clock.now().toISOString();
  for (const vaultId of await vaultIds(region.zones)) {
    const all = region.zones.map((z): StoreCopy => ({ name: z.name, role: from, store: new PrefixStore(z.store, vaultPrefix(vaultId)) }));
    const vault = await new RegionReader(all).json<VaultRecord>(VAULT_RECORD);
    // The zones of this region the vault's redundancy writes to (all of them for ZRS).
    const names = new Set(topology.supports(vault.redundancy as 'LRS') ? [] : topology.copyNames(vault.redundancy as 'LRS', from));
    const mine = all.filter((c) => names.has(c.name));
    const reader = new RegionReader(mine.length ? mine : all);
    log(`recovering vault ${vault.name} (${vault.redundancy}) from ${mine.map((c) => c.name).join(', ') || region.name}`);
    await ctx.db.transaction().execute(async (tx) => {
      await tx.insertInto('vaults').values({ id: vault.id, name: vault.name, subscription: vault.subscription, redundancy: vault.redundancy, created_at: vault.createdAt }).execute();
      await tx.insertInto('vault_storage').values({ vault_id: vault.id, cross_region_restore: vault.crossRegionRestore ? 1 : 0 }).execute();
    });
    report.vaults.push(vault.name);
    const policies = new Map<string, string>();
    for (const key of await reader.list('policies')) {
      const p = await reader.json<PolicyRecord>(key);
      await ctx.db.insertInto('policies').values({ id: p.id, vault_id: vault.id, name: p.name, body: JSON.stringify(p.body), updated_at: p.updatedAt }).execute();
      policies.set(p.name, p.id);
      report.policies++;
    }
    /** The vault's default policy for an item whose own policy has no record (made before it had one). */
    const defaultPolicy = async (itemKind: string): Promise<string | null> => {
      const name = itemKind === DB_ITEM_KIND ? defaultDbPolicy().name : 'DefaultPolicy';
      if (policies.has(name)) return policies.get(name)!;
      if (itemKind !== DB_ITEM_KIND) return null;
      const id = newId();
      await ctx.db.insertInto('policies').values({ id, vault_id: vault.id, name, body: JSON.stringify(defaultDbPolicy()), updated_at: now }).execute();
      policies.set(name, id);
      return id;
    };
    const containers: string[] = [];
    for (const key of await reader.list('containers')) {
      const c = await reader.json<ContainerRecord>(key);
      await ctx.db.insertInto('containers').values({ id: c.id, vault_id: vault.id, name: c.name, wrapped_keys: c.wrappedKeys ? JSON.stringify(c.wrappedKeys) : null, created_at: c.createdAt }).execute();
      containers.push(c.id);
      report.machines++;
    }
    const items: string[] = [];
    const databaseItems = new Set<string>();
    const policyIds = new Set(policies.values());
    const containerIds = new Set(containers);
    for (const key of await reader.list('items')) {
      const i = await reader.json<ItemRecord>(key);
      if (!containerIds.has(i.containerId)) {
        report.itemsSkipped.push({ id: i.id, name: i.name, vault: vault.name, why: `its machine ${i.containerId} has no record in this region` });
        continue;
      }
      let policyId: string | null = i.policyId;
      if (!policyIds.has(i.policyId)) {
        policyId = await defaultPolicy(i.itemKind);
        if (!policyId) {
          report.itemsSkipped.push({ id: i.id, name: i.name, vault: vault.name, why: `neither its policy ${i.policyId} nor the vault's DefaultPolicy has a record in this region` });
          continue;
        }
        log(`  item ${i.name}: its policy has no record in this region; it takes the vault's default policy (assign another with \`coffre policy assign\`)`);
      }
      await ctx.db.insertInto('items').values({ id: i.id, vault_id: vault.id, container_id: i.containerId, name: i.name, kind: i.itemKind, policy_id: policyId, created_at: i.createdAt }).execute();
      if (i.source) await ctx.db.insertInto('schedules').values({ item_id: i.id, source: JSON.stringify(i.source), last_run: now }).execute();
      items.push(i.id);
      if (i.itemKind === DB_ITEM_KIND) {
        databaseItems.add(i.id);
        // Each backup type's schedule starts from now, as the item's own does: no run is counted missed for the time the catalog was lost.
        await ctx.db.insertInto('db_schedules').values(DB_BACKUP_TYPES.map((type) => ({ item_id: i.id, type, last_run: now }))).execute();
      }
      report.items++;
    }
    for (const containerId of containers) report.packs += await recoverPacks(ctx, reader, containerId, now, log);
    // Recovered from the primary, a GRS vault's paired region is of unknown state: every object
    // is queued for it (what is already there is not copied again), and its points count as
    // replicated once the queue is through.
    let seq = 0;
    const secondary = from === 'primary' ? ctx.stores.secondaryTargets(vault.redundancy) : [];
    if (secondary.length) {
      const tasks = [];
      for (const key of await reader.list('')) {
        const size = (await reader.stat(key))?.size ?? 0;
        for (const target of secondary) tasks.push({ target, key, op: 'put' as const, bytes: size });
      }
      await ctx.stores.queue.scoped(vault.id).add(tasks);
      seq = await ctx.stores.queue.watermark(vault.id, secondary);
    }
    const itemIds = new Set(items);
    for (const key of (await reader.list('points')).filter((k) => k.endsWith('/record.json'))) {
      const pt = await reader.json<PointRecord>(key);
      // A database point comes back only with its chain facts (type, WAL segments, base), which its record carries.
      const database = databaseItems.has(pt.itemId) ? chainFacts(pt) : null;
      const why = !itemIds.has(pt.itemId) ? 'its item did not come back (no record of it in this region, or its machine is missing)'
        : database === undefined ? 'its record does not carry the database chain facts (written before they were recorded, or damaged): back the database up again'
          : await pointIncomplete(ctx, reader, pt);
      if (why) { report.pointsSkipped.push({ id: pt.id, vault: vault.name, why }); continue; }
      await ctx.db.transaction().execute(async (tx) => {
        await tx.insertInto('points').values({
          id: pt.id, vault_id: vault.id, item_id: pt.itemId, container_id: pt.containerId, job_id: pt.jobId, time: pt.time, kind: pt.pointKind,
          consistency: pt.consistency, expires_at: pt.time, retain_until: pt.retainUntil, files: pt.files, bytes: pt.bytes, chunk_count: pt.chunkCount,
        }).execute();
        await tx.insertInto('point_objects').values({ point_id: pt.id, manifest_sha256: pt.manifestSha256, refs_sha256: pt.refsSha256, replication_seq: seq }).execute();
        if (database) await tx.insertInto('db_points').values(dbPointRow(pt.id, pt.itemId, database)).execute();
      });
      report.points++;
    }
    for (const itemId of items) await refreshExpiries(ctx, itemId);
  }
  log(`recovered ${report.vaults.length} vault(s), ${report.policies} policies, ${report.machines} machine(s), ${report.items} item(s), ${report.points} point(s), ${report.packs} pack(s) from the ${from} region`
    + (report.itemsSkipped.length ? `; ${report.itemsSkipped.length} item(s) left out: ${report.itemsSkipped.map((s) => `${s.name} (${s.why})`).join('; ')}` : '')
    + (report.pointsSkipped.length ? `; ${report.pointsSkipped.length} point(s) left out: ${report.pointsSkipped.map((s) => `${s.id} (${s.why})`).join('; ')}` : ''));
  return report;
}

/** Indexes a container's packs from their footers (two ranged reads each). */
async function recoverPacks(ctx: DataContext, reader: RegionReader, containerId: string, now: string, log: (line: string) => void): Promise<number> {
  let n = 0;
  for (const key of await reader.list(`packs/${containerId}`)) {
    const packId = key.split('/').pop()!;
    try {
      const size = (await reader.stat(key))?.size;
      if (size === undefined || size < PACK_TRAILER_BYTES) throw new CoffreError('PackInvalid', 'too short to be a pack');
      const trailer = await reader.get(key, { offset: size - PACK_TRAILER_BYTES, length: PACK_TRAILER_BYTES });
      const footerLength = packFooterLength(trailer);
      // A tree pack is read whole: the vault indexes each page's references, which closures walk.
      const whole = packKind(trailer) === 'tree' ? await reader.get(key) : null;
      const entries = whole ? readPack(whole) : readPackFooter(await reader.get(key, { offset: size - footerLength, length: footerLength }), size);
      await ctx.db.transaction().execute(async (tx) => {
        if (whole) await indexTreePack(tx, containerId, whole, entries);
        await tx.insertInto('packs').values({ id: packId, container_id: containerId, size, blob_count: entries.length, created_at: now }).onConflict((oc) => oc.column('id').doNothing()).execute();
        for (let i = 0; i < entries.length; i += BATCH) {
          await tx.insertInto('blobs').values(entries.slice(i, i + BATCH).map((e) => ({
            container_id: containerId, id: e.id.toString('hex'), pack_id: packId, offset: e.offset, length: e.length, checksum: e.checksum.toString('hex'),
          }))).onConflict((oc) => oc.columns(['container_id', 'id']).doNothing()).execute();
        }
      });
      n++;
    } catch (e) {
      if (!(e instanceof CoffreError)) throw e;
      log(`  pack ${key} left out: ${e.message}`);
    }
  }
  return n;
}

/** A database point record's chain facts, or undefined when it has none that hold together. */
function chainFacts(pt: PointRecord): DbPointMeta | undefined {
  const parsed = dbPointMetaSchema.safeParse(pt.database);
  return parsed.success && !chainFactsProblem(parsed.data) ? parsed.data : undefined;
}

/** Why a point cannot come back from this region, or null when it is whole there. */
async function pointIncomplete(ctx: DataContext, reader: RegionReader, pt: PointRecord): Promise<string | null> {
  let manifest: Buffer;
  let refs: Buffer;
  try {
    manifest = await reader.get(manifestKey(pt.id));
    refs = await reader.get(refsKey(pt.id));
  } catch (e) {
    if (isNotFound(e) || e instanceof CoffreError) return 'its manifest or reference list is not in this region';
    throw e;
  }
  if (sha256(manifest) !== pt.manifestSha256 || sha256(refs) !== pt.refsSha256) return 'its manifest or reference list is damaged in this region';
  // Down through the tree pages to every chunk: a point comes back only with its whole closure.
  const closure = await checkClosure(ctx.db, pt.containerId, idsOf(refs));
  if (closure.missing.length === 0) await markVerified(ctx.db, pt.containerId, closure.verified);
  return closure.missing.length === 0 ? null : `${closure.missing.length} of the chunks or tree pages it references are in no pack of this region`;
}
