/** Argument parsers shared by several commands. */
import { access, constants as FS, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { CoffreError } from '../core/errors.js';

/** `--retain-until`: a real calendar date in the future (shared by file and VM backups). */
export function retainUntil(value: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!d || d.toISOString().slice(0, 10) !== value) throw new InvalidArgumentError('use a date as YYYY-MM-DD');
  if (value <= new Date().toISOString().slice(0, 10)) throw new InvalidArgumentError('the date must be in the future');
  return value;
}

/** `--script-timeout` and the like: seconds, more than 0, at most a day. */
export function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw new InvalidArgumentError('give seconds, from more than 0 to 86400');
  return n;
}

/** A script the agent will run: an executable file, by its absolute path (scheduled runs start elsewhere). */
export async function executable(file: string, flag: string): Promise<string> {
  const abs = resolve(file);
  try {
    if (!(await stat(abs)).isFile()) throw new Error('not a file');
    await access(abs, FS.X_OK);
  } catch (e) {
    throw new CoffreError('InvalidArgument', `${flag} ${file} must be an executable file (${(e as Error).message}); chmod +x it`);
  }
  return abs;
}
