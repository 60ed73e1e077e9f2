/**
 * Where the file systems of a disk start: the whole disk, or the partitions of its MBR or
 * GPT table. Only the table is read here; the file system itself is left to e2fsprogs.
 * Pure: the caller passes the disk's first sectors.
 */
const SECTOR = 512;
const EXT_MAGIC_OFFSET = 1024 + 56;

export interface Partition {
  /** 1-based, as Linux names them (vda1, vda2, ...). */
  number: number;
  offset: number;
  size: number;
  /** MBR type byte as hex ("83"), or the GPT type GUID. */
  type: string;
}

/** Whether an ext2/3/4 superblock starts at `offset` of `head`. */
export function hasExtSuperblock(head: Buffer, offset = 0): boolean {
  const at = offset + EXT_MAGIC_OFFSET;
  return head.length >= at + 2 && head.readUInt16LE(at) === 0xef53;
}

function guid(b: Buffer): string {
  const h = b.toString('hex');
  // The first three fields are little-endian.
  const le = (s: string) => s.match(/../g)!.reverse().join('');
  return `${le(h.slice(0, 8))}-${le(h.slice(8, 12))}-${le(h.slice(12, 16))}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Partitions listed in `head` (the disk's first bytes: at least 34 sectors for a GPT with
 * the usual 128 entries). Logical partitions inside an extended MBR partition are not listed.
 */
export function parsePartitions(head: Buffer): Partition[] {
  if (head.length < SECTOR || head.readUInt16LE(510) !== 0xaa55) return [];
  const mbr: Partition[] = [];
  let protective = false;
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    const type = head[e + 4]!;
    const start = head.readUInt32LE(e + 8);
    const sectors = head.readUInt32LE(e + 12);
    if (type === 0 || sectors === 0) continue;
    if (type === 0xee) protective = true;
    else if (type !== 0x05 && type !== 0x0f && type !== 0x85) mbr.push({ number: i + 1, offset: start * SECTOR, size: sectors * SECTOR, type: type.toString(16).padStart(2, '0') });
  }
  if (!protective) return mbr;
  if (head.length < 2 * SECTOR || head.toString('latin1', SECTOR, SECTOR + 8) !== 'EFI PART') return [];
  const entriesLba = Number(head.readBigUInt64LE(SECTOR + 72));
  const count = head.readUInt32LE(SECTOR + 80);
  const entrySize = head.readUInt32LE(SECTOR + 84);
  if (entrySize < 128 || count > 1024) return [];
  const out: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const o = entriesLba * SECTOR + i * entrySize;
    if (o + 128 > head.length) break;
    const type = head.subarray(o, o + 16);
    if (type.every((b) => b === 0)) continue;
    const first = Number(head.readBigUInt64LE(o + 32));
    const last = Number(head.readBigUInt64LE(o + 40));
    if (last < first) continue;
    out.push({ number: i + 1, offset: first * SECTOR, size: (last - first + 1) * SECTOR, type: guid(type) });
  }
  return out;
}

/** Bytes to read from the start of a disk to find its partitions (and an ext superblock there). */
export const PARTITION_HEAD_BYTES = 64 * 1024;
