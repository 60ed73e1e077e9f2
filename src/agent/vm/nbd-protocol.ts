/**
 * The NBD protocol's numbers and the byte layouts the client sends and parses, as pure
 * functions (no sockets), from the protocol's reference text (NetworkBlockDevice/nbd,
 * doc/proto.md): the fixed newstyle handshake, options with their replies, and the
 * transmission phase with simple and structured replies.
 *
 * All integers are big-endian. Only what Coffre uses is named here: structured replies,
 * metadata contexts (`base:allocation`, `qemu:dirty-bitmap:NAME`), GO with export and
 * block-size information, READ, WRITE, WRITE_ZEROES, FLUSH, BLOCK_STATUS and DISC.
 */
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

export const OPT = { ABORT: 2, GO: 7, STRUCTURED_REPLY: 8, SET_META_CONTEXT: 10 } as const;
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4 } as const;
const REP_ERROR_BIT = 0x80000000;
const REP_ERRORS: Record<number, string> = {
  1: 'unsupported option', 2: 'refused by policy', 3: 'invalid request', 4: 'not supported on this platform',
  5: 'TLS required', 6: 'no such export', 7: 'server shutting down', 8: 'block size negotiation required', 9: 'request too big',
};
export const INFO = { EXPORT: 0, BLOCK_SIZE: 3 } as const;

/** Transmission flags of an export. */
export const TFLAG = { HAS_FLAGS: 1, READ_ONLY: 2, SEND_FLUSH: 4, SEND_FUA: 8, SEND_WRITE_ZEROES: 64, SEND_DF: 128, CAN_MULTI_CONN: 256 } as const;

export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const CMD_FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8 } as const;

export const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: 32769, ERROR_OFFSET: 32770 } as const;
const REPLY_TYPE_ERROR_BIT = 0x8000;

/** `base:allocation` flags: HOLE = not allocated, ZERO = reads as zeros. */
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;
/** `qemu:dirty-bitmap:NAME` flag: the extent changed while the bitmap recorded. */
export const STATE_DIRTY = 1;

export const BASE_ALLOCATION = 'base:allocation';
export const dirtyBitmapContext = (bitmap: string) => `qemu:dirty-bitmap:${bitmap}`;

export const REQUEST_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_REPLY_BYTES = 20;
/** The largest length one request may carry (the protocol's field is 32 bits). */
export const MAX_REQUEST_LENGTH = 0xffffffff;

const ERRNO: Record<number, string> = { 1: 'EPERM', 5: 'EIO', 12: 'ENOMEM', 22: 'EINVAL', 28: 'ENOSPC', 75: 'EOVERFLOW', 95: 'ENOTSUP', 108: 'ESHUTDOWN' };
export const errnoName = (n: number) => ERRNO[n] ?? `error ${n}`;

export const isReplyError = (type: number) => (type & REP_ERROR_BIT) !== 0;
export const replyErrorName = (type: number) => REP_ERRORS[type & 0x7fffffff] ?? `error reply ${type >>> 0}`;
export const isStructuredError = (type: number) => (type & REPLY_TYPE_ERROR_BIT) !== 0;

/** An option request: IHAVEOPT ‖ option ‖ length ‖ data. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(16 + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

function lengthPrefixed(s: string): Buffer {
  const text = Buffer.from(s, 'utf8');
  const b = Buffer.allocUnsafe(4 + text.length);
  b.writeUInt32BE(text.length, 0);
  text.copy(b, 4);
  return b;
}

/** NBD_OPT_GO's data: the export name, then the information requested. */
export function encodeGo(exportName: string, infos: number[]): Buffer {
  const tail = Buffer.allocUnsafe(2 + 2 * infos.length);
  tail.writeUInt16BE(infos.length, 0);
  infos.forEach((i, k) => tail.writeUInt16BE(i, 2 + 2 * k));
  return Buffer.concat([lengthPrefixed(exportName), tail]);
}

/** NBD_OPT_SET_META_CONTEXT's data: the export name and the contexts asked for. */
export function encodeMetaContexts(exportName: string, queries: string[]): Buffer {
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  return Buffer.concat([lengthPrefixed(exportName), count, ...queries.map(lengthPrefixed)]);
}

export interface OptionReplyHeader { option: number; type: number; length: number }

export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader {
  if (b.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

export function encodeRequest(b: Buffer, at: number, r: { flags: number; type: number; cookie: bigint; offset: number; length: number }): void {
  b.writeUInt32BE(REQUEST_MAGIC, at);
  b.writeUInt16BE(r.flags, at + 4);
  b.writeUInt16BE(r.type, at + 6);
  b.writeBigUInt64BE(r.cookie, at + 8);
  b.writeBigUInt64BE(BigInt(r.offset), at + 16);
  b.writeUInt32BE(r.length, at + 24);
}

/** One extent of a block-status reply: `length` bytes with these context flags. */
export interface Extent { offset: number; length: number; flags: number }

/**
 * The extents of one BLOCK_STATUS chunk (u32 context id, then pairs of u32 length and u32
 * flags), placed from `offset` on. Zero-length extents are refused: they would not advance.
 */
export function decodeBlockStatus(payload: Buffer, offset: number): { context: number; extents: Extent[] } {
  if (payload.length < 4 || (payload.length - 4) % 8 !== 0) throw new Error(`block status chunk of ${payload.length} bytes`);
  const context = payload.readUInt32BE(0);
  const extents: Extent[] = [];
  let at = offset;
  for (let o = 4; o < payload.length; o += 8) {
    const length = payload.readUInt32BE(o);
    if (length === 0) throw new Error('block status extent of length 0');
    extents.push({ offset: at, length, flags: payload.readUInt32BE(o + 4) });
    at += length;
  }
  return { context, extents };
}

/**
 * Merges the extents received for one context into what was already known, from `covered`
 * on: a server may describe fewer or more bytes than asked, and each context advances on its
 * own, so only the part past what is known and before `end` is kept. Returns the new end of
 * what is known.
 */
export function appendExtents(into: Extent[], received: Extent[], covered: number, end: number): number {
  let known = covered;
  for (const e of received) {
    if (e.offset > known) throw new Error(`block status extents skip ${known} to ${e.offset}`);
    const from = Math.max(e.offset, known);
    const to = Math.min(e.offset + e.length, end);
    if (to <= from) continue;
    const last = into[into.length - 1];
    if (last && last.flags === e.flags && last.offset + last.length === from) last.length += to - from;
    else into.push({ offset: from, length: to - from, flags: e.flags });
    known = to;
  }
  return known;
}
