/** A copy queue in memory, for tests of the store layer (the server's lives in the catalog). */
import type { CopyQueue, CopyQueueWorker, CopyTask, QueuedCopy } from '../src/store/copies.js';

export class MemoryCopyQueue implements CopyQueueWorker {
  readonly tasks: (QueuedCopy & { notBefore: number; error?: string })[] = [];
  private next = 1;

  scoped(scope: string): CopyQueue {
    return {
      add: async (tasks: CopyTask[]) => {
        for (const t of tasks) this.tasks.push({ ...t, id: this.next++, scope, queuedAt: new Date(), attempts: 0, notBefore: 0 });
      },
    };
  }

  async due(limit: number, now: Date, ignoreBackoff = false): Promise<QueuedCopy[]> {
    return this.tasks.filter((t) => ignoreBackoff || t.notBefore <= now.getTime()).slice(0, limit).map((t) => ({ ...t }));
  }

  async done(ids: number[]): Promise<void> {
    for (const id of ids) {
      const i = this.tasks.findIndex((t) => t.id === id);
      if (i >= 0) this.tasks.splice(i, 1);
    }
  }

  async later(id: number, at: Date, error: string): Promise<void> {
    const t = this.tasks.find((x) => x.id === id);
    if (t) { t.attempts++; t.notBefore = at.getTime(); t.error = error; }
  }
}
