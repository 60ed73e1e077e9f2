/**
 * Recognising a qcow2 image by its header (QEMU's docs/interop/qcow2.txt), without QEMU:
 *
 *   0 magic "QFI\xfb" ‖ 4 version u32 (2 or 3) ‖ 8 backing file offset u64 ‖ 16 backing file
 *   name size u32 ‖ 20 cluster bits u32 ‖ 24 virtual size u64 ‖ 32 encryption method u32
 *
 * Big-endian. The guest data itself is read through QEMU (qemu-nbd), never parsed here.
 */
export const QCOW2_HEADER_BYTES = 36;
const MAGIC = 0x514649fb;

export interface Qcow2Header { version: number; size: number; clusterSize: number; hasBacking: boolean; encrypted: boolean }

/** The header of a qcow2 image, or null when these bytes are not one. */
export function parseQcow2Header(b: Uint8Array): Qcow2Header | null {
  if (b.length < QCOW2_HEADER_BYTES) return null;
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (v.readUInt32BE(0) !== MAGIC) return null;
  const version = v.readUInt32BE(4);
  const clusterBits = v.readUInt32BE(20);
  const size = v.readBigUInt64BE(24);
  if ((version !== 2 && version !== 3) || clusterBits < 9 || clusterBits > 21 || size > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return { version, size: Number(size), clusterSize: 2 ** clusterBits, hasBacking: v.readBigUInt64BE(8) !== 0n, encrypted: v.readUInt32BE(32) !== 0 };
}
