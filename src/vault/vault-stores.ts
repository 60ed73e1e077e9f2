/**
 * Which store each vault writes to: the composition of zone stores its redundancy calls for
 * (src/store/topology.ts), under the vault's own folder `vaults/<id>/` of every zone, with
 * the copy queue kept in the catalog. Also runs the Replicator that makes the queued copies.
 *
 * The vault layer asks this class for a vault's store and never which redundancy it has.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import type { Redundancy } from '../core/api.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { readPack } from '../core/pack.js';
import type { RedundantStore, StoreCopy } from '../store/copies.js';
import { Replicator } from '../store/replicator.js';
import type { Topology } from '../store/topology.js';
import { CatalogCopyQueue } from './copy-queue.js';

export const vaultPrefix = (vaultId: string) => `vaults/${vaultId}`;

/** Packs are checked whole before their bytes are copied to another store. */
function intactForCopy(key: string, data: Buffer): boolean {
  if (!key.startsWith('packs/')) return true;
  try {
    readPack(data);
    return true;
  } catch (e) {
    if (e instanceof CoffreError) return false;
    throw e;
  }
}

export class VaultStores {
  readonly queue: CatalogCopyQueue;
  readonly replicator: Replicator;
  private readonly cache = new Map<string, { redundancy: Redundancy; store: RedundantStore }>();
  private readonly vaultOfContainer = new Map<string, string>();

  constructor(
    readonly topology: Topology,
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly wrap: (s: RedundantStore) => RedundantStore = (s) => s,
    shared?: { queue: CatalogCopyQueue; replicator: Replicator },
  ) {
    this.queue = shared?.queue ?? new CatalogCopyQueue(db, clock);
    this.replicator = shared?.replicator ?? new Replicator({
      queue: this.queue,
      copiesOf: async (vaultId) => (await this.byIdOrNull(vaultId))?.copies() ?? null,
      check: intactForCopy,
      // Records are rewritten in place: an old version may have the same size.
      mutable: (key) => key.endsWith('.json'),
      log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
      now: () => clock.now(),
    });
    if (!shared) this.queue.onAdd = () => this.replicator.nudge();
  }

  /** The same stores, each vault's composition wrapped by `fn` (tests inject failures so). */
  wrapped(fn: (s: RedundantStore) => RedundantStore): VaultStores {
    return new VaultStores(this.topology, this.db, this.clock, fn, { queue: this.queue, replicator: this.replicator });
  }

  forVault(v: { id: string; redundancy: string }): RedundantStore {
    const redundancy = v.redundancy as Redundancy;
    const hit = this.cache.get(v.id);
    if (hit && hit.redundancy === redundancy) return hit.store;
    const store = this.wrap(this.topology.compose(redundancy, vaultPrefix(v.id), this.queue.scoped(v.id)));
    this.cache.set(v.id, { redundancy, store });
    return store;
  }

  private async byIdOrNull(vaultId: string): Promise<RedundantStore | null> {
    const v = await this.db.selectFrom('vaults').select(['id', 'redundancy']).where('id', '=', vaultId).executeTakeFirst();
    return v ? this.forVault(v) : null;
  }

  async byId(vaultId: string): Promise<RedundantStore> {
    const s = await this.byIdOrNull(vaultId);
    if (!s) throw new CoffreError('VaultNotFound', `no vault ${vaultId}`);
    return s;
  }

  async forContainer(containerId: string): Promise<RedundantStore> {
    let vaultId = this.vaultOfContainer.get(containerId);
    if (!vaultId) {
      const row = await this.db.selectFrom('containers').select('vault_id').where('id', '=', containerId).executeTakeFirst();
      if (!row) throw new CoffreError('NotFound', `no machine ${containerId}`);
      vaultId = row.vault_id;
      this.vaultOfContainer.set(containerId, vaultId);
    }
    return this.byId(vaultId);
  }

  /** The copies in the paired region: what GRS replication fills and a cross-region restore reads. */
  secondaryTargets(redundancy: string): string[] {
    if (redundancy !== 'GRS' || this.topology.supports('GRS')) return [];
    return this.topology.copyNames('GRS', 'secondary');
  }

  copiesOf(v: { id: string; redundancy: string }, role?: 'primary' | 'secondary'): readonly StoreCopy[] {
    const all = this.forVault(v).copies();
    return role ? all.filter((c) => c.role === role) : all;
  }

  start(): void { this.replicator.start(); }

  async stop(): Promise<void> {
    await this.replicator.stop();
    this.topology.close();
  }
}
