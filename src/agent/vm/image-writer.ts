/**
 * Where a restore writes one disk: a new sparse raw image, a fixed VHD (raw data then its
 * footer), a block device (written in place, zeros included), or a new qcow2 image
 * (qcow2-writer.ts: clusters of zeros stay unallocated).
 *
 * Blocks may arrive in any order. Blocks of zeros are never written to an image (a new file or
 * qcow2 reads zeros where nothing is written); a device gets them with `zero`.
 */
import { constants as C } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { flushBehind } from './flush-behind.js';
import { createQcow2Writer } from './qcow2-writer.js';
import { buildVhdFooter, vhdDataSize } from './vhd.js';

export type RestoreFormat = 'raw' | 'vhd' | 'qcow2';

export interface ImageWriter {
  write(data: Buffer, offset: number): Promise<void>;
  /** A block of zeros: only a device needs it written. */
  zero(offset: number, length: number): Promise<void>;
  /** Sizes the image, adds a VHD footer, makes everything durable. */
  finish(): Promise<void>;
  /** Closes after a failure (the caller removes the file). */
  abort(): Promise<void>;
}

const PAGE = 4096;
const ZERO_PAGE = Buffer.alloc(PAGE);

/** Calls `emit` for each run of `data` that is not all zeros, at `granule` granularity. */
async function nonZeroRuns(data: Buffer, granule: number, zero: Buffer, emit: (from: number, to: number) => Promise<void>): Promise<void> {
  let runStart = -1;
  for (let pos = 0; pos <= data.length; pos += granule) {
    const end = Math.min(data.length, pos + granule);
    const isZero = pos === data.length || data.subarray(pos, end).equals(zero.subarray(0, end - pos));
    if (!isZero && runStart < 0) runStart = pos;
    if (isZero && runStart >= 0) {
      await emit(runStart, pos);
      runStart = -1;
    }
  }
  if (runStart >= 0) await emit(runStart, data.length);
}

/** A new raw image (or fixed VHD) at `work`, created exclusively and never through a symlink. */
export async function fileWriter(work: string, size: number, vhd: { footer: Buffer | null } | null): Promise<ImageWriter> {
  const fh: FileHandle = await open(work, C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  const flush = flushBehind(fh);
  return {
    write: (data, offset) => nonZeroRuns(data, PAGE, ZERO_PAGE, (from, to) => flush.write(data, from, to - from, offset + from)),
    zero: async () => undefined,
    async finish() {
      try {
        if (vhd) {
          const footer = vhd.footer && vhdDataSize(size) === size ? vhd.footer : buildVhdFooter(size);
          await fh.truncate(vhdDataSize(size));
          await fh.write(footer, 0, footer.length, vhdDataSize(size));
        } else await fh.truncate(size);
        // The image must be on disk before it takes its final name.
        await flush.sync();
      } finally {
        await fh.close();
      }
    },
    abort: () => fh.close(),
  };
}

export async function deviceWriter(device: string): Promise<ImageWriter> {
  const fh = await open(device, 'r+');
  const flush = flushBehind(fh);
  return {
    write: (data, offset) => flush.write(data, 0, data.length, offset),
    zero: (offset, length) => flush.write(Buffer.alloc(length), 0, length, offset),
    async finish() {
      try {
        await flush.sync();
      } finally {
        await fh.close();
      }
    },
    abort: () => fh.close(),
  };
}

/** A new qcow2 image at `work`, laid out by Coffre (qcow2-writer.ts). */
export async function qcow2Writer(work: string, size: number): Promise<ImageWriter> {
  const w = await createQcow2Writer(work, size);
  return { write: (data, offset) => w.write(data, offset), zero: async () => undefined, finish: () => w.finish(), abort: () => w.abort() };
}
