/**
 * One disk of a VM backup: the blocks its plan says to read (block-plan.ts) are read, a few
 * at a time, and handed to the encoder's workers, which skip blocks of zeros, name every other
 * block by its keyed hash and store only blocks the vault does not hold. Blocks the plan
 * keeps take the previous point's id without being read; blocks it knows are zeros are holes.
 */
import { ID_BYTES } from '../../core/crypto.js';
import type { BlockEncoder } from './block-encoder.js';
import { KEEP, READ, ZERO } from './block-plan.js';
import type { DiskReader } from './disk-reader.js';

export interface DiskCounters {
  /** Bytes read from the disk's point-in-time view (holes and unchanged blocks are not read). */
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
  /** Blocks whose bytes were read (the others were unchanged or known to be zeros). */
  blocksRead: number;
}

export const emptyDiskCounters = (): DiskCounters => ({ bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, blocks: 0, zeroBlocks: 0, changedBlocks: 0, newBlocks: 0, blocksRead: 0 });

/** Reads in flight per disk: enough to keep an NBD server or the page cache busy while workers encode. */
const READS_IN_FLIGHT = 4;

export interface ScanInput {
  disk: number;
  reader: DiskReader;
  size: number;
  blockSize: number;
  /** Per block: KEEP, READ or ZERO (block-plan.ts); every block is read when absent. */
  plan: Uint8Array | null;
  /** The previous point's block table of this disk, when its geometry is the same. */
  previous: Buffer | null;
  encoder: BlockEncoder;
  counters: DiskCounters;
  onBlock?: () => void;
  /** Stops the scan (another disk failed: this backup cannot be committed). */
  signal?: AbortSignal;
}

const isZeroId = (t: Buffer, at: number) => {
  for (let i = at; i < at + ID_BYTES; i++) if (t[i] !== 0) return false;
  return true;
};

/** Returns the disk's block table: 32 bytes per block, all zeros for a block of zeros. */
export async function scanDisk(input: ScanInput): Promise<Buffer> {
  const { counters, previous, plan, encoder, blockSize, size } = input;
  const count = Math.ceil(size / blockSize);
  const table = Buffer.alloc(count * ID_BYTES);
  const sameGeometry = previous !== null && previous.length === table.length;
  let next = 0;
  const worker = async () => {
    for (;;) {
      input.signal?.throwIfAborted();
      const b = next++;
      if (b >= count) return;
      const at = b * ID_BYTES;
      const step = plan ? plan[b]! : READ;
      counters.blocks++;
      if (step === KEEP) {
        previous!.copy(table, at, at, at + ID_BYTES);
        if (isZeroId(table, at)) counters.zeroBlocks++;
        input.onBlock?.();
        continue;
      }
      if (step === ZERO) {
        counters.zeroBlocks++;
        if (sameGeometry && !isZeroId(previous, at)) counters.changedBlocks++;
        input.onBlock?.();
        continue;
      }
      const offset = b * blockSize;
      const length = Math.min(blockSize, size - offset);
      const buf = await encoder.buffer();
      let read: number;
      try {
        read = await input.reader.read(offset, length, buf);
      } catch (e) {
        encoder.giveBack(buf);
        throw e;
      }
      counters.blocksRead++;
      counters.bytesScanned += read;
      const r = await encoder.encode(input.disk, buf, length);
      if (r.id) r.id.copy(table, at);
      if (!r.id) counters.zeroBlocks++;
      if (!sameGeometry ? r.id !== null : !table.subarray(at, at + ID_BYTES).equals(previous.subarray(at, at + ID_BYTES))) counters.changedBlocks++;
      if (r.isNew) {
        counters.newBlocks++;
        counters.bytesNew += length;
      }
      counters.bytesUploaded = encoder.uploaded(input.disk);
      input.onBlock?.();
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_IN_FLIGHT, Math.max(1, count)) }, worker));
  counters.bytesUploaded = encoder.uploaded(input.disk);
  return table;
}
