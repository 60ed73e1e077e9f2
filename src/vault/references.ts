/**
 * What a point keeps alive, without a key. A point's reference list names chunks and tree
 * pages (src/core/tree.ts); a page names further pages and chunks in the clear-text prefix it
 * is stored with, which the vault indexes in `trees` when its pack arrives. The closure of a
 * point's list is everything a restore of it reads.
 *
 * A point is committed only when its closure is stored. Checking the whole closure at every
 * commit would cost as much as the tree is large, so a page is marked `verified` once a commit
 * found its subtree complete; later commits stop at verified pages, and an unchanged backup
 * checks nothing but its roots. GC never deletes part of a live closure, so a verified page's
 * subtree stays complete.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { ID_BYTES } from '../core/crypto.js';
import type { PackEntry } from '../core/pack.js';
import { readRefsPrefix } from '../core/tree.js';

const BATCH = 400;

function batches<T>(all: readonly T[], size = BATCH): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
}

/** Indexes the pages of a tree pack (inside the transaction that indexes its blobs). */
export async function indexTreePack(db: Kysely<Database>, containerId: string, data: Buffer, entries: readonly PackEntry[]): Promise<void> {
  for (const group of batches(entries, 100)) {
    await db.insertInto('trees').values(group.map((e) => {
      const stored = data.subarray(e.offset, e.offset + e.length);
      const prefix = readRefsPrefix(stored);
      return { container_id: containerId, id: e.id.toString('hex'), refs: Buffer.from(stored.subarray(0, prefix.length)), verified: 0 };
    })).onConflict((oc) => oc.columns(['container_id', 'id']).doNothing()).execute();
  }
}

export const idsOf = (list: Buffer, from = 0) => {
  const out: string[] = [];
  for (let o = from; o < list.length; o += ID_BYTES) out.push(list.toString('hex', o, o + ID_BYTES));
  return out;
};

async function indexed(db: Kysely<Database>, containerId: string, ids: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const group of batches(ids)) {
    const rows = await db.selectFrom('blobs').select('id').where('container_id', '=', containerId).where('id', 'in', group).execute();
    for (const r of rows) found.add(r.id);
  }
  return found;
}

export interface ClosureCheck {
  /** Ids the point needs that the vault does not hold (or pages stored without their references). */
  missing: string[];
  /** Pages found complete by this check, to be marked verified when the point commits. */
  verified: string[];
}

/**
 * Checks that everything `refs` reaches is stored, walking down only through pages not yet
 * verified. A page whose children are incomplete makes its point uncommittable.
 */
export async function checkClosure(db: Kysely<Database>, containerId: string, refs: string[]): Promise<ClosureCheck> {
  const missing: string[] = [];
  const verified: string[] = [];
  const seen = new Set<string>();
  let level = [...new Set(refs)];
  // Pages a parent names as pages: they must be indexed as pages, not only as blobs.
  let mustBeTrees = new Set<string>();
  while (level.length > 0) {
    const present = await indexed(db, containerId, level);
    const next: string[] = [];
    const nextTrees = new Set<string>();
    const unverified = new Map<string, Buffer>();
    const trees = new Set<string>();
    for (const group of batches(level)) {
      const rows = await db.selectFrom('trees').select(['id', 'refs', 'verified']).where('container_id', '=', containerId).where('id', 'in', group).execute();
      for (const r of rows) {
        trees.add(r.id);
        if (!r.verified) unverified.set(r.id, r.refs);
      }
    }
    for (const id of level) {
      if (!present.has(id) || (mustBeTrees.has(id) && !trees.has(id))) { missing.push(id); continue; }
      const prefix = unverified.get(id);
      if (!prefix) continue;
      verified.push(id);
      const { trees: children, chunks } = readRefsPrefix(prefix);
      for (const c of children) {
        const hex = c.toString('hex');
        nextTrees.add(hex);
        if (!seen.has(hex)) { seen.add(hex); next.push(hex); }
      }
      for (const c of chunks) {
        const hex = c.toString('hex');
        if (!seen.has(hex)) { seen.add(hex); next.push(hex); }
      }
    }
    level = next;
    mustBeTrees = nextTrees;
  }
  return { missing, verified };
}

export async function markVerified(db: Kysely<Database>, containerId: string, ids: string[]): Promise<void> {
  for (const group of batches(ids)) {
    await db.updateTable('trees').set({ verified: 1 }).where('container_id', '=', containerId).where('id', 'in', group).execute();
  }
}

/** A container's pages and what each references, read from the catalog once, for closures. */
export class ReferenceGraph {
  private constructor(private readonly pages: Map<string, Buffer>) {}

  static async load(db: Kysely<Database>, containerId: string): Promise<ReferenceGraph> {
    const pages = new Map<string, Buffer>();
    for (const r of await db.selectFrom('trees').select(['id', 'refs']).where('container_id', '=', containerId).execute()) pages.set(r.id, r.refs);
    return new ReferenceGraph(pages);
  }

  /** Every id the given reference lists reach: the live set of GC, what verify checks. */
  closure(lists: Iterable<Buffer>): Set<string> {
    const live = new Set<string>();
    const stack: string[] = [];
    const add = (id: string) => { if (!live.has(id)) { live.add(id); stack.push(id); } };
    for (const list of lists) for (const id of idsOf(list)) add(id);
    while (stack.length > 0) {
      const prefix = this.pages.get(stack.pop()!);
      if (!prefix) continue;
      const { trees, chunks } = readRefsPrefix(prefix);
      for (const c of trees) add(c.toString('hex'));
      for (const c of chunks) add(c.toString('hex'));
    }
    return live;
  }
}

/** Forgets the pages among deleted blobs (inside GC's deleting transaction). */
export async function dropTrees(db: Kysely<Database>, containerId: string, ids: string[]): Promise<void> {
  for (const group of batches(ids)) {
    await db.deleteFrom('trees').where('container_id', '=', containerId).where('id', 'in', group).execute();
  }
}
