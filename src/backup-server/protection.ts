/**
 * Online protection: what a backup server does beside being a vault. On every round (tick) it
 * copies, for each item of each protection group whose online policy has a run due, the item's
 * latest short-term point into the vault (online-copy.ts), then reports its groups, items and
 * copies to the vault (`coffre vault servers`). Copies run one at a time, through one throttle
 * whose limit follows the hours of the day (src/policy/bandwidth.ts).
 *
 * The online policy belongs to the vault (its retention is applied there); the server reads its
 * schedule from the vault at each round. A missed online run is not made up several times: the
 * next round copies the latest point once, as the service we model does.
 */
import type { Selectable } from 'kysely';
import type { VaultRow } from '../catalog/schema.js';
import type { BackupServerStatus, GroupInfo, GroupItemInfo, OnlineCopyInfo, ThrottleInfo } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { bandwidthAt, UNLIMITED, validateBandwidthSchedule, type BandwidthSchedule } from '../policy/bandwidth.js';
import { validatePolicy, type Policy } from '../policy/policy.js';
import { nextRuns, runsBetween } from '../policy/schedule.js';
import { Throttle } from '../agent/throttle.js';
import type { VaultClient } from '../agent/client.js';
import type { DataContext } from '../vault/data.js';
import { finishJob } from '../vault/jobs.js';
import { writeContainerRecord } from '../vault/records.js';
import { members } from './groups.js';
import { copyInfo, copyPoint } from './online-copy.js';
import { upstreamClient, type UpstreamLink } from './upstream.js';

/** How long an online policy read from the vault is trusted before it is read again. */
const POLICY_TTL_MS = 60_000;
const THROTTLE_SETTING = 'throttle';

export interface ProtectionOptions {
  ctx: DataContext;
  /** The backup server's own vault (agents register with it). */
  vault: Selectable<VaultRow>;
  link: UpstreamLink;
  packBytes?: number;
  log?: (line: string) => void;
}

export class OnlineProtection {
  readonly throttle: Throttle;
  readonly upstream: VaultClient;
  private schedule: BandwidthSchedule = UNLIMITED;
  private readonly policies = new Map<string, { policy: Policy; at: number }>();
  /** Local container id → the vault's container of the same machine. */
  private readonly containers = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  private ticking: Promise<string[]> | null = null;
  private running = 0;
  private lastReportAt: string | null = null;
  private readonly stopping = new AbortController();
  private readonly log: (line: string) => void;

  private constructor(private readonly opts: ProtectionOptions) {
    this.log = opts.log ?? (() => undefined);
    this.throttle = new Throttle((now) => bandwidthAt(this.schedule, now).bytesPerSecond, { clock: opts.ctx.clock });
    this.upstream = upstreamClient(opts.link, { throttle: this.throttle });
  }

  static async open(opts: ProtectionOptions): Promise<OnlineProtection> {
    const p = new OnlineProtection(opts);
    const row = await opts.ctx.db.selectFrom('backup_server_settings').select('value').where('name', '=', THROTTLE_SETTING).executeTakeFirst();
    if (row) p.schedule = validateBandwidthSchedule(JSON.parse(row.value));
    return p;
  }

  private get ctx(): DataContext { return this.opts.ctx; }
  /** The backup server's catalog, store and clock. */
  get context(): DataContext { return this.opts.ctx; }
  get vault(): Selectable<VaultRow> { return this.opts.vault; }
  get link(): UpstreamLink { return this.opts.link; }

