/**
 * Reading a kept instant-restore snapshot block by block, for a restore: a clone file in the
 * snapshot folder, or an internal snapshot of a qcow2 image (snapshot-view.ts; a running VM's
 * QEMU may hold the image: the snapshot's clusters do not change while it exists). Blocks the
 * allocation map shows as zeros are not read. The caller checks every block against the
 * point's manifest before using it.
 */
import { join } from 'node:path';
import { readBlocks } from './block-reader.js';
import { dataRanges } from './block-plan.js';
import type { VmDisk } from './disk-manifest.js';
import { snapshotView } from './snapshot-view.js';
import type { HeldSnapshot, SnapshotDisk } from './snapshot-store.js';

export interface SnapshotBlock {
  index: number;
  offset: number;
  length: number;
  /** The block's bytes (valid until the next block is asked for); empty when `zero`. */
  data: Buffer;
  /** The snapshot says the block reads as zeros: nothing was read. */
  zero: boolean;
}

const READS_AHEAD = 4;

export async function* snapshotBlocks(snap: HeldSnapshot, disk: SnapshotDisk, d: VmDisk): AsyncGenerator<SnapshotBlock> {
  if (!disk.internal) {
    for await (const b of readBlocks(join(snap.dir, disk.file), d.size, d.blockSize)) yield { ...b, length: b.data.length, zero: false };
    return;
  }
  const view = await snapshotView(disk.internal);
  const ahead: Promise<SnapshotBlock>[] = [];
  try {
    if (view.size !== d.size) return;
    const count = Math.ceil(d.size / d.blockSize);
    // A few reads ahead, each into its own buffer; a buffer is reused once its block was yielded.
    const buffers = Array.from({ length: READS_AHEAD + 1 }, () => Buffer.allocUnsafe(d.blockSize));
    const read = async (index: number): Promise<SnapshotBlock> => {
      const offset = index * d.blockSize;
      const length = Math.min(d.blockSize, d.size - offset);
      if (dataRanges(view.allocation, offset, length).length === 0) return { index, offset, length, data: Buffer.alloc(0), zero: true };
      const buf = buffers[index % buffers.length]!.subarray(0, length);
      await view.reader.read(offset, length, buf);
      return { index, offset, length, data: buf, zero: false };
    };
    for (let i = 0; i < Math.min(READS_AHEAD, count); i++) ahead.push(read(i));
    for (let i = 0; i < count; i++) {
      const block = await ahead.shift()!;
      if (i + READS_AHEAD < count) ahead.push(read(i + READS_AHEAD));
      yield block;
    }
  } finally {
    // A caller that stops early leaves reads in flight: let them end before the reader closes.
    await Promise.allSettled(ahead);
    await view.reader.close();
  }
}
