/**
 * One disk of a VM backup: read its snapshot in fixed-size blocks; skip blocks of zeros;
 * name every other block by its keyed hash; send only blocks the vault does not hold (a
 * block equal to the previous point's same block, or to any block stored before, is known).
 */
import { encodeBlob } from '../../core/blob.js';
import { chunkId, ID_BYTES, type KeySet } from '../../core/crypto.js';
import { isZeroBlock, readBlocks } from './block-reader.js';
import { blockCount } from './disk-manifest.js';
import type { PackUploader } from '../pack-uploader.js';

export interface DiskCounters {
  /** Bytes read from the disk's snapshot. */
  bytesScanned: number;
  /** Bytes of blocks the vault did not hold (before compression). */
  bytesNew: number;
  /** Bytes of packs sent (compressed and encrypted, with pack footers). */
  bytesUploaded: number;
  blocks: number;
  zeroBlocks: number;
  /** Blocks whose id differs from the previous point's same block (all data blocks on a first backup). */
  changedBlocks: number;
  /** Blocks sent to the vault. */
  newBlocks: number;
}

export const emptyDiskCounters = (): DiskCounters => ({ bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, blocks: 0, zeroBlocks: 0, changedBlocks: 0, newBlocks: 0 });

export interface ScanInput {
  file: string;
  dataSize: number;
  blockSize: number;
  keys: KeySet;
  /** Chunk ids (hex) the vault holds, shared by all disks; ids sent are added. */
  known: Set<string>;
  /** The previous point's block table of this disk, when its geometry is the same. */
  previous: Buffer | null;
  uploader: PackUploader;
  counters: DiskCounters;
  onBlock?: () => void;
  /** Stops the scan (another disk failed: this backup cannot be committed). */
  signal?: AbortSignal;
}

/** Returns the disk's block table: 32 bytes per block, all zeros for a block of zeros. */
export async function scanDisk(input: ScanInput): Promise<Buffer> {
  const { keys, known, previous, counters } = input;
  const table = Buffer.alloc(blockCount(input.dataSize, input.blockSize) * ID_BYTES);
  for await (const block of readBlocks(input.file, input.dataSize, input.blockSize)) {
    input.signal?.throwIfAborted();
    counters.blocks++;
    counters.bytesScanned += block.data.length;
    const at = block.index * ID_BYTES;
    if (isZeroBlock(block.data)) {
      counters.zeroBlocks++;
      if (previous && !isZeroBlock(previous.subarray(at, at + ID_BYTES))) counters.changedBlocks++;
    } else {
      const id = chunkId(keys.idKey, block.data);
      id.copy(table, at);
      if (!previous || !id.equals(previous.subarray(at, at + ID_BYTES))) counters.changedBlocks++;
      const hex = id.toString('hex');
      if (!known.has(hex)) {
        known.add(hex);
        counters.newBlocks++;
        counters.bytesNew += block.data.length;
        await input.uploader.addPaced(id, encodeBlob(keys, id, block.data));
      }
    }
    counters.bytesUploaded = input.uploader.uploaded;
    input.onBlock?.();
  }
  return table;
}
