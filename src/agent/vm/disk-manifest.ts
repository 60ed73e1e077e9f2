/**
 * The manifest of a VM point: its disks, and for each disk the id of every fixed-size block.
 * It is sealed with the container's key and bound to its point id by its own associated data
 * (not the file manifest's), so a VM manifest can never be read as a file tree or moved to
 * another point. Every point names every block it needs: no restore replays a chain.
 *
 * Layout of the sealed plaintext:
 *
 *   "CVM1" ‖ u32 header length ‖ header (JSON) ‖ per disk: bitmap ‖ ids
 *   bitmap = one bit per block (LSB first), 1 = the block holds data; 0 = all zeros (a hole)
 *   ids    = 32-byte chunk id of every block whose bit is 1, in block order
 *
 * Zero blocks cost one bit, so a mostly empty 1 TiB disk has a manifest of ~128 KiB.
 * In memory a disk's blocks are one buffer of 32 bytes per block, all zeros for a hole.
 */
import { z } from 'zod';
import type { Consistency } from '../../core/api.js';
import { ID_BYTES, open, seal, type KeySet } from '../../core/crypto.js';
import { CoffreError } from '../../core/errors.js';
import { VHD_FOOTER_BYTES } from './vhd.js';

export type DiskFormat = 'raw' | 'vhd' | 'device' | 'qcow2';

export interface VmDisk {
  index: number;
  /** File name stem used when the disk is restored (safe as a file name). */
  name: string;
  /** Where the disk lived on the protected machine. */
  path: string;
  /** What the source was: a raw image, a fixed VHD (footer kept below), a qcow2 image, or a block device. */
  format: DiskFormat;
  /** Bytes of disk data (a VHD's data, without its footer). */
  size: number;
  blockSize: number;
  /** A VHD source's own footer (base64), so a restore to VHD gives back the identical file. */
  vhdFooter?: string;
  /** 32 bytes per block: its chunk id, or all zeros for a block of zeros. */
  blocks: Buffer;
}

export interface VmManifest {
  version: 1;
  kind: 'vm';
  item: string;
  time: string;
  consistency: Consistency;
  disks: VmDisk[];
}

const MAGIC = Buffer.from('CVM1');
export const ZERO_ID = Buffer.alloc(ID_BYTES);
import { MAX_BLOCK, MIN_BLOCK } from './limits.js';
export { MAX_BLOCK, MIN_BLOCK };

export const blockCount = (size: number, blockSize: number) => Math.ceil(size / blockSize);
export const blockIdAt = (disk: VmDisk, i: number): Buffer => disk.blocks.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
export const isZeroId = (id: Buffer) => id.equals(ZERO_ID);
export const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

const headerSchema = z.strictObject({
  version: z.literal(1),
  kind: z.literal('vm'),
  item: z.string().min(1),
  time: z.string(),
  consistency: z.enum(['app', 'filesystem', 'crash']),
  disks: z.array(z.strictObject({
    index: z.number().int().nonnegative(),
    name: z.string().regex(SAFE_NAME),
    path: z.string(),
    format: z.enum(['raw', 'vhd', 'device', 'qcow2']),
    size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    blockSize: z.number().int().min(MIN_BLOCK).max(MAX_BLOCK).refine((n) => (n & (n - 1)) === 0, 'a power of two'),
    vhdFooter: z.string().optional(),
  })).min(1).max(64),
});

function ad(pointId: string): Buffer {
  return Buffer.from(`coffre:vm-manifest:v1:${pointId}`);
}

export function encodeVmManifest(m: VmManifest): Buffer {
  const header = Buffer.from(JSON.stringify({
    version: m.version, kind: m.kind, item: m.item, time: m.time, consistency: m.consistency,
    disks: m.disks.map(({ blocks: _blocks, ...d }) => d),
  }));
  const parts: Buffer[] = [MAGIC, Buffer.alloc(4), header];
  parts[1]!.writeUInt32LE(header.length);
  for (const d of m.disks) {
    const n = blockCount(d.size, d.blockSize);
    if (d.blocks.length !== n * ID_BYTES) throw new CoffreError('Internal', `disk ${d.index}: block table of ${d.blocks.length} bytes for ${n} blocks`);
    const bitmap = Buffer.alloc(Math.ceil(n / 8));
    const ids: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const id = blockIdAt(d, i);
      if (isZeroId(id)) continue;
      bitmap[i >> 3]! |= 1 << (i & 7);
      ids.push(id);
    }
    parts.push(bitmap, ...ids);
  }
  return Buffer.concat(parts);
}

