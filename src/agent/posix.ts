/**
 * The native calls of native/posix.c (built by `npm ci` through node-gyp): extended attributes,
 * nanosecond times and mknod, which Node.js does not offer. A target is a path as bytes (never
 * followed when it is a symbolic link) or an open descriptor. Errors carry `code` as node:fs
 * errors do ("ENOTSUP", "EPERM", ...).
 */
import { createRequire } from 'node:module';
import { CoffreError } from '../core/errors.js';

export type Target = Buffer | number;

interface Posix {
  listXattrs(target: Target): [Buffer, Buffer][];
  setXattr(target: Target, name: string | Buffer, value: Buffer): void;
  removeXattr(target: Target, name: string | Buffer): void;
  setTimes(target: Target, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  mknod(path: Buffer, mode: number, major: number, minor: number): void;
  /** A folder's entries in byte order with their lstat (see native/posix.c and listing.ts). */
  scanDir(path: Buffer): { names: Buffer; offsets: Uint32Array; stats: Float64Array; extra: Float64Array };
}

function load(): Posix {
  try {
    // From dist/src/agent/ to the addon node-gyp builds at the package's root.
    return createRequire(import.meta.url)('../../../build/Release/coffre_posix.node') as Posix;
  } catch (e) {
    throw new CoffreError('Internal', `the native part of coffre is missing (${(e as Error).message}); run \`npm ci\` (or \`npx node-gyp rebuild\`) in coffre's folder`);
  }
}

export const posix: Posix = load();

/** Seconds and nanoseconds of a time given as nanoseconds since the epoch (a decimal string). */
export function splitNs(ns: string): [number, number] {
  const t = BigInt(ns);
  let sec = t / 1_000_000_000n;
  let nsec = t % 1_000_000_000n;
  // Before 1970 the remainder is negative; timespec wants 0 <= nsec < 1e9.
  if (nsec < 0n) { nsec += 1_000_000_000n; sec -= 1n; }
  return [Number(sec), Number(nsec)];
}
