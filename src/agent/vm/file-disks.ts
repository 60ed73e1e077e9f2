/**
 * The disk session (disk-session.ts) for disks given as files or devices on this machine:
 *
 * - raw images, fixed VHDs and block devices are cloned into the staging folder (a reflink
 *   where the file system can, else a sparse copy) and the clone is read as a file;
 * - a qcow2 image gets an internal snapshot (qemu-img: the image's own copy-on-write, no data
 *   copied), whose clusters are read from the image file (snapshot-view.ts); holes and zero
 *   clusters go unread.
 *
 * No bitmap tracks these disks' changes: every block is read and compared with the previous
 * point by its hash (`compare`). A VM that runs under QEMU is better protected with --qmp.
 */
import { join } from 'node:path';
import type { DiskProbe } from './disk-source.js';
import { probeSnapshot } from './disk-source.js';
import type { DiskSession, SessionDisk } from './disk-session.js';
import { fileReader } from './disk-reader.js';
import { deleteInternalSnapshots, internalSnapshotName, takeInternalSnapshot } from './internal-snapshots.js';
import { snapshotView } from './snapshot-view.js';
import { cloneDisk, type InternalSnapshot, type SnapshotDisk, type SnapshotMethod } from './snapshot-store.js';

/** Files in the staging folder: disk-N.img, or .vhd for a VHD so the copy says what it is. */
const snapshotFile = (index: number, probe: DiskProbe) => `disk-${index}.${probe.format === 'vhd' ? 'vhd' : 'img'}`;

export function fileDiskSession(probes: DiskProbe[], staging: string, pointId: string): DiskSession {
  const methods: SnapshotMethod[] = [];
  const internal = new Map<number, InternalSnapshot>();
  const opened: SessionDisk[] = [];
  const snaps: SnapshotDisk[] = [];
  const notes: string[] = [];

  return {
    notes,
    async take() {
      await Promise.all(probes.map(async (p, i) => {
        if (p.format === 'qcow2') {
          const s: InternalSnapshot = { image: p.path, name: internalSnapshotName(pointId) };
          await takeInternalSnapshot(s);
          internal.set(i, s);
          methods[i] = 'internal';
        } else {
          methods[i] = await cloneDisk(p.path, join(staging, snapshotFile(i, p)), p.kind === 'device');
        }
      }));
      methods.forEach((m, i) => {
        if (m === 'copy') notes.push(`disk ${i}: the instant-restore snapshot is a full copy of ${probes[i]!.path} (the snapshot folder's file system cannot make reflink clones; put --snapshot-dir on XFS or Btrfs beside the disks)`);
      });
    },
    async open() {
      for (const [i, p] of probes.entries()) {
        const s = internal.get(i);
        if (s) {
          const view = await snapshotView(s);
          opened.push({
            index: i, path: p.path, format: 'qcow2', size: view.size, dirty: null, since: null, allocation: view.allocation, tracking: { mode: 'compare' }, snapshot: 'internal',
            reader: view.reader,
          });
          snaps.push({ index: i, file: '', format: 'qcow2', dataSize: view.size, fileSize: 0, mtimeMs: 0, internal: s });
          continue;
        }
        const file = snapshotFile(i, p);
        const snap = await probeSnapshot(join(staging, file), p.kind, p.path);
        opened.push({
          index: i, path: p.path, format: snap.format, size: snap.dataSize, ...(snap.vhdFooter ? { vhdFooter: snap.vhdFooter } : {}),
          dirty: null, since: null, allocation: null, tracking: { mode: 'compare' }, snapshot: methods[i]!, reader: await fileReader(join(staging, file), snap.dataSize),
        });
        snaps.push({ index: i, file, format: snap.format, dataSize: snap.dataSize, fileSize: 0, mtimeMs: 0 });
      }
      return opened;
    },
    snapshotDisks: () => snaps,
    async committed() {
      // Nothing tracks changes here: the next backup compares every block with this point's.
    },
    async close(keepSnapshots) {
      await Promise.allSettled(opened.map((d) => d.reader.close()));
      // Internal snapshots of a point that was not committed (or not kept) are nobody's instant-restore copy.
      if (!keepSnapshots) await deleteInternalSnapshots([...internal.values()]);
    },
  };
}
