/**
 * Everything one point reaches, read from the backup server's own catalog without any key: the
 * ids of its reference list, and down through tree pages the ids each page's clear-text prefix
 * names (src/core/tree.ts, indexed in `trees` when its pack arrived). A VM point's list is flat.
 *
 * Walked level by level with batched queries, so its cost follows the point, not the whole
 * container (ReferenceGraph loads a container's every page, which GC needs and a copy does not).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { readRefsPrefix } from '../core/tree.js';
import { idsOf } from '../vault/references.js';

const BATCH = 400;

export interface PointClosure {
  /** Every id the point reaches, each once, parents before children. */
  ids: string[];
  /** Those that are tree pages (kept in tree packs, with their prefixes). */
  pages: Set<string>;
}

export async function pointClosure(db: Kysely<Database>, containerId: string, refs: Buffer): Promise<PointClosure> {
  const seen = new Set<string>();
  const ids: string[] = [];
  const pages = new Set<string>();
  let level = idsOf(refs).filter((id) => !seen.has(id) && seen.add(id));
  while (level.length > 0) {
    ids.push(...level);
    const next: string[] = [];
    for (let i = 0; i < level.length; i += BATCH) {
      const rows = await db.selectFrom('trees').select(['id', 'refs']).where('container_id', '=', containerId).where('id', 'in', level.slice(i, i + BATCH)).execute();
      for (const r of rows) {
        pages.add(r.id);
        const { trees, chunks } = readRefsPrefix(r.refs);
        for (const c of [...trees, ...chunks]) {
          const hex = c.toString('hex');
          if (!seen.has(hex)) { seen.add(hex); next.push(hex); }
        }
      }
    }
    level = next;
  }
  return { ids, pages };
}