  /** Runs `fn` after the copies queued before it: one copy at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ---- bandwidth ----

  throttleInfo(): ThrottleInfo {
    const now = bandwidthAt(this.schedule, this.ctx.clock.now());
    return { schedule: { ...this.schedule, workDays: [...this.schedule.workDays] }, now: { bytesPerSecond: now.bytesPerSecond, workHours: now.workHours, until: now.until?.toISOString() ?? null } };
  }

  async setThrottle(input: unknown): Promise<ThrottleInfo> {
    const schedule = validateBandwidthSchedule(input);
    await this.ctx.db.insertInto('backup_server_settings').values({ name: THROTTLE_SETTING, value: JSON.stringify(schedule) })
      .onConflict((oc) => oc.column('name').doUpdateSet({ value: JSON.stringify(schedule) })).execute();
    this.schedule = schedule;
    return this.throttleInfo();
  }

  // ---- the vault's side of things ----

  /** An online policy of the vault, read again after a minute. */
  async onlinePolicy(name: string): Promise<Policy> {
    const cached = this.policies.get(name);
    if (cached && Date.now() - cached.at < POLICY_TTL_MS) return cached.policy;
    const policy = validatePolicy(await this.upstream.serverPolicy(name));
    this.policies.set(name, { policy, at: Date.now() });
    return policy;
  }

  /** The vault's container of a local machine, attached (with the machine's wrapped keys) on first use. */
  private async attach(localContainer: string): Promise<string> {
    const known = this.containers.get(localContainer);
    if (known) return known;
    const c = await this.ctx.db.selectFrom('containers').select(['name', 'wrapped_keys']).where('id', '=', localContainer).executeTakeFirstOrThrow();
    if (!c.wrapped_keys) throw new CoffreError('NotFound', `machine ${c.name} has no keys on this backup server yet (its registration did not finish); register it again`);
    const attached = await this.upstream.attachMachine(c.name, JSON.parse(c.wrapped_keys));
    this.containers.set(localContainer, attached.containerId);
    return attached.containerId;
  }

  /**
   * A rebuilt backup server (new data folder, same name) takes back the machines it copied, with
   * their wrapped keys: a machine that registers with it again recovers its keys with its
   * passphrase, and its new points deduplicate against what the vault already holds.
   */
  async syncMachines(): Promise<string[]> {
    const added: string[] = [];
    for (const m of await this.upstream.serverMachines()) {
      if (!m.wrappedKeys) continue;
      const local = await this.ctx.db.selectFrom('containers').select('id').where('vault_id', '=', this.vault.id).where('name', '=', m.machine).executeTakeFirst();
      if (local) continue;
      const id = newId();
      await this.ctx.db.insertInto('containers').values({ id, vault_id: this.vault.id, name: m.machine, wrapped_keys: JSON.stringify(m.wrappedKeys), created_at: this.ctx.clock.now().toISOString() }).execute();
      await writeContainerRecord(this.ctx, id);
      added.push(m.machine);
    }
    return added;
  }

  /**
   * Copies the server was running when it stopped (killed, crashed) end as failed here. The
   * vault's job of each stays open: the next copy of that point resumes it, sending only what
   * did not arrive (or it goes stale in the vault if no copy comes within minutes).
   */
  async recoverInterrupted(): Promise<number> {
    const rows = await this.ctx.db.selectFrom('jobs').select('id').where('operation', '=', 'OnlineCopy').where('status', '=', 'InProgress').execute();
    for (const r of rows) {
      await finishJob(this.ctx, r.id, { status: 'Failed', errors: [{ code: 'Interrupted', message: 'the backup server stopped during this copy (killed or crashed): nothing of it is a point in the vault, and the next copy of the point resumes it, sending only what did not arrive' }] });
    }
    return rows.length;
  }

  // ---- copies ----

  private async copy(pointId: string, group: string | null, policy: string): Promise<OnlineCopyInfo> {
    return this.exclusive(async () => {
      this.running++;
      try {
        const jobId = await copyPoint({ ctx: this.ctx, upstream: this.upstream, throttledMs: () => this.throttle.waitedMs, signal: this.stopping.signal, ...(this.opts.packBytes ? { packBytes: this.opts.packBytes } : {}) },
          pointId, { group, policy, attach: (c) => this.attach(c) });
        const info = await this.copyById(jobId);
        this.log(`online copy of ${info.item} (point ${info.point}): ${info.status}, ${info.chunksSent} of ${info.chunksTotal} chunks sent${info.error ? `: ${info.error.message}` : ''}`);
        return info;
      } finally {
        this.running--;
      }
    });
  }

  private async copyById(jobId: string): Promise<OnlineCopyInfo> {
    const row = await this.ctx.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow();
    return copyInfo(row, await this.names(row.item_id));
  }

