/**
 * Writing a new qcow2 image (QEMU's docs/interop/qcow2.txt, version 3, 64 KiB clusters) for a
 * restore, without QEMU: the restore knows the whole disk and writes it once, so the image is
 * laid out as it goes — every cluster holding data is appended after the header as it
 * arrives, clusters of zeros are left unallocated (they read as zeros), and the tables that map
 * guest clusters to them (L2 tables, the L1 table, refcount blocks and their table) are written
 * after the data, with the header last. QEMU opens the result like any image it made:
 * `qemu-img check` finds no error and `qemu-img compare` reads the same guest bytes.
 *
 * Until `finish` the file is no valid image (the header names no tables yet); the caller gives
 * it its final name only afterwards.
 */
import { constants as C } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { CoffreError } from '../../core/errors.js';
import { flushBehind } from './flush-behind.js';

const CLUSTER_BITS = 16;
const CLUSTER = 1 << CLUSTER_BITS;
const L2_ENTRIES = CLUSTER / 8;
const REFCOUNT_ORDER = 4; // 16-bit refcounts, QEMU's default
const REFCOUNTS_PER_BLOCK = (CLUSTER * 8) / (1 << REFCOUNT_ORDER);
const HEADER_LENGTH = 104;
const COPIED = 2n ** 63n;
const ZERO_CLUSTER = Buffer.alloc(CLUSTER);

export interface Qcow2Writer {
  /** Writes guest bytes at `offset` (whole clusters of zeros are left unallocated). Any order; concurrent calls write distinct ranges. */
  write(data: Buffer, offset: number): Promise<void>;
  /** Writes the tables and the header, makes the image durable, closes it. */
  finish(): Promise<void>;
  abort(): Promise<void>;
}

/** Creates `file` exclusively (never through a symlink) for a guest disk of `size` bytes. */
export async function createQcow2Writer(file: string, size: number): Promise<Qcow2Writer> {
  const fh: FileHandle = await open(file, C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  const clusters = Math.ceil(size / CLUSTER);
  /** Host cluster number of each guest cluster (0: unallocated). */
  const map = new Float64Array(clusters);
  // Cluster 0 is the header; data follows.
  let next = 1;

  const flush = flushBehind(fh);

  /** Places a run of data clusters at the end of the file, contiguously: one write for the run. */
  const writeRun = async (firstGuest: number, data: Buffer) => {
    const count = Math.ceil(data.length / CLUSTER);
    const host = next;
    next += count;
    for (let i = 0; i < count; i++) {
      if (map[firstGuest + i]) throw new CoffreError('Internal', `cluster ${firstGuest + i} of the restored image written twice`);
      map[firstGuest + i] = host + i;
    }
    await flush.write(data, 0, data.length, host * CLUSTER);
  };

  return {
    async write(data, offset) {
      if (offset % CLUSTER !== 0 && data.length) throw new CoffreError('Internal', `qcow2 writes start on a cluster (${offset})`);
      const writes: Promise<void>[] = [];
      let runStart = -1;
      for (let at = 0; ; at += CLUSTER) {
        const end = at >= data.length;
        const piece = data.subarray(at, Math.min(data.length, at + CLUSTER));
        const zero = end || piece.equals(ZERO_CLUSTER.subarray(0, piece.length));
        if (!zero && runStart < 0) runStart = at;
        if (zero && runStart >= 0) {
          writes.push(writeRun((offset + runStart) / CLUSTER, data.subarray(runStart, Math.min(at, data.length))));
          runStart = -1;
        }
        if (end) break;
      }
      await Promise.all(writes);
    },
    async finish() {
      try {
        // L2 tables for each L1 entry that maps any data, after the data.
        const l1Size = Math.max(1, Math.ceil(clusters / L2_ENTRIES));
        const l1 = Buffer.alloc(Math.ceil((l1Size * 8) / CLUSTER) * CLUSTER);
        const tables: Buffer[] = [];
        for (let t = 0; t < l1Size; t++) {
          const l2 = Buffer.alloc(CLUSTER);
          let used = false;
          for (let i = 0; i < L2_ENTRIES && t * L2_ENTRIES + i < clusters; i++) {
            const host = map[t * L2_ENTRIES + i]!;
            if (!host) continue;
            l2.writeBigUInt64BE(BigInt(host * CLUSTER) | COPIED, i * 8);
            used = true;
          }
          if (!used) continue;
          l1.writeBigUInt64BE(BigInt((next + tables.length) * CLUSTER) | COPIED, t * 8);
          tables.push(l2);
        }
        const l2Start = next;
        const l1Start = l2Start + tables.length;
        const l1Clusters = l1.length / CLUSTER;
        // Refcount blocks and their table count themselves too: grow them until they cover all.
        const before = l1Start + l1Clusters;
        let blocks = 1;
        let tableClusters = 1;
        for (;;) {
          const total = before + blocks + tableClusters;
          const needBlocks = Math.ceil(total / REFCOUNTS_PER_BLOCK);
          const needTable = Math.ceil((needBlocks * 8) / CLUSTER);
          if (needBlocks === blocks && needTable === tableClusters) break;
          blocks = needBlocks;
          tableClusters = needTable;
        }
        const blocksStart = before;
        const tableStart = blocksStart + blocks;
        const total = tableStart + tableClusters;
        const refBlocks = Buffer.alloc(blocks * CLUSTER);
        for (let c = 0; c < total; c++) refBlocks.writeUInt16BE(1, c * 2);
        const refTable = Buffer.alloc(tableClusters * CLUSTER);
        for (let b = 0; b < blocks; b++) refTable.writeBigUInt64BE(BigInt((blocksStart + b) * CLUSTER), b * 8);

        const meta = Buffer.concat([...tables, l1, refBlocks, refTable]);
        await fh.write(meta, 0, meta.length, l2Start * CLUSTER);

        const h = Buffer.alloc(CLUSTER);
        h.writeUInt32BE(0x514649fb, 0);
        h.writeUInt32BE(3, 4);
        h.writeUInt32BE(CLUSTER_BITS, 20);
        h.writeBigUInt64BE(BigInt(size), 24);
        h.writeUInt32BE(l1Size, 36);
        h.writeBigUInt64BE(BigInt(l1Start * CLUSTER), 40);
        h.writeBigUInt64BE(BigInt(tableStart * CLUSTER), 48);
        h.writeUInt32BE(tableClusters, 56);
        h.writeUInt32BE(REFCOUNT_ORDER, 96);
        h.writeUInt32BE(HEADER_LENGTH, 100);
        // Header extensions: only the end marker (type 0, length 0) after the header.
        // The tables must be on disk before the header that names them.
        await flush.sync();
        await fh.write(h, 0, CLUSTER, 0);
        await fh.truncate(total * CLUSTER);
        await fh.sync();
      } finally {
        await fh.close();
      }
    },
    abort: () => fh.close(),
  };
}
