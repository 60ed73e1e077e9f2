/**
 * A database point's chain facts between their two homes: the catalog's `db_points` row and
 * the point's record in the vault's store (records.ts), from which a recovery brings the
 * chain back.
 */
import type { Insertable, Selectable } from 'kysely';
import { z } from 'zod';
import type { DbPointRow } from '../catalog/schema.js';
import type { DbBackupType, DbPointMeta } from '../core/api.js';

const iso = z.string().datetime({ offset: true });
const segment = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const lsn = z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/);

/** The shape of a point's chain facts, as an agent sends them and as a record holds them. */
export const dbPointMetaSchema = z.strictObject({
  type: z.enum(['Full', 'Differential', 'Log']),
  timeline: z.number().int().min(1),
  walSegmentSize: z.number().int().positive(),
  firstSegment: segment,
  lastSegment: segment,
  startLsn: lsn.nullable(),
  stopLsn: lsn.nullable(),
  consistentAt: iso.nullable(),
  basedOn: z.string().regex(/^[0-9a-f]{16,32}$/).nullable(),
  from: iso.nullable(),
  to: iso.nullable(),
});

/** What makes well-shaped chain facts impossible, or null when they hold together. */
export function chainFactsProblem(m: DbPointMeta): string | null {
  if (m.lastSegment < m.firstSegment) return 'a point\'s last WAL segment comes before its first';
  if (m.type === 'Log' ? !(m.from && m.to && m.from < m.to) : !(m.consistentAt && m.startLsn && m.stopLsn)) {
    return m.type === 'Log' ? 'a log point needs its range: from < to' : 'a base backup needs its start and stop positions and consistency time';
  }
  return null;
}

export function metaOf(r: Selectable<DbPointRow>): DbPointMeta {
  return {
    type: r.type as DbBackupType, timeline: Number(r.timeline), walSegmentSize: Number(r.wal_segment_size),
    firstSegment: Number(r.first_segment), lastSegment: Number(r.last_segment), startLsn: r.start_lsn, stopLsn: r.stop_lsn,
    consistentAt: r.consistent_at, basedOn: r.based_on, from: r.from_time, to: r.to_time,
  };
}

export function dbPointRow(pointId: string, itemId: string, m: DbPointMeta): Insertable<DbPointRow> {
  return {
    point_id: pointId, item_id: itemId, type: m.type, timeline: m.timeline, wal_segment_size: m.walSegmentSize,
    first_segment: m.firstSegment, last_segment: m.lastSegment, start_lsn: m.startLsn, stop_lsn: m.stopLsn,
    consistent_at: m.consistentAt, based_on: m.basedOn, from_time: m.from, to_time: m.to,
  };
}
