/**
 * Self-healing reads: an object is read from the first copy that has it intact; a copy that
 * lacks it or holds damaged bytes is skipped, then rewritten from an intact copy, and every
 * such repair is reported so that the job that read can say so. What "intact" means is the
 * caller's to say (the vault checks pack ranges against the checksums it recorded), which
 * keeps this layer free of the catalog.
 *
 * A copy that cannot be reached is skipped but not repaired: it is not known to be bad.
 */
import { CoffreError } from '../core/errors.js';
import type { StoreCopy } from './copies.js';
import { isNotFound } from './store-error.js';

export interface CopyCheck {
  /** Whether bytes read (the whole object, or the given range of it) are intact. */
  part(data: Buffer, range?: { offset: number; length: number }): boolean;
  /** Whether a whole object is intact, before it is written over a bad copy. */
  whole(data: Buffer): boolean;
}

export type CopyProblem = 'missing' | 'damaged';

export interface CopyRepair { store: string; key: string; problem: CopyProblem; repaired: boolean; error?: string }

export interface HealedRead { data: Buffer; repairs: CopyRepair[] }

/** Writes an intact whole copy of `key`, taken from `sources`, over `bad`. */
export async function rewriteCopy(sources: readonly StoreCopy[], bad: StoreCopy, key: string, check: CopyCheck, known?: Buffer): Promise<CopyRepair & { problem: CopyProblem }> {
  const problem: CopyProblem = 'damaged';
  let whole = known && check.whole(known) ? known : null;
  for (const s of sources) {
    if (whole) break;
    if (s === bad) continue;
    try {
      const data = await s.store.get(key);
      if (check.whole(data)) whole = data;
    } catch (e) {
      // This source cannot give an intact copy; the next one may.
      if (!(e instanceof CoffreError)) throw e;
    }
  }
  if (!whole) return { store: bad.name, key, problem, repaired: false, error: 'no intact copy to repair it from' };
  try {
    await bad.store.put(key, whole);
    return { store: bad.name, key, problem, repaired: true };
  } catch (e) {
    return { store: bad.name, key, problem, repaired: false, error: (e as Error).message };
  }
}

export async function healingRead(copies: readonly StoreCopy[], key: string, range: { offset: number; length: number } | undefined, check: CopyCheck): Promise<HealedRead> {
  const bad: { copy: StoreCopy; problem: CopyProblem }[] = [];
  const unreachable: unknown[] = [];
  let good: { copy: StoreCopy; data: Buffer } | null = null;
  for (const copy of copies) {
    let data: Buffer;
    try {
      data = await copy.store.get(key, range);
    } catch (e) {
      if (isNotFound(e)) bad.push({ copy, problem: 'missing' });
      else if (e instanceof CoffreError && e.code === 'ChecksumMismatch') bad.push({ copy, problem: 'damaged' });
      else if (e instanceof CoffreError) unreachable.push(e);
      else throw e;
      continue;
    }
    if (!check.part(data, range)) { bad.push({ copy, problem: 'damaged' }); continue; }
    good = { copy, data };
    break;
  }
  if (!good) {
    if (bad.some((b) => b.problem === 'damaged')) {
      throw new CoffreError('ChecksumMismatch', `object ${key} is damaged in ${bad.filter((b) => b.problem === 'damaged').map((b) => b.copy.name).join(', ')}${bad.some((b) => b.problem === 'missing') ? ` and missing from ${bad.filter((b) => b.problem === 'missing').map((b) => b.copy.name).join(', ')}` : ''}, and no other copy could be read`);
    }
    if (unreachable.length) throw unreachable[0];
    throw new CoffreError('NotFound', `object ${key} is missing from every copy (${copies.map((c) => c.name).join(', ')})`);
  }
  const repairs: CopyRepair[] = [];
  for (const b of bad) {
    const r = await rewriteCopy([good.copy, ...copies.filter((c) => c !== good!.copy)], b.copy, key, check, range ? undefined : good.data);
    repairs.push({ ...r, problem: b.problem });
  }
  return { data: good.data, repairs };
}
