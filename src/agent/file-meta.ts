/**
 * Owner, mode and modification time of a restored file, set through its open descriptor
 * (never a path that could have been swapped): shared by the restore's main thread and its
 * workers, which finish files of one chunk themselves.
 */
import { fchmodSync, fchownSync, futimesSync } from 'node:fs';
import type { Entry } from '../core/manifest.js';

/** Only root may give a file another owner; anyone else's files stay theirs. */
export const IS_ROOT = process.getuid?.() === 0;

export interface FileMeta { mode: number; uid: number; gid: number; mtimeSeconds: number }

/** The mtime as the seconds futimes takes (microseconds: what the system call keeps). */
export function mtimeSeconds(e: Entry): number {
  return Number(BigInt(e.mtime) / 1000n) / 1e6;
}

export function metaOf(e: Entry): FileMeta {
  return { mode: e.mode, uid: e.uid, gid: e.gid, mtimeSeconds: mtimeSeconds(e) };
}

/** Synchronous: per-file thread-pool round trips dominated restores of many small files. */
export function setFileMeta(fd: number, m: FileMeta): void {
  if (IS_ROOT) fchownSync(fd, m.uid, m.gid);
  // After chown, which clears set-id bits.
  fchmodSync(fd, m.mode);
  futimesSync(fd, m.mtimeSeconds, m.mtimeSeconds);
}