  private async names(itemId: string | null): Promise<{ machine: string; item: string }> {
    const n = await this.ctx.db.selectFrom('items').innerJoin('containers', 'containers.id', 'items.container_id')
      .select(['items.name as item', 'containers.name as machine']).where('items.id', '=', itemId ?? '').executeTakeFirst();
    return n ?? { machine: '', item: '' };
  }

  /** "Back up now" to the vault: the item's latest short-term point, or the one named. */
  async copyNow(itemName: string, pointId?: string): Promise<OnlineCopyInfo> {
    const item = await this.ctx.db.selectFrom('items').select(['id', 'name']).where('vault_id', '=', this.vault.id).where('name', '=', itemName).executeTakeFirst();
    if (!item) throw new CoffreError('ItemNotFound', `no item ${itemName} on this backup server; list them with \`coffre item list\``);
    const member = (await members(this.ctx, this.vault.id)).find((m) => m.itemId === item.id);
    if (!member) throw new CoffreError('InvalidArgument', `${itemName} is in no protection group, so it has no online policy: add it with \`coffre group add GROUP --machine M --item ${itemName}\``);
    let q = this.ctx.db.selectFrom('points').select('id').where('item_id', '=', item.id);
    if (pointId) q = q.where('id', 'like', `${pointId}%`);
    const points = await q.orderBy('time', 'desc').limit(pointId ? 2 : 1).execute();
    if (points.length === 0) throw new CoffreError('PointNotFound', pointId ? `no point ${pointId} of ${itemName} on this backup server` : `${itemName} has no point on this backup server yet`);
    if (points.length > 1) throw new CoffreError('InvalidArgument', `${pointId} matches several points: give more digits`);
    return this.copy(points[0]!.id, member.group, member.onlinePolicy);
  }

  /** The copies made, newest first (of one item when named). */
  async copies(itemName?: string, limit = 200): Promise<OnlineCopyInfo[]> {
    let q = this.ctx.db.selectFrom('jobs').selectAll().where('operation', '=', 'OnlineCopy').where('vault_id', '=', this.vault.id);
    if (itemName) {
      const item = await this.ctx.db.selectFrom('items').select('id').where('vault_id', '=', this.vault.id).where('name', '=', itemName).executeTakeFirst();
      if (!item) throw new CoffreError('ItemNotFound', `no item ${itemName} on this backup server`);
      q = q.where('item_id', '=', item.id);
    }
    const rows = await q.orderBy('start_time', 'desc').orderBy('id').limit(limit).execute();
    return Promise.all(rows.map(async (r) => copyInfo(r, await this.names(r.item_id))));
  }

  /**
   * Copies what is due now: for each group item whose online policy scheduled a run since the
   * last one handled, its latest point (unless that very point is already in the vault).
   * Returns the copies' job ids. A failed copy leaves its run due: the next round tries again.
   */
  async runDue(): Promise<string[]> {
    const now = this.ctx.clock.now();
    const done: string[] = [];
    for (const m of await members(this.ctx, this.vault.id)) {
      if (this.stopping.signal.aborted) break;
      let policy: Policy;
      try {
        policy = await this.onlinePolicy(m.onlinePolicy);
      } catch (e) {
        this.log(`group ${m.group}: cannot read online policy ${m.onlinePolicy} from the vault: ${(e as Error).message}`);
        continue;
      }
      const runs = runsBetween(policy, new Date(m.lastOnlineRun ?? m.addedAt), now);
      if (runs.length === 0) continue;
      const run = runs[runs.length - 1]!.toISOString();
      const latest = await this.ctx.db.selectFrom('points').select('id').where('item_id', '=', m.itemId).where('time', '<=', now.toISOString())
        .orderBy('time', 'desc').limit(1).executeTakeFirst();
      const copied = latest && await this.ctx.db.selectFrom('jobs').select('id').where('operation', '=', 'OnlineCopy').where('point_id', '=', latest.id)
        .where('status', '=', 'Completed').executeTakeFirst();
      if (latest && !copied) {
        const info = await this.copy(latest.id, m.group, m.onlinePolicy);
        done.push(info.jobId);
        if (info.status !== 'Completed') continue;
      }
      await this.ctx.db.updateTable('group_members').set({ last_online_run: run }).where('item_id', '=', m.itemId).execute();
    }
    return done;
  }

