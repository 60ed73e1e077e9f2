/**
 * Reading a disk's bytes for a backup, from wherever the point-in-time view lives: an image
 * file (a raw or VHD snapshot copy) or an NBD export (QEMU's fleecing view of a running
 * VM's disk, or qemu-nbd serving a qcow2). With an allocation map, an NBD reader reads only
 * the data extents of a block and fills the rest with zeros, so holes and zero clusters
 * never cross the socket.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CoffreError } from '../../core/errors.js';
import { dataRanges } from './block-plan.js';
import type { NbdClient, Extent } from './nbd-client.js';

export interface DiskReader {
  /** Fills buf[0, length) with the disk's bytes at `offset`; returns the bytes actually read from the disk. */
  read(offset: number, length: number, buf: Buffer): Promise<number>;
  close(): Promise<void>;
}

export async function fileReader(file: string, dataSize: number): Promise<DiskReader> {
  const fh: FileHandle = await open(file, 'r');
  return {
    async read(offset, length, buf) {
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) throw new CoffreError('Internal', `${file} ended at ${offset + got} bytes, before its ${dataSize} bytes of disk data (truncated while read?)`);
        got += bytesRead;
      }
      return length;
    },
    close: () => fh.close(),
  };
}

export function nbdReader(nbd: NbdClient, allocation: Extent[] | null, onClose: () => Promise<void> = () => nbd.close()): DiskReader {
  return {
    async read(offset, length, buf) {
      const ranges = dataRanges(allocation, offset, length);
      let at = offset;
      let read = 0;
      for (const [from, to] of ranges) {
        if (from > at) buf.fill(0, at - offset, from - offset);
        // With an allocation map the range is known to hold data: the server need not look for holes.
        await nbd.read(from, to - from, buf.subarray(from - offset, to - offset), allocation !== null);
        read += to - from;
        at = to;
      }
      if (at < offset + length) buf.fill(0, at - offset, length);
      return read;
    },
    close: onClose,
  };
}
