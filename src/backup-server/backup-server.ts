/**
 * `coffre backup-server run`: a backup server (the DPM/MABS tier). It IS a vault service, started
 * with startServer on its own data folder, catalog and store, with one vault named after the
 * server: agents register with it exactly as with any vault (`coffre vault credentials` against
 * it, `coffre agent register`) and back up to its disk on short-term policies that may run
 * several times a day. Beside that it runs online protection (protection.ts): registered with an
 * upstream vault as a backup server, it copies chosen points there on each group's online
 * schedule, as the encrypted bytes they are.
 *
 * Start order: the upstream link first (a first start registers, which needs the vault), then
 * the service, its vault, then the engine; interrupted copies are closed and the machines a
 * rebuilt server copied before are taken back before the first round.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Selectable } from 'kysely';
import type { VaultRow } from '../catalog/schema.js';
import type { CredentialsFile } from '../core/api.js';
import { systemClock, type Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { SYSTEM } from '../vault/access.js';
import { startServer, type RunningServer } from '../vault/server.js';
import { createVault } from '../vault/vaults.js';
import { registerBackupServerRoutes } from './http-backup-server.js';
import { OnlineProtection } from './protection.js';
import { linkUpstream, loadLink, type UpstreamLink } from './upstream.js';

/** How often a running backup server looks for due online copies (and reports to its vault). */
export const ONLINE_INTERVAL_MS = 60_000;

export interface BackupServerOptions {
  dataDir: string;
  listen?: string;
  /** Its name in the vault, and the name of its own vault (default: the host name). */
  name: string;
  /** Needed at the first start only: registers the server with the vault they name. */
  credentials?: CredentialsFile;
  clock?: Clock;
  tlsCert?: string;
  tlsKey?: string;
  insecureHttp?: boolean;
  /** How often due copies are looked for; 0 for never by itself (tests call tick()). */
  intervalMs?: number;
  /** A bandwidth schedule to apply at start (src/policy/bandwidth.ts), kept in the catalog. */
  throttle?: unknown;
  /** Size of the packs copies send (default 4 MiB). */
  packBytes?: number;
  log?: (line: string) => void;
}

export interface RunningBackupServer {
  server: RunningServer;
  url: string;
  adminToken: string;
  fingerprint: string | null;
  name: string;
  /** The backup server's own vault. */
  vault: Selectable<VaultRow>;
  link: UpstreamLink;
  protection: OnlineProtection;
  /** One round of online protection now: due copies, then the report. */
  tick(): Promise<string[]>;
  close(): Promise<void>;
}

async function ownVault(server: RunningServer, name: string, clock: Clock): Promise<Selectable<VaultRow>> {
  const found = await server.db.selectFrom('vaults').selectAll().where('name', '=', name).executeTakeFirst();
  if (found) return found;
  await createVault({ db: server.db, stores: server.stores, clock }, SYSTEM, { name, redundancy: 'LRS' });
  return server.db.selectFrom('vaults').selectAll().where('name', '=', name).executeTakeFirstOrThrow();
}

export async function startBackupServer(opts: BackupServerOptions): Promise<RunningBackupServer> {
  const dataDir = resolve(opts.dataDir);
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? (() => undefined);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  let link = await loadLink(dataDir);
  if (link && link.name !== opts.name) {
    throw new CoffreError('InvalidArgument', `this data folder belongs to backup server ${link.name}, registered with vault ${link.vault}; start it with --name ${link.name}`);
  }
  if (!link) {
    if (!opts.credentials) throw new CoffreError('NotRegistered', `backup server ${opts.name} is not registered with a vault yet: start it once with --vault-credentials FILE (from \`coffre vault credentials VAULT\` on the vault)`);
    link = await linkUpstream(dataDir, opts.credentials, opts.name, clock.now());
    log(`registered as backup server ${link.name} with vault ${link.vault} at ${link.server}`);
  }
  let ready!: (p: OnlineProtection) => void;
  let failed!: (e: unknown) => void;
  const engine = new Promise<OnlineProtection>((resolve, reject) => { ready = resolve; failed = reject; });
  // A failed start rejects it; nothing waits on it then but routes, which answer the error.
  engine.catch(() => undefined);
  const server = await startServer({
    dataDir, clock, ...(opts.listen ? { listen: opts.listen } : {}), ...(opts.tlsCert ? { tlsCert: opts.tlsCert } : {}), ...(opts.tlsKey ? { tlsKey: opts.tlsKey } : {}),
    ...(opts.insecureHttp ? { insecureHttp: true } : {}),
    extend: (app, door) => registerBackupServerRoutes(app, door, engine),
  });
  let timer: NodeJS.Timeout | null = null;
  try {
    const vault = await ownVault(server, link.name, clock);
    // The server's own stores: short-term points are read where the vault wrote them, whatever its redundancy.
    const ctx = { db: server.db, stores: server.stores, clock };
    const protection = await OnlineProtection.open({ ctx, vault, link, log, ...(opts.packBytes ? { packBytes: opts.packBytes } : {}) });
    if (opts.throttle !== undefined) await protection.setThrottle(opts.throttle);
    const interrupted = await protection.recoverInterrupted();
    if (interrupted) log(`${interrupted} online cop${interrupted === 1 ? 'y was' : 'ies were'} interrupted by the last stop; the next copy resumes`);
    try {
      const taken = await protection.syncMachines();
      if (taken.length) log(`machines taken back from the vault: ${taken.join(', ')} (they register again with their passphrase)`);
    } catch (e) {
      // The vault may be out of reach: short-term protection works without it, and so does the rest.
      log(`cannot reach the vault to list this server's machines: ${(e as Error).message}`);
    }
    ready(protection);
    const interval = opts.intervalMs ?? ONLINE_INTERVAL_MS;
    if (interval > 0) {
      const round = () => { void protection.tick().catch((e: Error) => log(`online protection round failed: ${e.message}`)); };
      timer = setInterval(round, interval);
      timer.unref();
      setImmediate(round);
    }
    return {
      server, url: server.url, adminToken: server.adminToken, fingerprint: server.fingerprint, name: link.name, vault, link, protection,
      tick: () => protection.tick(),
      async close() {
        if (timer) clearInterval(timer);
        await protection.close();
        await server.close();
      },
    };
  } catch (e) {
    if (timer) clearInterval(timer);
    failed(e);
    await server.close();
    throw e;
  }
}
