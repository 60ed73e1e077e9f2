/**
 * Regions and zones, and the store each redundancy is composed of. A region is a set of zones,
 * a zone is one store (a disk, a container, a bucket); the primary region takes the writes,
 * the secondary (paired) region receives GRS copies.
 *
 *   LRS  one zone of the primary region (its first)
 *   ZRS  every zone of the primary region, acknowledged by a write quorum (zone-quorum.ts)
 *   GRS  LRS in the primary, copied asynchronously to LRS in the secondary (region-pair.ts)
 *
 * Each composition is built over folders of the zone stores (`prefix`), one per vault, and
 * every zone store is wrapped in RetryStore first.
 */
import type { Redundancy } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { SingleCopyStore, type CopyQueue, type CopyRole, type RedundantStore, type StoreCopy } from './copies.js';
import type { ObjectStore } from './object-store.js';
import { PrefixStore } from './prefix.js';
import { RegionPairStore } from './region-pair.js';
import { DEFAULT_RETRY, RetryStore, type RetryOptions } from './retry.js';
import { openStoreUrl, type Driver, type StoreSecrets } from './store-url.js';
import { ZoneQuorumStore } from './zone-quorum.js';

export interface ZoneSpec extends StoreSecrets { name: string; store: string }
export interface RegionSpec { name: string; zones: ZoneSpec[] }
export interface TopologySpec { primary: RegionSpec; secondary?: RegionSpec | undefined; retry?: Partial<RetryOptions> | undefined }

export interface Zone { name: string; store: ObjectStore }
export interface Region { name: string; role: CopyRole; zones: Zone[] }

/** ZRS needs a majority of at least two zones, so that losing one zone loses nothing. */
export const MIN_ZRS_ZONES = 3;

export class Topology {
  readonly primary: Region;
  readonly secondary: Region | null;

  private constructor(primary: Region, secondary: Region | null, private readonly drivers: Driver[]) {
    this.primary = primary;
    this.secondary = secondary;
  }

  static async open(spec: TopologySpec, env: NodeJS.ProcessEnv = process.env, wrap: (s: ObjectStore, name: string) => ObjectStore = (s) => s): Promise<Topology> {
    const retry = { ...DEFAULT_RETRY, ...spec.retry };
    const drivers: Driver[] = [];
    const region = async (r: RegionSpec, role: CopyRole, at: string): Promise<Region> => {
      const zones = [];
      for (const [i, z] of r.zones.entries()) {
        const name = `${r.name}/${z.name}`;
        const d = await openStoreUrl(z.store, name, z, env, `${at}.zones.${i}.store`);
        drivers.push(d);
        zones.push({ name, store: wrap(new RetryStore(d.store, retry), name) });
      }
      return { name: r.name, role, zones };
    };
    const primary = await region(spec.primary, 'primary', 'regions.primary');
    return new Topology(primary, spec.secondary ? await region(spec.secondary, 'secondary', 'regions.secondary') : null, drivers);
  }

  /**
   * Makes what the stores need before first use: folders, containers, buckets. A store that
   * cannot be reached now is reported, not fatal: it is written again when it is back.
   */
  async create(): Promise<{ store: string; error: Error }[]> {
    const failed: { store: string; error: Error }[] = [];
    for (const d of this.drivers) {
      try {
        await d.create();
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
        failed.push({ store: d.name, error: e });
      }
    }
    return failed;
  }

  close(): void {
    for (const d of this.drivers) d.close();
  }

  /** Which redundancies this topology can keep, and why not when it cannot. */
  supports(redundancy: Redundancy): string | null {
    if (redundancy === 'ZRS' && this.primary.zones.length < MIN_ZRS_ZONES) {
      return `ZRS needs a primary region of at least ${MIN_ZRS_ZONES} zones; region ${this.primary.name} has ${this.primary.zones.length}`;
    }
    if (redundancy === 'GRS' && !this.secondary) return 'GRS needs a secondary (paired) region in the server configuration';
    return null;
  }

  /** The copies a redundancy keeps, as their names: for reports and for the copy queue. */
  copyNames(redundancy: Redundancy, role?: CopyRole): string[] {
    return this.compose(redundancy, 'names', { add: async () => undefined }).copies().filter((c) => !role || c.role === role).map((c) => c.name);
  }

  compose(redundancy: Redundancy, prefix: string, queue: CopyQueue): RedundantStore {
    const why = this.supports(redundancy);
    if (why) throw new CoffreError('InvalidArgument', why);
    const copy = (z: Zone, role: CopyRole): StoreCopy => ({ name: z.name, role, store: new PrefixStore(z.store, prefix) });
    const lrs = (r: Region) => new SingleCopyStore(copy(r.zones[0]!, r.role));
    if (redundancy === 'LRS') return lrs(this.primary);
    if (redundancy === 'ZRS') return new ZoneQuorumStore(this.primary.zones.map((z) => copy(z, 'primary')), queue, this.primary.name);
    return new RegionPairStore(lrs(this.primary), lrs(this.secondary!), queue);
  }

  /** Every zone of a region, each under `prefix`: what recovery reads. */
  regionCopies(role: CopyRole, prefix: string): StoreCopy[] {
    const r = role === 'primary' ? this.primary : this.secondary;
    return (r?.zones ?? []).map((z) => ({ name: z.name, role, store: new PrefixStore(z.store, prefix) }));
  }
}
