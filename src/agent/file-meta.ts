/**
 * The metadata of a restored entry: owner, extended attributes (ACLs, capabilities), mode and
 * modification time to the nanosecond. Shared by the restore's main thread and its workers,
 * which finish files of one chunk themselves.
 *
 * The order matters: chown first (it clears set-id bits and file capabilities), then the
 * attributes (while the file is still ours to write: a read-only mode would refuse user
 * attributes to anyone but root), then the mode (which also sets the ACL's mask to the
 * recorded group bits, as they were), then the times (every change before moves them).
 *
 * What the target refuses (an attribute on vfat, a mode on a file system that keeps none) is a
 * problem for the job's warnings: the file's bytes are restored all the same.
 */
import { fchmodSync, fchownSync, chmodSync, lchownSync } from 'node:fs';
import type { Entry, Xattr } from '../core/manifest.js';
import { posix, splitNs } from './posix.js';
import { applyXattrs } from './xattrs.js';

/** Only root may give a file another owner; anyone else's files stay theirs. */
export const IS_ROOT = process.getuid?.() === 0;

export interface FileMeta {
  mode: number;
  uid: number;
  gid: number;
  /** Seconds and nanoseconds of the mtime. */
  mtime: [number, number];
  xattrs?: Xattr[];
  /** Attributes to remove when the entry lacks them (ACLs inherited from the target folder). */
  strip?: string[];
  /**
   * What the file already has, as its creator knows: its mode (created with it) and, in a
   * folder the restore made, its owner. What already matches is not set again: on a tree of
   * small files, the saved fchown and fchmod are a tenth of a restore's system calls.
   */
  born?: { mode: number; uid?: number; gid?: number };
}

export interface MetaProblem { code: 'XattrNotRestored' | 'OwnerNotRestored' | 'ModeNotRestored' | 'TimeNotRestored'; message: string }

/** What every kind of entry carries, in a flat manifest or a tree page. */
type EntryMeta = Pick<Entry, 'mode' | 'uid' | 'gid' | 'mtime' | 'xattrs'>;

export function metaOf(e: EntryMeta, owner: { uid: number; gid: number } = e, strip?: string[]): FileMeta {
  const meta: FileMeta = { mode: e.mode, uid: owner.uid, gid: owner.gid, mtime: splitNs(e.mtime) };
  if (e.xattrs) meta.xattrs = e.xattrs;
  if (strip?.length) meta.strip = strip;
  return meta;
}

const message = (e: unknown) => (e as Error).message;

/**
 * Through an open descriptor (never a path that could have been swapped) for files and
 * folders, or by path for what cannot be opened without side effects (FIFOs, device nodes:
 * created by the restore itself, in folders it owns) and for symbolic links (their own
 * owner, attributes and times; a link has no mode of its own).
 * Synchronous: per-file thread-pool round trips dominated restores of many small files.
 */
export function setFileMeta(target: number | Buffer, m: FileMeta, opts: { link?: boolean } = {}): MetaProblem[] {
  const problems: MetaProblem[] = [];
  const byFd = typeof target === 'number';
  const born = m.born;
  if (IS_ROOT && !(born && born.uid === m.uid && born.gid === m.gid)) {
    try {
      if (byFd) fchownSync(target, m.uid, m.gid);
      else lchownSync(target as unknown as string, m.uid, m.gid);
    } catch (e) {
      problems.push({ code: 'OwnerNotRestored', message: `owner ${m.uid}:${m.gid} not set: ${message(e)}` });
    }
  }
  if (m.xattrs || m.strip) {
    for (const f of applyXattrs(target, m.xattrs, m.strip)) {
      problems.push({ code: 'XattrNotRestored', message: `extended attribute ${f.name} not restored: ${f.message}` });
    }
  }
  if (!opts.link && born?.mode !== m.mode) {
    try {
      if (byFd) fchmodSync(target, m.mode);
      else chmodSync(target as unknown as string, m.mode);
    } catch (e) {
      problems.push({ code: 'ModeNotRestored', message: `mode ${m.mode.toString(8)} not set: ${message(e)}` });
    }
  }
  try {
    // The access time takes the mtime too: a restore is not an access the user made.
    posix.setTimes(target, m.mtime[0], m.mtime[1], m.mtime[0], m.mtime[1]);
  } catch (e) {
    problems.push({ code: 'TimeNotRestored', message: `modification time not set: ${message(e)}` });
  }
  return problems;
}
