/**
 * Changed-block tracking with QEMU's persistent dirty bitmaps, as pure decisions (the QMP side
 * is in live-disks.ts). Each backup of a disk, in one QMP transaction with its point-in-time
 * view, adds a new bitmap `coffre-<item>-<n+1>` and disables the one recording until then, so
 * the disabled bitmaps together hold exactly the writes between the last committed point and
 * this one. Only once the point is committed are the older bitmaps removed; a backup that fails
 * (or is killed) removes nothing, so the next one merges every bitmap since the last committed
 * point and still sees every change:
 *
 *   committed point P (bitmap 4 starts) → failed backup (4 disabled, 5 starts) →
 *   backup Q (5 disabled, 6 starts; reads 4 ∪ 5) → Q committed: 4 and 5 removed, 6 tracks.
 *
 * The agent records, per VM, the point its tracking starts from and the bitmap that started
 * with it. When QEMU no longer has that bitmap (restarted without saving it, the disk
 * replaced), or the chain after it is broken, the disk is read in full and the job says why.
 */
export interface QemuBitmap {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  /** Set when QEMU loaded a persistent bitmap that was not saved cleanly: its content is unknown. */
  inconsistent?: boolean;
}

/** A disk's tracking after a committed point: the bitmap that started recording with it. */
export interface TrackedDisk { node: string; file: string; size: number; bitmap: string }

export interface TrackingState { version: 1; pointId: string; disks: (TrackedDisk | null)[] }

export interface TrackingPlan {
  mode: 'incremental' | 'full';
  /** Why the disk is read in full. */
  reason?: string;
  /** The bitmaps whose union is the change since `since`, oldest first (empty for a full read). */
  chain: string[];
  /** The committed point the change is relative to. */
  since: string | null;
  /** The bitmap this backup adds: it tracks changes from this point on. */
  next: string;
  /** Coffre's bitmap recording until now, disabled in the same transaction. */
  disable: string | null;
}

export const bitmapPrefix = (item: string) => `coffre-${item}-`;
/** The temporary, non-persistent union of a chain, exported for one backup. */
export const mergedBitmapName = (item: string) => `${bitmapPrefix(item)}merged`;

/** The sequence number of one of this item's bitmaps, or null for any other bitmap. */
export function bitmapSeq(item: string, name: string): number | null {
  const prefix = bitmapPrefix(item);
  if (!name.startsWith(prefix)) return null;
  const rest = name.slice(prefix.length);
  return /^[1-9]\d{0,15}$/.test(rest) ? Number(rest) : null;
}

/** This item's bitmaps on a node, in sequence order. */
export function ourBitmaps(item: string, bitmaps: QemuBitmap[]): (QemuBitmap & { seq: number })[] {
  return bitmaps.flatMap((b) => {
    const seq = bitmapSeq(item, b.name);
    return seq === null ? [] : [{ ...b, seq }];
  }).sort((a, b) => a.seq - b.seq);
}

export function planTracking(item: string, disk: { index: number; node: string; file: string; size: number }, bitmaps: QemuBitmap[], state: TrackingState | null): TrackingPlan {
  const ours = ourBitmaps(item, bitmaps);
  const latest = ours[ours.length - 1];
  const next = `${bitmapPrefix(item)}${(latest?.seq ?? 0) + 1}`;
  const disable = latest && latest.recording && !latest.inconsistent ? latest.name : null;
  const full = (reason: string): TrackingPlan => ({ mode: 'full', reason, chain: [], since: null, next, disable });

  const prev = state?.disks[disk.index] ?? null;
  if (!state || !prev) return full('first backup of this disk through QEMU: every allocated block is read');
  if (prev.node !== disk.node || prev.file !== disk.file) return full(`the disk was replaced (it was ${prev.file} as node ${prev.node}): every allocated block is read`);
  if (prev.size !== disk.size) return full(`the disk's size changed from ${prev.size} to ${disk.size} bytes: every allocated block is read`);
  const base = ours.find((b) => b.name === prev.bitmap);
  if (!base) return full(`QEMU has no dirty bitmap ${prev.bitmap} since point ${state.pointId} (QEMU was restarted without saving it, or the disk image was replaced): every allocated block is read`);
  const chain = ours.filter((b) => b.seq >= base.seq);
  for (let i = 0; i < chain.length; i++) {
    if (chain[i]!.seq !== base.seq + i) return full(`the dirty bitmaps since point ${state.pointId} are incomplete (${bitmapPrefix(item)}${base.seq + i} is missing): every allocated block is read`);
  }
  const bad = chain.find((b) => b.inconsistent);
  if (bad) return full(`dirty bitmap ${bad.name} is inconsistent (QEMU stopped without saving it): every allocated block is read`);
  const busy = chain.find((b) => b.busy);
  if (busy) return full(`dirty bitmap ${busy.name} is in use by another QEMU operation: every allocated block is read`);
  if (!latest!.recording) return full(`dirty bitmap ${latest!.name} stopped recording (disabled outside Coffre): every allocated block is read`);
  return { mode: 'incremental', chain: chain.map((b) => b.name), since: state.pointId, next, disable };
}

/** Coffre's bitmaps that are no longer needed once a point whose new bitmap is `keep` is committed. */
export function bitmapsToRemove(item: string, bitmaps: QemuBitmap[], keep: string): string[] {
  const names = ourBitmaps(item, bitmaps).map((b) => b.name).filter((n) => n !== keep);
  if (bitmaps.some((b) => b.name === mergedBitmapName(item))) names.push(mergedBitmapName(item));
  return names;
}
