/**
 * The copy queue of the redundant stores (src/store/copies.ts), kept in the catalog: durable
 * with the catalog's own guarantees (a task is queued in one synchronous commit), and shared
 * by every server that shares the catalog. One scope per vault.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import type { CopyQueue, CopyQueueWorker, CopyTask, QueuedCopy } from '../store/copies.js';

const BATCH = 200;
/** Copies queued this recently mean a backup is still sending: background copies wait. */
export const WRITES_QUIET_MS = 3_000;
/**
 * The longest a copy waits for writes to pause: a third of the tightest ReplicationLag
 * threshold the CLI suggests (15 minutes; the default is an hour), so a long backup does not
 * raise that alert by itself, nor keep a ZRS zone short of a copy for long.
 */
export const MAX_DEFER_MS = 5 * 60_000;

export interface QueueStats { pendingObjects: number; pendingBytes: number; oldestPendingSeconds: number }

export class CatalogCopyQueue implements CopyQueueWorker {
  /** Called after tasks were added: the replicator can start at once. */
  onAdd: () => void = () => undefined;
  /**
   * Whether this node's background replication may work now (it holds the replication lease,
   * src/vault/leases.ts): several nodes share the queue, one works through it. An explicit
   * drain (delays ignored) works whatever this says.
   */
  gate: () => boolean = () => true;
  /**
   * When this node last queued copies: a backup writing to a GRS vault queues one with every
   * pack (so do record writes, deletions, and a ZRS write that missed a zone). Copying meanwhile
   * would take the CPU and disk the backup is using (on a small server the backup then takes
   * longer), so background replication waits until this node's writes pause, as a cloud's
   * asynchronous geo-replication does, but never more than MAX_DEFER_MS. Writes that reach
   * another node do not hold this one back: they do not use its CPU.
   */
  private lastAddAt = -Infinity;
  quietMs = WRITES_QUIET_MS;
  maxDeferMs = MAX_DEFER_MS;

  constructor(private readonly db: Kysely<Database>, private readonly clock: Clock) {}

  scoped(vaultId: string): CopyQueue {
    return {
      add: async (tasks: CopyTask[]) => {
        if (!tasks.length) return;
        const now = this.clock.now().toISOString();
        for (let i = 0; i < tasks.length; i += BATCH) {
          await this.db.insertInto('copy_queue').values(tasks.slice(i, i + BATCH).map((t) => ({
            vault_id: vaultId, target: t.target, key: t.key, op: t.op, bytes: t.bytes, queued_at: now, attempts: 0, next_try_at: now, last_error: null,
          }))).execute();
        }
        this.lastAddAt = performance.now();
        this.onAdd();
      },
    };
  }

  async due(limit: number, now: Date, ignoreBackoff = false): Promise<QueuedCopy[]> {
    if (!ignoreBackoff && !this.gate()) return [];
    let q = this.db.selectFrom('copy_queue').selectAll();
    if (!ignoreBackoff) q = q.where('next_try_at', '<=', now.toISOString());
    if (!ignoreBackoff && performance.now() - this.lastAddAt < this.quietMs) {
      q = q.where('queued_at', '<=', new Date(now.getTime() - this.maxDeferMs).toISOString());
    }
    const rows = await q.orderBy('id').limit(limit).execute();
    return rows.map((r) => ({
      id: Number(r.id), scope: r.vault_id, target: r.target, key: r.key, op: r.op as 'put' | 'delete', bytes: Number(r.bytes), queuedAt: new Date(r.queued_at), attempts: r.attempts,
    }));
  }

  async done(ids: number[]): Promise<void> {
    for (let i = 0; i < ids.length; i += BATCH) await this.db.deleteFrom('copy_queue').where('id', 'in', ids.slice(i, i + BATCH)).execute();
  }

  async later(id: number, at: Date, error: string): Promise<void> {
    await this.db.updateTable('copy_queue').set((eb) => ({ attempts: eb('attempts', '+', 1), next_try_at: at.toISOString(), last_error: error.slice(0, 1000) })).where('id', '=', id).execute();
  }

  /** What is still to copy to the given stores of a vault. */
  async stats(vaultId: string, targets: string[]): Promise<QueueStats> {
    if (!targets.length) return { pendingObjects: 0, pendingBytes: 0, oldestPendingSeconds: 0 };
    const r = await this.db.selectFrom('copy_queue')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('bytes').as('bytes'), eb.fn.min<string>('queued_at').as('oldest')])
      .where('vault_id', '=', vaultId).where('target', 'in', targets).where('op', '=', 'put').executeTakeFirstOrThrow();
    const oldest = r.oldest ? Math.max(0, Math.round((this.clock.now().getTime() - Date.parse(r.oldest)) / 1000)) : 0;
    return { pendingObjects: Number(r.n), pendingBytes: Number(r.bytes ?? 0), oldestPendingSeconds: oldest };
  }

  /** The highest task id queued for these stores of a vault (0 when none is): a point's watermark. */
  async watermark(vaultId: string, targets: string[]): Promise<number> {
    if (!targets.length) return 0;
    const r = await this.db.selectFrom('copy_queue').select((eb) => eb.fn.max<number>('id').as('id'))
      .where('vault_id', '=', vaultId).where('target', 'in', targets).executeTakeFirst();
    return Number(r?.id ?? 0);
  }

  /** The lowest task id still queued for these stores of a vault, or null: points below it are copied. */
  async lowestPending(vaultId: string, targets: string[]): Promise<number | null> {
    if (!targets.length) return null;
    const r = await this.db.selectFrom('copy_queue').select((eb) => eb.fn.min<number>('id').as('id'))
      .where('vault_id', '=', vaultId).where('target', 'in', targets).executeTakeFirst();
    return r?.id === null || r?.id === undefined ? null : Number(r.id);
  }

  /** Whether a copy of `key` to `target` is still queued (verify leaves those to the replicator). */
  async pendingKeys(vaultId: string, target: string): Promise<Set<string>> {
    const rows = await this.db.selectFrom('copy_queue').select('key').where('vault_id', '=', vaultId).where('target', '=', target).execute();
    return new Set(rows.map((r) => r.key));
  }

  async dropVaultTasks(vaultId: string, keepTargets: string[]): Promise<void> {
    let q = this.db.deleteFrom('copy_queue').where('vault_id', '=', vaultId);
    if (keepTargets.length) q = q.where('target', 'not in', keepTargets);
    await q.execute();
  }
}
