/**
 * Worker thread of the file backup: reads the files it is given, cuts them into chunks, names
 * each chunk by its keyed hash, and encodes the chunks no thread has stored yet straight into
 * a pack. Full packs go to the main thread, which uploads them and hands the buffer back. The
 * main thread only walks and coordinates: all per-byte work happens here, on every core.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { JobProblem } from '../core/api.js';
import { BlobEncoder, maxStoredLength } from '../core/blob.js';
import { chunkId, keysFromJSON } from '../core/crypto.js';
import { Chunker } from '../core/fastcdc.js';
import { SharedIdSet } from '../core/known-ids.js';
import type { ChunkRef } from '../core/manifest.js';
import { PackArena } from '../core/pack.js';
import type { EncoderInit, EncoderReply, EncoderRequest, FileResult, FileTask } from './file-encoder.js';
import { readXattrs } from './xattrs.js';

const init = workerData as EncoderInit;
const keys = keysFromJSON(init.keys);
const chunker = new Chunker(keys.chunkerSeed);
const { maxSize } = chunker.params;
const encoder = new BlobEncoder(keys);
const known = new SharedIdSet(init.ids);
const signal = new Int32Array(init.signal);
const stats = new Float64Array(init.stats);
const recycled: MessagePort = init.recycle;
// Twice the largest chunk: a chunk can always be cut before the buffer must slide.
const buffer = Buffer.allocUnsafe(2 * maxSize);
const zero = Buffer.alloc(maxSize);

let arena: PackArena | null = null;

/** Where the chunk starting at `start` ends: content-defined, or at a fixed size (see FileTask.fixedChunk). */
let cutAt = (buf: Buffer, start: number, end: number, final: boolean): number => chunker.cut(buf, start, end, final);
function useCut(fixed: number | undefined): void {
  cutAt = fixed
    ? (_buf, start, end, final) => (end - start >= fixed ? fixed : final ? end - start : -1)
    : (buf, start, end, final) => chunker.cut(buf, start, end, final);
}
let arenas = 0;

function post(message: EncoderReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(message, transfer);
}

/** A fresh pack buffer, or, once this worker has its share, one the main thread has sent. */
function takeArena(): PackArena {
  if (arenas < init.maxArenas) {
    arenas++;
    return new PackArena(new Uint8Array(init.arenaBytes));
  }
  for (;;) {
    const seen = Atomics.load(signal, init.index);
    const m = receiveMessageOnPort(recycled);
    if (m) return new PackArena(new Uint8Array(m.message as ArrayBuffer));
    Atomics.wait(signal, init.index, seen);
  }
}

function sendPack(): void {
  if (!arena || arena.count === 0) return;
  const size = arena.finish();
  const data = arena.buffer.buffer as ArrayBuffer;
  arena = null;
  post({ op: 'pack', data, size }, [data]);
}

function store(chunk: Buffer): ChunkRef {
  if (chunk.equals(zero.subarray(0, chunk.length))) return [null, chunk.length];
  const id = chunkId(keys.idKey, chunk);
  if (known.claim(id) !== 'known') {
    const room = maxStoredLength(chunk.length);
    if (arena && !arena.fits(room)) sendPack();
    arena ??= takeArena();
    arena.commit(id, encoder.encodeInto(id, chunk, arena.free()));
    stats[1] += chunk.length;
  }
  return [id.toString('hex'), chunk.length];
}

const PAGE = 8192;
/** Pages read at a time by readPages: a multiple of the page size, well under the buffer. */
const PAGE_BATCH = 1024 * 1024;

/**
 * A relation file read by page, keeping the pages the filter selects: each run of contiguous
 * kept pages is cut into content-defined chunks on its own, so that every chunk lands in one
 * extent of the file. The size is rounded down to whole pages: a page being appended while
 * read is restored by WAL replay, which extends the file itself.
 */
