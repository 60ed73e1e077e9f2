/**
 * Leases in the catalog: the work that must run once across all the nodes sharing a catalog
 * (the maintenance pass — missed schedules, purges, daily prune and GC — and the replication
 * of queued copies) runs only on the node holding its lease.
 *
 * A node renews what it holds, and tries to take what is free or expired, every `renewMs`; a
 * lease lasts `ttlMs`. One statement does it (an upsert whose update applies only when the row
 * is this node's or has expired), so two nodes never both believe they hold a lease: the
 * engine serialises the writes to the row. A node that dies (kill -9) stops renewing, and
 * another takes its leases over within `ttlMs` + `renewMs`. A node checks `holds()` before each
 * pass; a pass already running when a lease is lost finishes, which the work tolerates (its
 * transactions lock what they change: src/catalog/engine.ts).
 *
 * Times are wall-clock (the system's), not the vault's clock, which tests move by days.
 * Each node also keeps a row in `nodes` with a heartbeat: `coffre server status` lists live ones.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../catalog/schema.js';
import { systemClock, type Clock } from '../core/clock.js';

export const LEASE_NAMES = ['maintenance', 'replication'] as const;
export type LeaseName = typeof LEASE_NAMES[number];

export const DEFAULT_LEASE_TTL_MS = 15_000;
const FORGET_NODE_MS = 86_400_000;

import type { ClusterLease as LeaseInfo, ClusterNode as NodeInfo } from '../core/cluster.js';

export class NodeLeases {
  private readonly held = new Set<LeaseName>();
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<void> | null = null;
  readonly ttlMs: number;
  readonly renewMs: number;

  constructor(private readonly db: Kysely<Database>, readonly nodeId: string, private readonly url: string,
    opts: { ttlMs?: number; clock?: Clock; log?: (line: string) => void } = {}) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.renewMs = Math.max(50, Math.floor(this.ttlMs / 3));
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? (() => undefined);
  }

  private readonly clock: Clock;
  private readonly log: (line: string) => void;

  /** Whether this node holds the lease now (as of its last renewal, which is younger than the lease). */
  holds(name: LeaseName): boolean { return this.held.has(name); }

  /** Registers the node, takes what leases are free, and keeps renewing in the background. */
  async start(): Promise<void> {
    const now = this.clock.now().toISOString();
    await this.db.insertInto('nodes').values({ id: this.nodeId, url: this.url, started_at: now, heartbeat: now })
      .onConflict((oc) => oc.column('id').doUpdateSet({ url: this.url, heartbeat: now })).execute();
    await this.renew(true);
    const tick = () => {
      this.timer = setTimeout(() => {
        this.round = this.renew().catch((e: unknown) => {
          // The catalog did not answer: hold nothing until it does, another node may take over.
          if (this.held.size) this.log(`leases: cannot renew (${(e as Error).message}); releasing ${[...this.held].join(', ')}`);
          this.held.clear();
        }).finally(() => { this.round = null; if (this.timer) tick(); });
      }, this.renewMs);
      this.timer.unref();
    };
    tick();
  }

  /** One renewal round: heartbeat, then each lease taken or renewed if free, expired or ours. */
  async renew(starting = false): Promise<void> {
    const now = this.clock.now();
    const iso = now.toISOString();
    const expires = new Date(now.getTime() + this.ttlMs).toISOString();
    await this.db.updateTable('nodes').set({ heartbeat: iso }).where('id', '=', this.nodeId).execute();
    // Nodes gone for a day are forgotten; until then `server status` shows them as not live.
    await this.db.deleteFrom('nodes').where('heartbeat', '<', new Date(now.getTime() - FORGET_NODE_MS).toISOString()).execute();
    for (const name of LEASE_NAMES) {
      await this.db.insertInto('leases').values({ name, holder: this.nodeId, expires_at: expires, acquired_at: iso })
        .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({
          holder: eb.ref('excluded.holder'),
          expires_at: eb.ref('excluded.expires_at'),
          acquired_at: eb.case().when('leases.holder', '=', this.nodeId).then(eb.ref('leases.acquired_at')).else(eb.ref('excluded.acquired_at')).end(),
        })).where((eb) => eb.or([eb('leases.holder', '=', this.nodeId), eb('leases.expires_at', '<', iso)]))).execute();
      const row = await this.db.selectFrom('leases').select(['holder', 'expires_at']).where('name', '=', name).executeTakeFirst();
      const mine = row?.holder === this.nodeId && row.expires_at > iso;
      // A lease taken at start is the normal case; one taken later is a takeover, worth a line.
      if (mine && !this.held.has(name) && !starting) this.log(`leases: this node (${this.nodeId}) took over ${name}`);
      if (mine) this.held.add(name);
      else this.held.delete(name);
    }
  }

  /** Stops renewing and gives the leases back at once, so another node need not wait for them to expire. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round?.catch(() => undefined);
    this.held.clear();
    await this.db.deleteFrom('leases').where('holder', '=', this.nodeId).execute();
    await this.db.deleteFrom('nodes').where('id', '=', this.nodeId).execute();
  }

  /** The nodes sharing the catalog (live: a heartbeat younger than a lease) and the holder of each lease. */
  async status(): Promise<{ nodes: NodeInfo[]; leases: LeaseInfo[] }> {
    const now = this.clock.now();
    const nodes = await this.db.selectFrom('nodes').selectAll().orderBy('started_at').orderBy('id').execute();
    const leases = await this.db.selectFrom('leases').selectAll().orderBy('name').execute();
    const urls = new Map(nodes.map((n) => [n.id, n.url]));
    return {
      nodes: nodes.map((n) => ({ id: n.id, url: n.url, startedAt: n.started_at, heartbeat: n.heartbeat, live: now.getTime() - Date.parse(n.heartbeat) < this.ttlMs, self: n.id === this.nodeId })),
      leases: leases.filter((l) => l.expires_at > now.toISOString()).map((l) => ({ name: l.name, holder: l.holder, holderUrl: urls.get(l.holder) ?? null, expiresAt: l.expires_at, acquiredAt: l.acquired_at })),
    };
  }
}
