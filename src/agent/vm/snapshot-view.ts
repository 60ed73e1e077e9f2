/**
 * An internal snapshot of a qcow2 image as a disk to read: straight from the image file when
 * Coffre's reader handles its layout (qcow2-snapshot.ts: no QEMU on the data path), else
 * through qemu-nbd serving the snapshot (backing files, compressed clusters, ...).
 */
import type { DiskReader } from './disk-reader.js';
import { nbdReader } from './disk-reader.js';
import { BASE_ALLOCATION, type Extent } from './nbd-protocol.js';
import { openQcow2Snapshot } from './qcow2-snapshot.js';
import { serveImage } from './qemu-nbd.js';

export interface SnapshotView { size: number; allocation: Extent[]; reader: DiskReader; via: 'file' | 'qemu-nbd' }

export async function snapshotView(s: { image: string; name: string }): Promise<SnapshotView> {
  const direct = await openQcow2Snapshot(s.image, s.name);
  if (direct) return { size: direct.size, allocation: direct.allocation, reader: direct.reader, via: 'file' };
  const served = await serveImage(s.image, { format: 'qcow2', readOnly: true, snapshot: s.name, noLock: true });
  try {
    const nbd = await served.connect([BASE_ALLOCATION]);
    const allocation = (await nbd.blockStatus(0, nbd.size)).get(BASE_ALLOCATION)!;
    return { size: nbd.size, allocation, via: 'qemu-nbd', reader: nbdReader(nbd, allocation, async () => { await nbd.close(); await served.close(); }) };
  } catch (e) {
    await served.close();
    throw e;
  }
}