function readPages(file: FileTask, fd: number): FileResult {
  const filter = file.pages!;
  const minLsn = BigInt(filter.minLsn);
  const fileSize = Math.floor(fstatSync(fd).size / PAGE) * PAGE;
  // A part of a large file: its own pages only (part bounds are page-aligned).
  const size = file.range ? Math.min(fileSize, Number(file.range[1])) : fileSize;
  const extents: [number, ChunkRef[]][] = [];
  const page = Buffer.allocUnsafe(PAGE_BATCH);
  let run: ChunkRef[] | null = null;
  let filled = 0;
  const cutRun = (final: boolean) => {
    let start = 0;
    for (;;) {
      const len = cutAt(buffer, start, filled, final);
      if (len <= 0) break;
      run!.push(store(buffer.subarray(start, start + len)));
      start += len;
    }
    if (start > 0) buffer.copyWithin(0, start, filled);
    filled -= start;
  };
  const endRun = () => {
    if (!run) return;
    cutRun(true);
    run = null;
  };
  for (let offset = file.range ? Number(file.range[0]) : 0; offset < size;) {
    const want = Math.min(PAGE_BATCH, size - offset);
    let n = 0;
    while (n < want) {
      const got = readSync(fd, page, n, want - n, offset + n);
      if (got === 0) break;
      n += got;
    }
    stats[0] += n;
    const whole = Math.floor(n / PAGE) * PAGE;
    for (let p = 0; p < whole; p += PAGE) {
      const index = (offset + p) / PAGE;
      const lsn = (BigInt(page.readUInt32LE(p)) << 32n) | BigInt(page.readUInt32LE(p + 4));
      const keep = index >= filter.basePages || lsn >= minLsn || page.subarray(p, p + PAGE).equals(zero.subarray(0, PAGE));
      if (!keep) { endRun(); continue; }
      if (!run) { run = []; extents.push([offset + p, run]); }
      page.copy(buffer, filled, p, p + PAGE);
      filled += PAGE;
      if (filled >= maxSize) cutRun(false);
    }
    if (whole < want) { endRun(); return { chunks: [], extents, size: offset + whole, problems: [] }; }
    offset += want;
  }
  endRun();
  return { chunks: [], extents, size: fileSize, problems: [] };
}

/**
 * Chunks of bytes [start, end) of a file (less if it is shorter now), cut as if the part were
 * a file of its own: a large file is read as several parts, on several workers at once.
 */
function readRange(fd: number, start: number, end: number): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  let filled = 0;
  let position = start;
  let eof = false;
  while (!eof || filled > 0) {
    if (!eof) {
      const n = readSync(fd, buffer, filled, Math.min(buffer.length - filled, end - position), position);
      position += n;
      if (n === 0 || position >= end) eof = true;
      filled += n;
      stats[0] += n;
    }
    let at = 0;
    for (;;) {
      const len = cutAt(buffer, at, filled, eof);
      if (len <= 0) break;
      chunks.push(store(buffer.subarray(at, at + len)));
      at += len;
    }
    if (at > 0) buffer.copyWithin(0, at, filled);
    filled -= at;
  }
  return chunks;
}

function readFile(file: FileTask): FileResult {
  const path = Buffer.from(file.path, 'latin1');
  const problems: JobProblem[] = [];
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    return { chunks: null, problems: [{ code: 'Unreadable', message: `cannot read ${file.display}: ${(e as Error).message}`, path: file.display }] };
  }
  const chunks: ChunkRef[] = [];
  let xattrs: FileResult['xattrs'];
  useCut(file.fixedChunk);
  try {
    // Database files (pages, ranges) carry no attributes of their own a restore needs.
    if (file.pages) return readPages(file, fd);
    if (file.range) return { chunks: readRange(fd, Number(file.range[0]), Number(file.range[1])), problems };
    const read = readXattrs(fd);
    xattrs = read.xattrs;
    if (read.problem) problems.push({ code: 'XattrUnreadable', message: `${file.display}: ${read.problem}`, path: file.display });
    let filled = 0;
    let eof = false;
    while (!eof || filled > 0) {
      if (!eof) {
        const n = readSync(fd, buffer, filled, buffer.length - filled, null);
        if (n === 0) eof = true;
        filled += n;
        stats[0] += n;
      }
      let start = 0;
      for (;;) {
        const len = cutAt(buffer, start, filled, eof);
        if (len <= 0) break;
        chunks.push(store(buffer.subarray(start, start + len)));
        start += len;
      }
      if (start > 0) buffer.copyWithin(0, start, filled);
      filled -= start;
    }
    const after = fstatSync(fd, { bigint: true });
    if (after.mtimeNs.toString() !== file.mtimeNs || after.ctimeNs.toString() !== file.ctimeNs || after.size.toString() !== file.size) {
      problems.push({ code: 'FileChanged', message: `${file.display} changed while it was read; the point holds the bytes read, back it up again for a consistent copy`, path: file.display });
    }
  } catch (e) {
    return { chunks: null, problems: [{ code: 'Unreadable', message: `error reading ${file.display}: ${(e as Error).message}`, path: file.display }] };
  } finally {
    closeSync(fd);
  }
  return xattrs ? { chunks, problems, xattrs } : { chunks, problems };
}

parentPort!.on('message', (msg: EncoderRequest) => {
  if (msg.op === 'read') {
    post({ op: 'done', seq: msg.seq, files: msg.files.map(readFile) });
  } else {
    sendPack();
    post({ op: 'done', seq: msg.seq, files: [] });
  }
});
