/**
 * Pack format: blobs back to back, then a footer that makes the pack self-describing (the
 * vault's index can be rebuilt from packs alone), then the footer's length and a magic.
 *
 *   blob* ‖ entry* ‖ u32 entryCount ‖ magic
 *   entry = id (32) ‖ offset u32 ‖ length u32 ‖ checksum (16, sha256 of the stored blob)
 *
 * The magic says what the blobs are: "CPK1" chunks of files and disks, "CPT1" tree pages
 * (src/core/tree.ts), each stored with the clear-text list of what it references before its
 * sealed bytes, so that the vault's index of references too can be rebuilt from packs alone.
 *
 * Ids are keyed hashes and checksums cover ciphertext, so the footer reveals no content.
 */
import { storedChecksum, ID_BYTES } from './crypto.js';
import { CoffreError } from './errors.js';

export type PackKind = 'data' | 'tree';
const MAGIC: Record<PackKind, Buffer> = { data: Buffer.from('CPK1'), tree: Buffer.from('CPT1') };
const ENTRY_BYTES = ID_BYTES + 4 + 4 + 16;

export interface PackEntry { id: Buffer; offset: number; length: number; checksum: Buffer }

export class PackWriter {
  private readonly parts: Uint8Array[] = [];
  private readonly entries: PackEntry[] = [];
  private size = 0;

  constructor(readonly kind: PackKind = 'data') {}

  get byteLength(): number { return this.size; }
  get count(): number { return this.entries.length; }

  /** `checksum` may come precomputed (by the worker that sealed the blob). */
  add(id: Buffer, stored: Uint8Array, checksum: Buffer = storedChecksum(stored)): void {
    this.entries.push({ id, offset: this.size, length: stored.length, checksum });
    this.parts.push(stored);
    this.size += stored.length;
  }

  finish(): { data: Buffer; entries: PackEntry[] } {
    const { parts, entries } = this.finishParts();
    return { data: Buffer.concat(parts), entries };
  }

  /** The pack as its pieces, blobs then footer: sent as they are, without one more 16 MiB copy. */
  finishParts(): { parts: Uint8Array[]; size: number; entries: PackEntry[] } {
    const footer = Buffer.allocUnsafe(this.entries.length * ENTRY_BYTES + 8);
    writeFooter(this.entries, footer, 0, this.kind);
    return { parts: [...this.parts, footer], size: this.size + footer.length, entries: this.entries };
  }
}

/**
 * Builds a pack inside one preallocated buffer: blobs are encoded straight into it and the
 * footer is written after them, so a pack costs no copies and no allocation per blob. The
 * buffer can be reused for the next pack once the previous one has been sent.
 */
export class PackArena {
  private readonly entries: PackEntry[] = [];
  private size = 0;

  constructor(readonly buffer: Uint8Array) {}

  get byteLength(): number { return this.size; }
  get count(): number { return this.entries.length; }

  /** Whether a blob of up to `maxBlob` bytes still fits, with the footer it adds. */
  fits(maxBlob: number): boolean {
    return this.size + maxBlob + (this.entries.length + 1) * ENTRY_BYTES + 8 <= this.buffer.length;
  }

  /** Where the next blob goes; commit it with `commit` once written. */
  free(): Uint8Array {
    return this.buffer.subarray(this.size);
  }

  commit(id: Buffer, length: number): void {
    const checksum = storedChecksum(this.buffer.subarray(this.size, this.size + length));
    this.entries.push({ id, offset: this.size, length, checksum });
    this.size += length;
  }

  /** Writes the footer and returns the pack's length; the arena is empty again afterwards. */
  finish(): number {
    const end = writeFooter(this.entries, Buffer.from(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength), this.size, 'data');
    this.entries.length = 0;
    this.size = 0;
    return end;
  }
}

/** Writes the footer of `entries` at `at` and returns where it ends. */
function writeFooter(entries: readonly PackEntry[], out: Buffer, at: number, kind: PackKind): number {
  let o = at;
  for (const e of entries) {
    e.id.copy(out, o); o += ID_BYTES;
    out.writeUInt32LE(e.offset, o); o += 4;
    out.writeUInt32LE(e.length, o); o += 4;
    e.checksum.copy(out, o); o += 16;
  }
  out.writeUInt32LE(entries.length, o); o += 4;
  MAGIC[kind].copy(out, o);
  return o + 4;
}

