/**
 * Fixed VHD: the disk's bytes as they are, then a 512-byte footer (Virtual Hard Disk Image
 * Format Specification, Microsoft, 2006). All fields are big-endian:
 *
 *   0 cookie "conectix" ‖ 8 features u32 (2) ‖ 12 version u32 (0x00010000) ‖ 16 data offset
 *   u64 (all ones: fixed) ‖ 24 timestamp u32 (seconds since 2000-01-01 UTC) ‖ 28 creator
 *   application [4] ‖ 32 creator version u32 ‖ 36 creator host OS [4] ‖ 40 original size u64 ‖
 *   48 current size u64 ‖ 56 cylinders u16 ‖ 58 heads u8 ‖ 59 sectors/track u8 ‖ 60 disk type
 *   u32 (2 fixed, 3 dynamic, 4 differencing) ‖ 64 checksum u32 ‖ 68 unique id [16] ‖ 84 saved
 *   state u8 ‖ 85 reserved [427] (zeros)
 *
 * The checksum is the one's complement of the byte sum of the footer without its checksum
 * field. Pure functions: no I/O.
 */
import { randomBytes } from 'node:crypto';
import { CoffreError } from '../../core/errors.js';

export const VHD_FOOTER_BYTES = 512;
const COOKIE = Buffer.from('conectix', 'latin1');
const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);
const FIXED = 2;
const MAX_CHS_SECTORS = 65535 * 16 * 255;

export type VhdDiskType = 'fixed' | 'dynamic' | 'differencing' | 'unknown';

export interface VhdFooter {
  /** Bytes of the virtual disk, the data before the footer. */
  currentSize: number;
  originalSize: number;
  diskType: VhdDiskType;
  creatorApp: string;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  uniqueId: Buffer;
  timestamp: Date;
}

export function vhdChecksum(footer: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < VHD_FOOTER_BYTES; i++) if (i < 64 || i >= 68) sum = (sum + footer[i]!) >>> 0;
  return (~sum) >>> 0;
}

/** CHS geometry exactly as the specification's appendix computes it from the sector count. */
export function chsGeometry(size: number): { cylinders: number; heads: number; sectorsPerTrack: number } {
  let totalSectors = Math.floor(size / 512);
  if (totalSectors > MAX_CHS_SECTORS) totalSectors = MAX_CHS_SECTORS;
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** The size a VHD of `size` bytes declares: whole 512-byte sectors. */
export const vhdDataSize = (size: number) => Math.ceil(size / 512) * 512;

/**
 * A footer for a fixed VHD of `size` bytes. The creator application is "win " (Hyper-V):
 * readers take the exact byte size from "current size" for it, whereas for "vpc " and
 * "qemu" they round the disk down to its CHS geometry, which would cut off the disk's end.
 */
export function buildVhdFooter(size: number, opts: { time?: Date; uniqueId?: Buffer } = {}): Buffer {
  const dataSize = vhdDataSize(size);
  const f = Buffer.alloc(VHD_FOOTER_BYTES);
  COOKIE.copy(f, 0);
  f.writeUInt32BE(2, 8);
  f.writeUInt32BE(0x00010000, 12);
  f.writeBigUInt64BE(0xffffffffffffffffn, 16);
  const seconds = Math.max(0, Math.floor(((opts.time ?? new Date()).getTime() - VHD_EPOCH_MS) / 1000));
  f.writeUInt32BE(seconds >>> 0, 24);
  f.write('win ', 28, 'latin1');
  f.writeUInt32BE(0x000a0000, 32);
  f.write('Wi2k', 36, 'latin1');
  f.writeBigUInt64BE(BigInt(dataSize), 40);
  f.writeBigUInt64BE(BigInt(dataSize), 48);
  const g = chsGeometry(dataSize);
  f.writeUInt16BE(g.cylinders, 56);
  f.writeUInt8(g.heads, 58);
  f.writeUInt8(g.sectorsPerTrack, 59);
  f.writeUInt32BE(FIXED, 60);
  (opts.uniqueId ?? randomBytes(16)).copy(f, 68, 0, 16);
  f.writeUInt32BE(vhdChecksum(f), 64);
  return f;
}

const TYPES: Record<number, VhdDiskType> = { 2: 'fixed', 3: 'dynamic', 4: 'differencing' };

/** Parses a footer; null when these 512 bytes are not a VHD footer (wrong cookie or checksum). */
export function parseVhdFooter(f: Uint8Array): VhdFooter | null {
  if (f.length !== VHD_FOOTER_BYTES) return null;
  const b = Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  if (!b.subarray(0, 8).equals(COOKIE)) return null;
  if (b.readUInt32BE(64) !== vhdChecksum(b)) return null;
  const currentSize = b.readBigUInt64BE(48);
  const originalSize = b.readBigUInt64BE(40);
  if (currentSize > BigInt(Number.MAX_SAFE_INTEGER) || originalSize > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return {
    currentSize: Number(currentSize),
    originalSize: Number(originalSize),
    diskType: TYPES[b.readUInt32BE(60)] ?? 'unknown',
    creatorApp: b.toString('latin1', 28, 32),
    cylinders: b.readUInt16BE(56),
    heads: b.readUInt8(58),
    sectorsPerTrack: b.readUInt8(59),
    uniqueId: Buffer.from(b.subarray(68, 84)),
    timestamp: new Date(VHD_EPOCH_MS + b.readUInt32BE(24) * 1000),
  };
}

/**
 * What a file ending in `tail` (its last 512 bytes) holds: a fixed VHD whose data is the
 * file minus the footer, or plain raw bytes. Dynamic and differencing VHDs are refused: their
 * data is not laid out flat, and reading them as raw would back up the wrong bytes.
 */
export function classifyImage(fileSize: number, tail: Uint8Array | null, path: string): { format: 'vhd'; dataSize: number; footer: Buffer } | { format: 'raw'; dataSize: number } {
  const footer = tail && fileSize >= 2 * VHD_FOOTER_BYTES ? parseVhdFooter(tail) : null;
  if (!footer) return { format: 'raw', dataSize: fileSize };
  if (footer.diskType !== 'fixed') {
    throw new CoffreError('InvalidArgument', `${path} is a ${footer.diskType} VHD; only fixed VHDs and raw images can be backed up (convert it: qemu-img convert -O vpc -o subformat=fixed IN OUT)`);
  }
  const dataSize = fileSize - VHD_FOOTER_BYTES;
  if (footer.currentSize > dataSize) {
    throw new CoffreError('InvalidArgument', `${path}: its VHD footer declares ${footer.currentSize} bytes but the file holds ${dataSize}; the image is truncated`);
  }
  return { format: 'vhd', dataSize, footer: Buffer.from(tail!) };
}
