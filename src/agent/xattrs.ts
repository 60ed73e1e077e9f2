/**
 * Extended attributes as a backup keeps them: read as bytes from a path (never following a
 * symbolic link) or an open descriptor, stored sorted by name with base64 values, and written
 * back one by one so that an attribute the target refuses costs a warning, not the file.
 *
 * POSIX ACLs are the `system.posix_acl_access` and `system.posix_acl_default` attributes and
 * file capabilities are `security.capability`: keeping attributes keeps all three.
 */
import type { Xattr } from '../core/manifest.js';
import { posix, type Target } from './posix.js';

export const ACCESS_ACL = 'system.posix_acl_access';
export const DEFAULT_ACL = 'system.posix_acl_default';

/** The file system keeps no attributes at all (vfat, some network file systems). */
const UNSUPPORTED = new Set(['ENOTSUP', 'EOPNOTSUPP']);

export function isUnsupported(e: unknown): boolean {
  return UNSUPPORTED.has((e as NodeJS.ErrnoException).code ?? '');
}

export interface XattrRead { xattrs?: Xattr[]; problem?: string }

/**
 * Every attribute the process may read. A file system without attributes has none; any other
 * failure is returned as a problem for the job, and the entry is kept without attributes.
 */
export function readXattrs(target: Target): XattrRead {
  let raw: [Buffer, Buffer][];
  try {
    raw = posix.listXattrs(target);
  } catch (e) {
    if (isUnsupported(e)) return {};
    return { problem: `its extended attributes could not be read: ${(e as Error).message}` };
  }
  if (raw.length === 0) return {};
  const xattrs: Xattr[] = [];
  const skipped: string[] = [];
  for (const [name, value] of raw) {
    const text = name.toString('utf8');
    // Attribute names are text by the kernel's own convention; one that is not cannot be kept as a string.
    if (!Buffer.from(text, 'utf8').equals(name)) { skipped.push(name.toString('latin1')); continue; }
    xattrs.push([text, value.toString('base64')]);
  }
  xattrs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return {
    ...(xattrs.length ? { xattrs } : {}),
    ...(skipped.length ? { problem: `extended attributes with names that are not text were skipped: ${skipped.join(', ')}` } : {}),
  };
}

/** What an attribute that could not be set becomes in the job: which, and why. */
export interface XattrFailure { name: string; message: string }

/**
 * Sets every attribute of the entry; each refused one is reported and the rest still set.
 * `strip` names attributes to remove when the entry does not hold them (an ACL inherited from
 * the folder the restore wrote into, which the backed-up file did not have).
 */
export function applyXattrs(target: Target, xattrs: Xattr[] | undefined, strip: readonly string[] = []): XattrFailure[] {
  const failures: XattrFailure[] = [];
  const list = xattrs ?? [];
  for (let i = 0; i < list.length; i++) {
    const [name, value] = list[i]!;
    try {
      posix.setXattr(target, name, Buffer.from(value, 'base64'));
    } catch (e) {
      const message = (e as Error).message;
      // A file system without attributes takes none of the rest either: say so for each, once.
      if (isUnsupported(e)) {
        for (const [rest] of list.slice(i)) failures.push({ name: rest, message });
        break;
      }
      failures.push({ name, message });
    }
  }
  for (const name of strip) {
    if (xattrs?.some(([n]) => n === name)) continue;
    try {
      posix.removeXattr(target, name);
    } catch (e) {
      if (!isUnsupported(e)) failures.push({ name, message: `an inherited ${name} could not be removed: ${(e as Error).message}` });
    }
  }
  return failures;
}
