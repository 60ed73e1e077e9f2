/**
 * A database point's chain facts between their two homes: the catalog's `db_points` row and
 * the point's record in the vault's store (records.ts), from which a recovery brings the
 * chain back.
 */
import type { Insertable, Selectable } from 'kysely';
import type { DbPointRow } from '../catalog/schema.js';
import type { DbBackupType, DbPointMeta } from '../core/api.js';

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