  /** One round: due copies, then the report to the vault. Rounds do not overlap. */
  async tick(): Promise<string[]> {
    if (!this.ticking) {
      this.ticking = (async () => {
        const copies = await this.runDue();
        await this.report().catch((e: Error) => this.log(`cannot report to the vault: ${e.message}`));
        return copies;
      })().finally(() => { this.ticking = null; });
    }
    return this.ticking;
  }

  // ---- what is shown ----

  async groups(): Promise<GroupInfo[]> {
    const groups = await this.ctx.db.selectFrom('protection_groups').leftJoin('policies', 'policies.id', 'protection_groups.short_term_policy_id')
      .select(['protection_groups.id', 'protection_groups.name', 'protection_groups.online_policy', 'protection_groups.created_at', 'policies.name as shortTerm'])
      .where('protection_groups.vault_id', '=', this.vault.id).orderBy('protection_groups.name').execute();
    const all = await members(this.ctx, this.vault.id);
    const out: GroupInfo[] = [];
    for (const g of groups) {
      let policy: Policy | null = null;
      try {
        policy = await this.onlinePolicy(g.online_policy);
      } catch {
        // The vault is out of reach or lost the policy: the next run cannot be said, the rest can.
        policy = null;
      }
      const items: GroupItemInfo[] = [];
      for (const m of all.filter((x) => x.groupId === g.id)) {
        const pts = await this.ctx.db.selectFrom('points').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('time').as('last')]).where('item_id', '=', m.itemId).executeTakeFirstOrThrow();
        const last = await this.ctx.db.selectFrom('jobs').selectAll().where('operation', '=', 'OnlineCopy').where('item_id', '=', m.itemId).orderBy('start_time', 'desc').orderBy('id').limit(1).executeTakeFirst();
        const next = policy ? nextRuns(policy, new Date(m.lastOnlineRun ?? m.addedAt), 1)[0] : undefined;
        items.push({
          machine: m.machine, item: m.item, kind: m.kind, shortTermPoints: Number(pts.n), lastShortTermPoint: (pts.last as string | null) ?? null,
          lastOnlineRun: m.lastOnlineRun, nextOnlineRun: next?.toISOString() ?? null, lastCopy: last ? copyInfo(last, { machine: m.machine, item: m.item }) : null,
        });
      }
      out.push({ name: g.name, shortTermPolicy: g.shortTerm ?? '(deleted)', onlinePolicy: g.online_policy, createdAt: g.created_at, items });
    }
    return out;
  }

  async group(name: string): Promise<GroupInfo> {
    const g = (await this.groups()).find((x) => x.name === name);
    if (!g) throw new CoffreError('GroupNotFound', `no protection group ${name}; list them with \`coffre group list\``);
    return g;
  }

  async report(): Promise<void> {
    const r = await this.upstream.reportServer({ groups: await this.groups(), throttle: this.throttleInfo(), copiesInProgress: this.running });
    this.lastReportAt = r.reportedAt;
  }

  async status(): Promise<BackupServerStatus> {
    let error: string | null = null;
    try {
      await this.upstream.health();
    } catch (e) {
      error = (e as Error).message;
    }
    const groups = await this.ctx.db.selectFrom('protection_groups').select((eb) => eb.fn.countAll<number>().as('n')).where('vault_id', '=', this.vault.id).executeTakeFirstOrThrow();
    return {
      name: this.link.name, localVault: this.vault.name,
      upstream: { server: this.link.server, vault: this.link.vault, serverId: this.link.serverId, reachable: error === null, error },
      throttle: this.throttleInfo(), groups: Number(groups.n), copiesInProgress: this.running, lastReportAt: this.lastReportAt,
    };
  }

  /** Stops between two packs; the copy that was running resumes with its next run. */
  async close(): Promise<void> {
    this.stopping.abort();
    await this.ticking?.catch(() => undefined);
    await this.queue.catch(() => undefined);
  }
}