/** What a pack holds, by its magic; null when it is not a pack at all. */
export function packKind(data: Uint8Array): PackKind | null {
  if (data.length < 8) return null;
  const magic = Buffer.from(data.buffer, data.byteOffset + data.length - 4, 4);
  return magic.equals(MAGIC.data) ? 'data' : magic.equals(MAGIC.tree) ? 'tree' : null;
}

/** Parses and checks a whole pack: every blob must lie inside it and match its checksum. */
export function readPack(data: Buffer): PackEntry[] {
  const bad = (why: string) => new CoffreError('PackInvalid', `pack rejected: ${why}`);
  if (!packKind(data)) throw bad('no pack footer');
  const count = data.readUInt32LE(data.length - 8);
  const footerStart = data.length - 8 - count * ENTRY_BYTES;
  if (footerStart < 0) throw bad('footer larger than pack');
  const entries: PackEntry[] = [];
  let end = 0;
  for (let i = 0; i < count; i++) {
    const o = footerStart + i * ENTRY_BYTES;
    const entry: PackEntry = {
      id: Buffer.from(data.subarray(o, o + ID_BYTES)),
      offset: data.readUInt32LE(o + ID_BYTES),
      length: data.readUInt32LE(o + ID_BYTES + 4),
      checksum: Buffer.from(data.subarray(o + ID_BYTES + 8, o + ENTRY_BYTES)),
    };
    if (entry.offset !== end || entry.offset + entry.length > footerStart) throw bad(`blob ${i} lies outside the data area`);
    end = entry.offset + entry.length;
    if (!storedChecksum(data.subarray(entry.offset, end)).equals(entry.checksum)) {
      throw new CoffreError('ChecksumMismatch', `pack rejected: blob ${i} does not match its checksum (damaged in transit?)`);
    }
    entries.push(entry);
  }
  if (end !== footerStart) throw bad('bytes between blobs and footer');
  return entries;
}

/** Bytes at the end of a pack that say how long its footer is (entry count and magic). */
export const PACK_TRAILER_BYTES = 8;

/** The footer's length from a pack's last PACK_TRAILER_BYTES, to read it alone (index rebuilds). */
export function packFooterLength(trailer: Buffer): number {
  if (trailer.length !== PACK_TRAILER_BYTES || packKind(trailer) === null) throw new CoffreError('PackInvalid', 'pack rejected: no pack footer');
  return trailer.readUInt32LE(0) * ENTRY_BYTES + PACK_TRAILER_BYTES;
}

/**
 * The entries of a footer read on its own (`footer` is the pack's last packFooterLength bytes
 * of a pack of `packSize` bytes). Blob checksums are not checked here: that needs the blobs.
 */
export function readPackFooter(footer: Buffer, packSize: number): PackEntry[] {
  const count = (footer.length - PACK_TRAILER_BYTES) / ENTRY_BYTES;
  const dataEnd = packSize - footer.length;
  if (!Number.isInteger(count) || dataEnd < 0) throw new CoffreError('PackInvalid', 'pack rejected: footer larger than pack');
  const entries: PackEntry[] = [];
  let end = 0;
  for (let i = 0; i < count; i++) {
    const o = i * ENTRY_BYTES;
    const entry: PackEntry = {
      id: Buffer.from(footer.subarray(o, o + ID_BYTES)),
      offset: footer.readUInt32LE(o + ID_BYTES),
      length: footer.readUInt32LE(o + ID_BYTES + 4),
      checksum: Buffer.from(footer.subarray(o + ID_BYTES + 8, o + ENTRY_BYTES)),
    };
    if (entry.offset !== end || entry.offset + entry.length > dataEnd) throw new CoffreError('PackInvalid', `pack rejected: blob ${i} lies outside the data area`);
    end = entry.offset + entry.length;
    entries.push(entry);
  }
  if (end !== dataEnd) throw new CoffreError('PackInvalid', 'pack rejected: bytes between blobs and footer');
  return entries;
}
