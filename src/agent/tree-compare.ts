/**
 * Compares two trees byte for byte, with types, modes, owners, link targets, hard links,
 * device numbers, extended attributes (ACLs, capabilities) and mtimes to the nanosecond:
 * how the quickstart and the tests prove that a restore is exact.
 */
import { lstat, opendir, readlink, open } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { posix } from './posix.js';

export interface TreeDifference { path: string; what: string }

const BLOCK = 1024 * 1024;

async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, 'r'), open(b, 'r')]);
  try {
    const ba = Buffer.allocUnsafe(BLOCK);
    const bb = Buffer.allocUnsafe(BLOCK);
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, BLOCK, null), fb.read(bb, 0, BLOCK, null)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await fa.close();
    await fb.close();
  }
}

/** Attributes as "name=hex" lines; a file system without attributes has none. */
function xattrsOf(p: Buffer): string[] {
  try {
    return posix.listXattrs(p)
      .map(([n, v]) => `${n.toString('latin1')}=${v.toString('hex')}`).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTSUP' || (e as NodeJS.ErrnoException).code === 'EOPNOTSUPP') return [];
    throw e;
  }
}

export interface CompareOptions { owners?: boolean; mtimes?: boolean; xattrs?: boolean }

export async function compareTrees(expected: string, actual: string, opts: CompareOptions = {}): Promise<TreeDifference[]> {
  const diffs: TreeDifference[] = [];
  const linksA = new Map<string, string>();
  const linksB = new Map<string, string>();
  // Paths are bytes: names that are not UTF-8 must survive the walk.
  const at = (root: string, rel: Buffer) => (rel.length ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root)) as unknown as string;
  const visit = async (relBuf: Buffer): Promise<void> => {
    const rel = relBuf.toString('utf8');
    const pa = at(expected, relBuf);
    const pb = at(actual, relBuf);
    let sa: BigIntStats;
    let sb: BigIntStats;
    try {
      sa = await lstat(pa, { bigint: true });
      sb = await lstat(pb, { bigint: true });
    } catch {
      diffs.push({ path: rel, what: 'missing' });
      return;
    }
    const type = (s: BigIntStats) => s.isDirectory() ? 'dir' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'symlink'
      : s.isFIFO() ? 'fifo' : s.isCharacterDevice() ? 'chardev' : s.isBlockDevice() ? 'blockdev' : 'socket';
    if (type(sa) !== type(sb)) { diffs.push({ path: rel, what: `type ${type(sa)} != ${type(sb)}` }); return; }
    if (!sa.isSymbolicLink() && (sa.mode & 0o7777n) !== (sb.mode & 0o7777n)) diffs.push({ path: rel, what: `mode ${(sa.mode & 0o7777n).toString(8)} != ${(sb.mode & 0o7777n).toString(8)}` });
    if (opts.owners && (sa.uid !== sb.uid || sa.gid !== sb.gid)) diffs.push({ path: rel, what: `owner ${sa.uid}:${sa.gid} != ${sb.uid}:${sb.gid}` });
    if ((sa.isCharacterDevice() || sa.isBlockDevice()) && sa.rdev !== sb.rdev) diffs.push({ path: rel, what: `device ${sa.rdev} != ${sb.rdev}` });
    if (opts.mtimes !== false && rel && sa.mtimeNs !== sb.mtimeNs) diffs.push({ path: rel, what: `mtime ${sa.mtimeNs} != ${sb.mtimeNs}` });
    if (opts.xattrs !== false) {
      const [xa, xb] = [xattrsOf(pa as unknown as Buffer), xattrsOf(pb as unknown as Buffer)];
      if (xa.join('\n') !== xb.join('\n')) diffs.push({ path: rel, what: `extended attributes [${xa.join(', ')}] != [${xb.join(', ')}]` });
    }
    if (sa.isSymbolicLink()) {
      if (!(await readlink(pa, { encoding: 'buffer' })).equals(await readlink(pb, { encoding: 'buffer' }))) diffs.push({ path: rel, what: 'link target' });
    } else if (sa.isFile()) {
      if (sa.size !== sb.size) diffs.push({ path: rel, what: `size ${sa.size} != ${sb.size}` });
      else if (!(await sameContent(pa, pb))) diffs.push({ path: rel, what: 'content' });
      if (sa.nlink > 1n) {
        const ka = `${sa.dev}:${sa.ino}`;
        const kb = `${sb.dev}:${sb.ino}`;
        if (linksA.has(ka) !== linksB.has(kb) || (linksA.has(ka) && linksA.get(ka) !== linksB.get(kb))) diffs.push({ path: rel, what: 'hard link' });
        if (!linksA.has(ka)) linksA.set(ka, rel);
        if (!linksB.has(kb)) linksB.set(kb, rel);
      }
    } else if (sa.isDirectory()) {
      const names = async (p: string) => {
        const out: Buffer[] = [];
        for await (const d of await opendir(p, { encoding: 'buffer' as BufferEncoding })) out.push(d.name as unknown as Buffer);
        return out.sort(Buffer.compare);
      };
      const [na, nb] = await Promise.all([names(pa), names(pb)]);
      const child = (n: Buffer) => relBuf.length ? Buffer.concat([relBuf, Buffer.from('/'), n]) : n;
      for (const n of nb) if (!na.some((x) => x.equals(n))) diffs.push({ path: child(n).toString('utf8'), what: 'unexpected' });
      for (const n of na) await visit(child(n));
    }
  };
  await visit(Buffer.alloc(0));
  return diffs;
}
