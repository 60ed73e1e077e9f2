/**
 * Reading an internal snapshot of a qcow2 image straight from the image file (QEMU's
 * docs/interop/qcow2.txt): the snapshot table gives the snapshot's L1 table, whose L2 tables
 * map each guest cluster to a host offset, a zero cluster, or nothing. The backup reads the
 * snapshot's clusters with pread, holes never, and QEMU spends no CPU on the data path.
 *
 * Why this is safe while a running QEMU writes the same file: QEMU takes the snapshot by
 * writing its L1 table, raising the refcount of every cluster it references and flushing
 * every cached table to the file before it records the snapshot (qcow2_snapshot_create,
 * qcow2_update_snapshot_refcount: bdrv_flush). From then on every cluster of the snapshot is
 * shared (refcount 2 or more), and QEMU never writes a shared cluster in place: a guest write
 * allocates a copy (copy-on-write), for data and L2 tables alike. The snapshot's clusters are
 * therefore immutable until the snapshot is deleted, which only Coffre does, after reading.
 *
 * Anything this reader does not handle returns null, and the caller reads the snapshot through
 * qemu-nbd instead: a backing file, compressed clusters, extended L2 entries, an external data
 * file, encryption, lazy refcounts (refcounts QEMU may not have written) or unknown features.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CoffreError } from '../../core/errors.js';
import type { DiskReader } from './disk-reader.js';
import { STATE_HOLE, STATE_ZERO, type Extent } from './nbd-protocol.js';

const MAGIC = 0x514649fb;
const HEADER_BYTES = 104;
const SNAPSHOT_ENTRY_BYTES = 40;
/** Incompatible feature bits: 0 dirty, 1 corrupt, 2 external data file, 3 compression type, 4 extended L2. */
const INCOMPAT_CORRUPT = 2;
const INCOMPAT_HANDLED = 8; // a compression type is fine: compressed clusters are refused one by one
const COMPAT_LAZY_REFCOUNTS = 1;

export interface Qcow2Snapshot {
  /** Bytes of the guest disk at the snapshot. */
  size: number;
  /** Data (flags 0) and zero (STATE_HOLE | STATE_ZERO) extents covering the disk. */
  allocation: Extent[];
  reader: DiskReader;
  /** How the snapshot was found in the image: its id, L1 table and size, for messages. */
  describe: string;
}

/** A run of guest bytes: at `host` in the file, or zeros when `host` is -1. */
interface Run { guest: number; length: number; host: number }

async function readExact(fh: FileHandle, offset: number, length: number, what: string, file: string): Promise<Buffer> {
  const b = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(b, got, length - got, offset + got);
    if (bytesRead === 0) throw new CoffreError('HypervisorError', `${file}: the qcow2 ${what} at ${offset} lies past the end of the file`);
    got += bytesRead;
  }
  return b;
}

/** Bits 9-55 of a table entry: the host offset it points to. */
const entryOffset = (b: Buffer, at: number) => (b.readUInt32BE(at) & 0x00ffffff) * 2 ** 32 + ((b.readUInt32BE(at + 4) & 0xfffffe00) >>> 0);

interface SnapshotEntry { id: string; name: string; l1Offset: number; l1Size: number; diskSize: number | null }

async function snapshotTable(fh: FileHandle, offset: number, count: number, file: string): Promise<SnapshotEntry[]> {
  const out: SnapshotEntry[] = [];
  let at = offset;
  for (let i = 0; i < count; i++) {
    const h = await readExact(fh, at, SNAPSHOT_ENTRY_BYTES, 'snapshot table', file);
    const idSize = h.readUInt16BE(12);
    const nameSize = h.readUInt16BE(14);
    const extraSize = h.readUInt32BE(36);
    const rest = await readExact(fh, at + SNAPSHOT_ENTRY_BYTES, extraSize + idSize + nameSize, 'snapshot table', file);
    const diskSize = extraSize >= 16 ? Number(rest.readBigUInt64BE(8)) : null;
    out.push({
      l1Offset: entryOffset(h, 0), l1Size: h.readUInt32BE(8), diskSize,
      id: rest.toString('utf8', extraSize, extraSize + idSize), name: rest.toString('utf8', extraSize + idSize, extraSize + idSize + nameSize),
    });
    at += SNAPSHOT_ENTRY_BYTES + extraSize + idSize + nameSize;
    at = Math.ceil(at / 8) * 8;
  }
  return out;
}

