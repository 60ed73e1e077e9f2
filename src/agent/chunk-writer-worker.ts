/**
 * Worker thread of the file restore: opens the chunks of one fetched range (authenticated,
 * decompressed, checked against their ids) and writes each where the point says it belongs.
 * The plaintext never travels back to the main thread: it goes from this thread's buffer to
 * the page cache.
 *
 * A chunk written into a partial file takes that file's lock, shared by the workers. The kernel
 * lets one write into a file at a time (ext4 holds the inode's lock through the copy): two
 * workers writing the same file (a database's 1 GiB relation file) made one of them spin on that
 * lock, up to 5-7 % of a restore's CPU when copies were slow (perf, 320 MiB pgbench restore).
 * Now the waiting one sleeps. Each chunk is written right after it is opened, while it is in the
 * cache: opening a whole range first and then writing it cost more system time (copies from
 * memory, and 12 MiB writes take large page-cache folios, slow on first touch in our VMs).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { closeSync, constants as C, ftruncateSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { BlobDecoder } from '../core/blob.js';
import { keysFromJSON } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { FILE_LOCKS, type WholeFile, type WriteFailure, type WriteProblem, type WriterReply, type WriterRequest, type WriterSetup, type WriteTarget } from './chunk-writer.js';
import { setFileMeta, type MetaProblem } from './file-meta.js';

const setup = workerData as WriterSetup;
const decoder = new BlobDecoder(keysFromJSON(setup.keys));
const locks = new Int32Array(setup.locks);
let plainBuffer = new Uint8Array(4 * 1024 * 1024);

/** Holds a file's lock slot (sleeping, not spinning, while another worker writes it). */
function lockFile(file: number): number {
  const slot = ((file % FILE_LOCKS) + FILE_LOCKS) % FILE_LOCKS;
  while (Atomics.compareExchange(locks, slot, 0, 1) !== 0) Atomics.wait(locks, slot, 1);
  return slot;
}

function unlockFile(slot: number): void {
  Atomics.store(locks, slot, 0);
  Atomics.notify(locks, slot, 1);
}

const HOLE_BLOCK = 4096;
const ZERO_BLOCK = new Uint8Array(HOLE_BLOCK);

function isZero(data: Uint8Array, from: number, to: number): boolean {
  // Most blocks of data have a non-zero byte at one of these: no comparison of the whole block.
  if (data[from] !== 0 || data[to - 1] !== 0 || data[(from + to) >>> 1] !== 0) return false;
  return Buffer.compare(data.subarray(from, to), ZERO_BLOCK.subarray(0, to - from)) === 0;
}

function writeAll(fd: number, data: Uint8Array, from: number, length: number, position: number): void {
  for (let done = 0; done < length;) done += writeSync(fd, data, from + done, length - done, position + done);
}

/**
 * Writes a chunk but leaves file-system blocks that are all zero unwritten: with the final
 * truncate they become holes, so sparse files (disk images) come back sparse. Blocks are
 * aligned on file offsets, so holes line up with the file system's blocks.
 */
function writeSparse(fd: number, data: Uint8Array, offset: number): number {
  let runStart = -1;
  let pos = 0;
  while (pos < data.length) {
    const end = Math.min(data.length, pos + HOLE_BLOCK - ((offset + pos) % HOLE_BLOCK));
    if (isZero(data, pos, end)) {
      if (runStart >= 0) writeAll(fd, data, runStart, pos - runStart, offset + runStart);
      runStart = -1;
    } else if (runStart < 0) runStart = pos;
    pos = end;
  }
  if (runStart >= 0) {
    writeAll(fd, data, runStart, data.length - runStart, offset + runStart);
    return offset + data.length;
  }
  return -1;
}

/**
 * Creates a file's partial copy (O_EXCL|O_NOFOLLOW: never follows or reuses what stands
 * there), writes its one chunk, sets its size and metadata through the descriptor, and gives
 * it its final name (rename replaces atomically, never following a symlink). On any failure
 * the partial copy is removed before the error goes on: nothing half-written is left.
 */
function writeWholeFile(partial: string, plain: Uint8Array, offset: number, f: WholeFile): MetaProblem[] {
  const tmp = Buffer.from(partial, 'latin1');
  // Created with its final mode when the umask leaves it whole (born.mode), else owner-only.
  const fd = openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, f.born?.mode ?? 0o600);
  try {
    let problems: MetaProblem[];
    try {
      // A file written up to its end needs no truncate; one that ends in zeros gets its size (and a hole).
      if (writeSparse(fd, plain, offset) < f.size) ftruncateSync(fd, f.size);
      problems = setFileMeta(fd, f);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, Buffer.from(f.dest, 'latin1'));
    return problems;
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

function handle(msg: WriterRequest): WriterReply {
  const range = new Uint8Array(msg.data, 0, msg.length);
  const damaged: number[] = [];
  const failed: WriteFailure[] = [];
  const problems: WriteProblem[] = [];
  let written = 0;
  msg.blobs.forEach((b, i) => {
    if (plainBuffer.length < b.plainLength) plainBuffer = new Uint8Array(b.plainLength);
    let plain: Uint8Array;
    try {
      plain = decoder.decode(Buffer.from(b.id, 'hex'), range.subarray(b.offset, b.offset + b.length), plainBuffer);
    } catch (e) {
      // A blob that fails to open or to match its id is damage, reported, not a crash.
      if (!(e instanceof CoffreError)) throw e;
      damaged.push(i);
      return;
    }
    for (const t of b.targets) {
      // One file the target refuses (a full disk, a name it cannot hold) fails alone.
      try {
        if (t.whole) {
          for (const p of writeWholeFile(t.path, plain, t.offset, t.whole)) problems.push({ ...p, file: t.file });
        } else {
          writePartial(t, plain);
        }
      } catch (e) {
        failed.push({ file: t.file, message: (e as Error).message });
        continue;
      }
      written += plain.length;
    }
  });
  return { op: 'done', seq: msg.seq, data: msg.data, damaged, written, failed, problems };
}

/** Writes a chunk into a partial file under the file's lock, while the plaintext is still in the cache. */
function writePartial(t: WriteTarget, plain: Uint8Array): void {
  const slot = lockFile(t.file);
  try {
    // The partial file was created by the main thread with O_EXCL; never follow a link here.
    const fd = openSync(Buffer.from(t.path, 'latin1'), C.O_WRONLY | C.O_NOFOLLOW);
    try {
      if (t.dense) writeAll(fd, plain, 0, plain.length, t.offset);
      else writeSparse(fd, plain, t.offset);
    } finally {
      closeSync(fd);
    }
  } finally {
    unlockFile(slot);
  }
}

parentPort!.on('message', (msg: WriterRequest) => {
  let reply: WriterReply;
  try {
    reply = handle(msg);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    reply = { op: 'failed', seq: msg.seq, data: msg.data, message: err.message, code: err.code ?? null };
  }
  parentPort!.postMessage(reply, [reply.data]);
});
