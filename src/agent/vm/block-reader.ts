/**
 * Reads a disk image in fixed-size blocks, one block ahead: the next read is in flight while
 * the caller hashes and packs the current one. Two buffers are reused for the whole disk.
 */
import { open } from 'node:fs/promises';
import { CoffreError } from '../../core/errors.js';

export interface Block {
  index: number;
  offset: number;
  /** Valid until the caller asks for the block after next. */
  data: Buffer;
}

const ZEROS = new Map<number, Buffer>();

/** Whether a buffer holds only zero bytes (memcmp against a shared zero buffer). */
export function isZeroBlock(data: Buffer): boolean {
  let zero = ZEROS.get(data.length);
  if (!zero) {
    zero = Buffer.alloc(data.length);
    if (ZEROS.size < 8) ZEROS.set(data.length, zero);
  }
  return data.equals(zero);
}

/** Blocks of `file` from offset 0 up to `dataSize` (the last one may be shorter). */
export async function* readBlocks(file: string, dataSize: number, blockSize: number, only?: (index: number) => boolean): AsyncGenerator<Block> {
  const fh = await open(file, 'r');
  let next: Promise<Block> | null = null;
  try {
    const count = Math.ceil(dataSize / blockSize);
    const buffers = [Buffer.allocUnsafe(blockSize), Buffer.allocUnsafe(blockSize)];
    const wanted: number[] = [];
    for (let i = 0; i < count; i++) if (!only || only(i)) wanted.push(i);
    const read = async (k: number): Promise<Block> => {
      const index = wanted[k]!;
      const offset = index * blockSize;
      const length = Math.min(blockSize, dataSize - offset);
      const buf = buffers[k % 2]!;
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) throw new CoffreError('Internal', `${file} ended at ${offset + got} bytes, before its ${dataSize} bytes of disk data (truncated while read?)`);
        got += bytesRead;
      }
      return { index, offset, data: buf.subarray(0, length) };
    };
    next = wanted.length ? read(0) : null;
    for (let k = 0; next; k++) {
      const block = await next;
      next = k + 1 < wanted.length ? read(k + 1) : null;
      yield block;
    }
  } finally {
    // A caller that stops early leaves one read in flight: let it end before closing.
    await next?.catch(() => undefined);
    await fh.close();
  }
}