export async function openQcow2Snapshot(file: string, name: string): Promise<Qcow2Snapshot | null> {
  const fh = await open(file, 'r');
  let handedOver = false;
  try {
    const h = await readExact(fh, 0, HEADER_BYTES, 'header', file);
    if (h.readUInt32BE(0) !== MAGIC) throw new CoffreError('HypervisorError', `${file} is not a qcow2 image`);
    const version = h.readUInt32BE(4);
    if (version !== 2 && version !== 3) return null;
    const hasBacking = h.readBigUInt64BE(8) !== 0n;
    const clusterBits = h.readUInt32BE(20);
    const encrypted = h.readUInt32BE(32) !== 0;
    const nbSnapshots = h.readUInt32BE(60);
    const snapshotsOffset = Number(h.readBigUInt64BE(64));
    if (version === 3) {
      const incompatible = h.readBigUInt64BE(72);
      if (incompatible & BigInt(INCOMPAT_CORRUPT)) throw new CoffreError('HypervisorError', `${file} is marked corrupt by QEMU; run qemu-img check -r all on it (with the VM stopped)`);
      if (incompatible & ~BigInt(INCOMPAT_HANDLED)) return null;
      if (h.readBigUInt64BE(80) & BigInt(COMPAT_LAZY_REFCOUNTS)) return null;
    }
    if (hasBacking || encrypted || clusterBits < 9 || clusterBits > 21) return null;
    const clusterSize = 2 ** clusterBits;
    const l2Entries = clusterSize / 8;

    const snap = (await snapshotTable(fh, snapshotsOffset, nbSnapshots, file)).find((s) => s.name === name);
    if (!snap) throw new CoffreError('NotFound', `${file} holds no internal snapshot named ${name}`);
    const size = snap.diskSize ?? Number(h.readBigUInt64BE(24));
    const clusters = Math.ceil(size / clusterSize);
    if (snap.l1Size * l2Entries < clusters || snap.l1Offset % clusterSize !== 0) {
      throw new CoffreError('HypervisorError', `${file}: snapshot ${name} has an L1 table of ${snap.l1Size} entries at ${snap.l1Offset}, not enough for ${size} bytes`);
    }
    const { size: fileSize } = await fh.stat();
    const l1 = await readExact(fh, snap.l1Offset, snap.l1Size * 8, 'L1 table', file);

    const runs: Run[] = [];
    const push = (guest: number, length: number, host: number) => {
      const last = runs[runs.length - 1];
      if (last && last.guest + last.length === guest && (last.host === -1 ? host === -1 : host === last.host + last.length)) last.length += length;
      else runs.push({ guest, length, host });
    };
    for (let t = 0; t * l2Entries < clusters; t++) {
      const first = t * l2Entries;
      const count = Math.min(l2Entries, clusters - first);
      const l2Offset = entryOffset(l1, t * 8);
      if (l2Offset === 0) {
        push(first * clusterSize, count * clusterSize, -1);
        continue;
      }
      if (l2Offset % clusterSize !== 0 || l2Offset + clusterSize > fileSize) throw new CoffreError('HypervisorError', `${file}: snapshot ${name} points to an L2 table at ${l2Offset}, outside the image`);
      const l2 = await readExact(fh, l2Offset, count * 8, 'L2 table', file);
      for (let i = 0; i < count; i++) {
        const hi = l2.readUInt32BE(i * 8);
        const lo = l2.readUInt32BE(i * 8 + 4);
        if (hi & 0x40000000) return null; // a compressed cluster: QEMU reads it
        const host = entryOffset(l2, i * 8);
        const guest = (first + i) * clusterSize;
        if ((lo & 1) || host === 0) push(guest, clusterSize, -1);
        else {
          if (host % clusterSize !== 0 || host >= fileSize) throw new CoffreError('HypervisorError', `${file}: snapshot ${name} points to a cluster at ${host}, outside the image`);
          push(guest, clusterSize, host);
        }
      }
    }
    // The last cluster may be partly past the disk's end.
    const last = runs[runs.length - 1]!;
    last.length = size - last.guest;
    handedOver = true;
    return {
      size,
      allocation: runs.map((r) => ({ offset: r.guest, length: r.length, flags: r.host === -1 ? STATE_HOLE | STATE_ZERO : 0 })),
      reader: runReader(fh, runs, file),
      describe: `snapshot ${snap.id} (${name}) of ${file}`,
    };
  } finally {
    if (!handedOver) await fh.close();
  }
}

/** Reads guest bytes through the runs: pread for data, zeros for the rest. */
function runReader(fh: FileHandle, runs: Run[], file: string): DiskReader {
  const find = (offset: number) => {
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (runs[mid]!.guest <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  return {
    async read(offset, length, buf) {
      let read = 0;
      const end = offset + length;
      for (let i = find(offset), at = offset; at < end; i++) {
        const r = runs[i];
        if (!r) throw new CoffreError('Internal', `${file}: read past the snapshot's end (${at})`);
        const to = Math.min(end, r.guest + r.length);
        if (r.host === -1) buf.fill(0, at - offset, to - offset);
        else {
          for (let got = 0; got < to - at;) {
            const { bytesRead } = await fh.read(buf, at - offset + got, to - at - got, r.host + (at - r.guest) + got);
            if (bytesRead === 0) throw new CoffreError('HypervisorError', `${file} ended inside a cluster of the snapshot (truncated?)`);
            got += bytesRead;
          }
          read += to - at;
        }
        at = to;
      }
      return read;
    },
    close: () => fh.close(),
  };
}
