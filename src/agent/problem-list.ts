/**
 * A job's warnings, bounded: a restore to a file system that keeps no attributes or owners (a
 * vfat stick) would otherwise report the same refusal for every file, and a job record of
 * millions of lines helps nobody. The first warnings of each code are kept whole, with their
 * paths; the rest are counted and summed up in one last warning per code.
 */
import type { JobProblem } from '../core/api.js';

export const KEPT_PER_CODE = 100;

export class ProblemList {
  private readonly kept: JobProblem[] = [];
  private readonly counts = new Map<string, number>();

  constructor(private readonly perCode = KEPT_PER_CODE) {}

  push(p: JobProblem): void {
    const n = (this.counts.get(p.code) ?? 0) + 1;
    this.counts.set(p.code, n);
    if (n <= this.perCode) this.kept.push(p);
  }

  get size(): number {
    return this.kept.length;
  }

  list(): JobProblem[] {
    const more: JobProblem[] = [];
    for (const [code, n] of this.counts) {
      if (n > this.perCode) more.push({ code, message: `${n - this.perCode} more warnings like the ones above (${code}, ${n} in all)` });
    }
    return [...this.kept, ...more];
  }
}
