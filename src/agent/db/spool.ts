/**
 * The WAL spool: where PostgreSQL's `archive_command` (`coffre db archive-wal`) puts each
 * completed WAL file, and where log and base backups take them from. It runs as the database's
 * system user, reads no agent key and needs no vault: it only makes the file durable locally.
 *
 * Archiving contract (PostgreSQL's): exit 0 only once the file is durable — written under a
 * temporary name, fsynced, renamed, and the folder fsynced; never replace an archived file by
 * different content (same content: success, since PostgreSQL retries after a crash). A log
 * backup removes spooled files only once a committed point holds them.
 */
import { closeSync, constants as C, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync, fstatSync, readdirSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import { HISTORY_NAME, parseSegmentName, SEGMENT_NAME } from '../../core/wal.js';

/** What PostgreSQL archives: segments, timeline histories, backup history files, partial segments. */
const ARCHIVABLE = /^([0-9A-F]{24}|[0-9A-F]{8}\.history|[0-9A-F]{24}\.[0-9A-F]{8}\.backup|[0-9A-F]{24}\.partial)$/;
const COPY_BUFFER = 1024 * 1024;

function fsyncDir(dir: string): void {
  const fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

function sameContent(a: string, b: string): boolean {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    if (fstatSync(fa).size !== fstatSync(fb).size) return false;
    const ba = Buffer.allocUnsafe(COPY_BUFFER);
    const bb = Buffer.allocUnsafe(COPY_BUFFER);
    for (let pos = 0; ; pos += COPY_BUFFER) {
      const na = readSync(fa, ba, 0, COPY_BUFFER, pos);
      const nb = readSync(fb, bb, 0, COPY_BUFFER, pos);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** `archive_command`: copies one WAL file into the spool durably. Synchronous: it is a whole short-lived process. */
export function archiveWal(spoolDir: string, source: string, name: string): 'archived' | 'already archived' {
  if (!ARCHIVABLE.test(name)) throw new CoffreError('InvalidArgument', `${name} is not a WAL file name; archive_command must pass "%p" "%f"`);
  mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
  const dest = join(spoolDir, name);
  try {
    if (sameContent(source, dest)) return 'already archived';
    throw new CoffreError('InvalidArgument', `${name} is already archived in ${spoolDir} with different content; refusing to overwrite it (two clusters archiving into one spool?)`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmp = join(spoolDir, `.${name}.${process.pid}.tmp`);
  const from = openSync(source, 'r');
  const to = openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_TRUNC, 0o600);
  try {
    const buf = Buffer.allocUnsafe(COPY_BUFFER);
    for (let pos = 0; ;) {
      const n = readSync(from, buf, 0, COPY_BUFFER, pos);
      if (n === 0) break;
      for (let w = 0; w < n;) w += writeSync(to, buf, w, n - w, pos + w);
      pos += n;
    }
    fsyncSync(to);
  } finally {
    closeSync(from);
    closeSync(to);
  }
  renameSync(tmp, dest);
  fsyncDir(spoolDir);
  return 'archived';
}

export interface SpooledSegment { name: string; timeline: number; segNo: number }

export interface SpoolListing { segments: SpooledSegment[]; histories: string[]; other: string[] }

/** The finished files of the spool (temporary copies are ignored), segments in order. */
export function listSpool(spoolDir: string, segSize: number): SpoolListing {
  let names: string[];
  try {
    names = readdirSync(spoolDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { segments: [], histories: [], other: [] };
    throw e;
  }
  const out: SpoolListing = { segments: [], histories: [], other: [] };
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const seg = SEGMENT_NAME.test(n) ? parseSegmentName(n, segSize) : null;
    if (seg) out.segments.push({ name: n, ...seg });
    else if (HISTORY_NAME.test(n)) out.histories.push(n);
    else out.other.push(n);
  }
  out.segments.sort((a, b) => a.timeline - b.timeline || a.segNo - b.segNo);
  out.histories.sort();
  return out;
}

/** Removes spooled files a committed point holds; the folder is fsynced once. */
export function removeFromSpool(spoolDir: string, names: readonly string[]): void {
  if (names.length === 0) return;
  for (const n of names) {
    try {
      unlinkSync(join(spoolDir, n));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  fsyncDir(spoolDir);
}

/**
 * One backup of a database at a time on this machine: a lock file holding the owner's pid,
 * taken with O_EXCL. A lock whose process is gone (killed) is taken over.
 */
export function takeLock(file: string, what: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, C.O_WRONLY | C.O_CREAT | C.O_EXCL, 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => { try { unlinkSync(file); } catch { /* already removed: nothing to release */ } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = Number(readFileSync(file, 'utf8').trim());
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = pid > 0 && pid !== process.pid;
    } catch {
      // No such process: the lock's owner was killed; take the lock over.
    }
    if (alive) throw new CoffreError('BackupInProgress', `a backup of ${what} is already running (process ${pid}); wait for it to finish`);
    unlinkSync(file);
  }
  throw new CoffreError('BackupInProgress', `another process keeps taking the backup lock of ${what}; try again`);
}

/**
 * Waits until the spool holds every segment from `first` to `last` of `timeline` (PostgreSQL
 * archives them in order, asynchronously); throws WalNotArchived past the timeout, naming the
 * first missing one and where to look.
 */
export async function waitForSegments(spoolDir: string, segSize: number, timeline: number, first: number, last: number, timeoutMs: number, segName: (n: number) => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
    const have = new Set(listSpool(spoolDir, segSize).segments.filter((s) => s.timeline === timeline).map((s) => s.segNo));
    let missing = -1;
    for (let n = first; n <= last; n++) if (!have.has(n)) { missing = n; break; }
    if (missing < 0) return;
    if (Date.now() > deadline) {
      throw new CoffreError('WalNotArchived', `PostgreSQL did not archive WAL segment ${segName(missing)} into ${spoolDir} within ${Math.round(timeoutMs / 1000)} s; check archive_command and the server log (SELECT * FROM pg_stat_archiver)`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}
