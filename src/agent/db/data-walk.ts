/**
 * The walk of a database's data folder, whole and flat: the base backup needs every entry at
 * once (which files to copy depends on their siblings, see data-paths.ts), and a PostgreSQL
 * data folder holds thousands of files, not millions. File backups walk folder by folder
 * instead (tree-backup.ts).
 */
import { lstatSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JobProblem } from '../../core/api.js';
import { CoffreError } from '../../core/errors.js';
import { encodeName } from '../../core/manifest.js';
import { entryStat, rootName, type EntryStat } from '../walk.js';

export interface WalkEntry {
  /** Absolute path as bytes, for system calls. */
  abs: Buffer;
  /** Path inside the point, as encoded components; the first is the folder's own name. */
  path: string[];
  /** '/'-joined readable path, for messages. */
  display: string;
  stat: EntryStat;
}

const SEP = Buffer.from('/');

function join(parent: Buffer, name: Buffer): Buffer {
  return parent[parent.length - 1] === 0x2f ? Buffer.concat([parent, name]) : Buffer.concat([parent, SEP, name]);
}

/** Every entry under `root`, parents first, children in byte order; what cannot be read is a problem, not fatal. */
export function walk(root: string, warn: (p: JobProblem) => void): WalkEntry[] {
  const abs = resolve(root);
  let stat: EntryStat | null;
  try {
    stat = entryStat(lstatSync(abs, { bigint: true }));
  } catch (e) {
    throw new CoffreError('InvalidArgument', `cannot read ${root}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`);
  }
  if (!stat || stat.kind !== 'dir') throw new CoffreError('InvalidArgument', `${root} is not a folder`);
  const name = rootName(root);
  const out: WalkEntry[] = [{ abs: Buffer.from(abs), path: [name], display: name, stat }];
  walkDir(out[0]!, out, warn);
  return out;
}

function walkDir(dir: WalkEntry, out: WalkEntry[], warn: (p: JobProblem) => void): void {
  let children: Buffer[];
  try {
    children = readdirSync(dir.abs as unknown as string, { encoding: 'buffer' });
  } catch (e) {
    warn({ code: 'Unreadable', message: `cannot list folder ${dir.display}: ${(e as Error).message}`, path: dir.display });
    return;
  }
  children.sort(Buffer.compare);
  for (const nameBuf of children) {
    const display = `${dir.display}/${nameBuf.toString('utf8')}`;
    const abs = join(dir.abs, nameBuf);
    let stat: EntryStat | null;
    try {
      stat = entryStat(lstatSync(abs as unknown as string, { bigint: true }));
    } catch (e) {
      warn({ code: 'Unreadable', message: `cannot read ${display}: ${(e as Error).message}`, path: display });
      continue;
    }
    if (!stat) {
      warn({ code: 'SpecialFileSkipped', message: `${display} is a socket; sockets are not backed up (the program that made it re-creates it)`, path: display });
      continue;
    }
    const entry = { abs, path: [...dir.path, encodeName(nameBuf)], display, stat };
    out.push(entry);
    if (stat.kind === 'dir') walkDir(entry, out, warn);
  }
}