export function decodeVmManifest(plain: Buffer): VmManifest {
  const bad = (why: string) => new CoffreError('ManifestInvalid', `VM manifest refused: ${why}`);
  if (plain.length < 8 || !plain.subarray(0, 4).equals(MAGIC)) throw bad('not a VM manifest');
  const headerLength = plain.readUInt32LE(4);
  if (8 + headerLength > plain.length) throw bad('header longer than the manifest');
  let raw: unknown;
  try {
    raw = JSON.parse(plain.toString('utf8', 8, 8 + headerLength));
  } catch {
    throw bad('header is not JSON');
  }
  const parsed = headerSchema.safeParse(raw);
  if (!parsed.success) throw bad(`header: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`);
  const header = parsed.data;
  const names = new Set<string>();
  let o = 8 + headerLength;
  const disks: VmDisk[] = header.disks.map((d, i) => {
    if (d.index !== i) throw bad(`disk ${i} is numbered ${d.index}`);
    if (names.has(d.name)) throw bad(`two disks are named ${d.name}`);
    names.add(d.name);
    if (d.vhdFooter !== undefined && Buffer.from(d.vhdFooter, 'base64').length !== VHD_FOOTER_BYTES) throw bad(`disk ${i} has an invalid VHD footer`);
    const n = blockCount(d.size, d.blockSize);
    const bitmapBytes = Math.ceil(n / 8);
    if (o + bitmapBytes > plain.length) throw bad(`disk ${i}: block map cut short`);
    const bitmap = plain.subarray(o, o + bitmapBytes);
    o += bitmapBytes;
    const blocks = Buffer.alloc(n * ID_BYTES);
    for (let b = 0; b < n; b++) {
      if (!(bitmap[b >> 3]! & (1 << (b & 7)))) continue;
      if (o + ID_BYTES > plain.length) throw bad(`disk ${i}: block ids cut short`);
      plain.copy(blocks, b * ID_BYTES, o, o + ID_BYTES);
      if (isZeroId(blockIdAt({ blocks } as VmDisk, b))) throw bad(`disk ${i}: block ${b} has an all-zero id`);
      o += ID_BYTES;
    }
    // Bits past the last block must be clear: one encoding per manifest.
    if (n % 8 && bitmap[bitmapBytes - 1]! >> (n % 8)) throw bad(`disk ${i}: block map has bits past the disk's end`);
    return { ...d, blocks };
  });
  if (o !== plain.length) throw bad('bytes after the last disk');
  return { version: 1, kind: 'vm', item: header.item, time: header.time, consistency: header.consistency, disks };
}

export function sealVmManifest(keys: KeySet, pointId: string, m: VmManifest): Buffer {
  return seal(keys.encKey, encodeVmManifest(m), ad(pointId));
}

/** Opens and validates a VM manifest; null when it is not a VM manifest of this point (wrong key, other kind, other point). */
export function openVmManifest(keys: KeySet, pointId: string, stored: Buffer): VmManifest | null {
  const plain = open(keys.encKey, stored, ad(pointId));
  return plain ? decodeVmManifest(plain) : null;
}

/** Every distinct block id of the point, 32 bytes each: the reference list the vault checks at commit and uses for GC and verify. */
export function vmReferences(m: VmManifest): Buffer {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  for (const d of m.disks) {
    for (let i = 0; i < d.blocks.length; i += ID_BYTES) {
      const id = d.blocks.subarray(i, i + ID_BYTES);
      if (isZeroId(id)) continue;
      const hex = id.toString('hex');
      if (seen.has(hex)) continue;
      seen.add(hex);
      out.push(id);
    }
  }
  return Buffer.concat(out);
}
