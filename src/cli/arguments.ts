/** Argument parsers shared by several commands. */
import { InvalidArgumentError } from 'commander';

/** `--retain-until`: a real calendar date in the future (shared by file and VM backups). */
export function retainUntil(value: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!d || d.toISOString().slice(0, 10) !== value) throw new InvalidArgumentError('use a date as YYYY-MM-DD');
  if (value <= new Date().toISOString().slice(0, 10)) throw new InvalidArgumentError('the date must be in the future');
  return value;
}
