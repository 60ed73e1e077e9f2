/**
 * Starts a vault server: the catalog (SQLite) in the data folder, the stores of its regions
 * and zones (a configuration file, or the embedded default under the data folder), the
 * replicator that makes their queued copies, and the HTTP API, served over HTTPS (the data
 * folder's self-signed certificate unless one is given; plain HTTP only when asked for, on
 * loopback). A data folder of an earlier version is upgraded on the way (legacy-store.ts);
 * `recoverFrom` first rebuilds the catalog of an empty data folder from one region's stores
 * (recovery.ts). It writes `server.json` beside the admin token so that the CLI in the same
 * folder finds the address and the certificate's fingerprint.
 */
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Kysely } from 'kysely';
import { openCatalog, SQLITE_CATALOG_FILE, type OpenCatalog } from '../catalog/open.js';
import type { Database } from '../catalog/schema.js';
import { systemClock, type Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { newSecret } from '../core/ids.js';
import type { CopyRole } from '../store/copies.js';
import { Topology } from '../store/topology.js';
import { defaultTopology, loadConfig, singleStoreTopology, type ServerConfig } from './config.js';
import { LEGACY_STORE_DIR, migrateLegacyStore } from './legacy-store.js';
import { recoverCatalog, type RecoveryReport } from './recovery.js';
import { VaultStores } from './vault-stores.js';
import { existsSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { buildApi, type RouteDoor } from './http.js';
import { authenticateToken, ensureAdminPrincipal } from './access.js';
import { Monitoring, type MonitoringOptions } from './monitoring.js';
import { replicationNow } from './storage-copies.js';
import type { DataContext } from './data.js';
import { registerDashboard } from '../web/dashboard.js';
import { isLoopback, loadTlsIdentity } from './tls.js';
import { failStaleJobs } from './jobs.js';
import { runMaintenance } from './maintenance.js';
import { NodeLeases } from './leases.js';
import type { ClusterStatus } from './cluster-status.js';
import { SCHEMA_VERSION } from '../catalog/migrations.js';
import { newId } from '../core/ids.js';

import { ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN, SERVER_INFO_FILE } from '../core/defaults.js';

export { ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN };

export interface RunningServer {
  url: string;
  dataDir: string;
  adminToken: string;
  /** SHA-256 fingerprint of the served certificate; null over plain HTTP. */
  fingerprint: string | null;
  db: Kysely<Database>;
  /** The catalog's engine and where it is. */
  catalog: OpenCatalog;
  /** This node's leases on the work that runs once across the nodes (maintenance, replication). */
  leases: NodeLeases;
  /** What `GET /v1/cluster` answers. */
  clusterStatus(): Promise<ClusterStatus>;
  stores: VaultStores;
  /** What a recovery (`recoverFrom`) brought back. */
  recovery: RecoveryReport | null;
  /** What the vault runs on its own every minute: missed schedules, daily prune and GC, storage samples, alerts. */
  maintain(): Promise<void>;
  /** Makes every queued copy now (retry delays ignored); resolves with the number that failed. */
  drainReplication(): Promise<number>;
  close(): Promise<void>;
}

export const MAINTENANCE_INTERVAL_MS = 60_000;

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) throw new CoffreError('InvalidArgument', `--listen ${listen} is not HOST:PORT (e.g. 127.0.0.1:7070)`);
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/** The admin token is created once and kept in the data folder, readable by its owner only. */
async function adminToken(dataDir: string): Promise<string> {
  const file = join(dataDir, ADMIN_TOKEN_FILE);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = newSecret('cadm');
  await writeFile(file, token + '\n', { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
  return token;
}

export interface ServerOptions {
  dataDir?: string;
  listen?: string;
  clock?: Clock;
  /** A configuration file (YAML or JSON), or its parsed form. */
  configFile?: string;
  config?: ServerConfig;
  /** Rebuild the catalog of an empty data folder from this region's stores first. */
  recoverFrom?: CopyRole;
  log?: (line: string) => void;
  /** A certificate and key of the operator's (PEM files); without them a self-signed pair in the data folder. */
  tlsCert?: string;
  tlsKey?: string;
  /** Plain HTTP, refused unless the address is loopback. */
  insecureHttp?: boolean;
  /** How the Backup center's alerts send webhooks and report their failures (tests). */
  monitoring?: MonitoringOptions;
  /** Routes beside the vault's own (a backup server's groups and online copies), behind the same door. */
  extend?: (app: FastifyInstance, door: RouteDoor) => void;
  /** The catalog's database: a postgresql:// URL (scale-out); default: the configuration's, else SQLite in the data folder. */
  catalog?: string;
  /** One store URL: a one-zone LRS topology, instead of the configuration's regions or the default folders. */
  store?: string;
  /** How long a node's lease on once-across-nodes work lasts unrenewed (default 15 s; $COFFRE_LEASE_TTL_MS). */
  leaseTtlMs?: number;
}

export async function startServer(opts: ServerOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`));
  const config = opts.config ?? (opts.configFile ? loadConfig(opts.configFile) : undefined);
  const dataDir = resolve(opts.dataDir ?? config?.data ?? DEFAULT_DATA_DIR);
  const { host, port } = parseListen(opts.listen ?? config?.listen ?? DEFAULT_LISTEN);
  if (opts.insecureHttp && !isLoopback(host)) {
    throw new CoffreError('InvalidArgument', `--insecure-http is for loopback addresses only (127.0.0.1, ::1, localhost), not ${host}: anything else must travel over TLS`);
  }
  if (opts.insecureHttp && (opts.tlsCert || opts.tlsKey)) throw new CoffreError('InvalidArgument', '--insecure-http and --tls-cert/--tls-key exclude each other');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const catalogUrl = opts.catalog ?? config?.catalog;
  const catalogFile = join(dataDir, SQLITE_CATALOG_FILE);
  if (opts.store && config) throw new CoffreError('InvalidArgument', '--store and --config both name the stores: give the regions in the configuration, or --store alone');
  if (opts.recoverFrom && catalogUrl) throw new CoffreError('InvalidArgument', '--recover-from rebuilds an embedded (SQLite) catalog: leave out --catalog, then move to PostgreSQL');
  if (opts.recoverFrom && existsSync(catalogFile)) {
    throw new CoffreError('InvalidArgument', `--recover-from needs an empty data folder, and ${dataDir} already has a catalog: give another --data folder`);
  }
  const topology = await Topology.open(opts.store ? singleStoreTopology(opts.store) : config?.topology ?? defaultTopology(dataDir));
  try {
    // A store that cannot be reached now gets its copies when it is back (queued, or by verify --repair).
    for (const f of await topology.create()) log(`store ${f.store} is not available at start: ${f.error.message}`);
  } catch (e) {
    topology.close();
    throw e;
  }
  const tls = opts.insecureHttp ? null : await loadTlsIdentity(dataDir, { host, ...(opts.tlsCert ? { certFile: opts.tlsCert } : {}), ...(opts.tlsKey ? { keyFile: opts.tlsKey } : {}) });
  const token = await adminToken(dataDir);
  let catalog: OpenCatalog;
  try {
    catalog = await openCatalog(catalogUrl, dataDir);
  } catch (e) {
    topology.close();
    throw e;
  }
  const db = catalog.db;
  const clock = opts.clock ?? systemClock;
  await ensureAdminPrincipal(db, token, clock.now().toISOString());
  const stores = new VaultStores(topology, db, clock);
  const ctx: DataContext = { db, stores, clock };
  let recovery: RecoveryReport | null = null;
  try {
    if (opts.recoverFrom) recovery = await recoverCatalog(ctx, opts.recoverFrom, log);
    await migrateLegacyStore(ctx, join(dataDir, LEGACY_STORE_DIR), log);
  } catch (e) {
    await db.destroy();
    topology.close();
    throw e;
  }
  const fingerprint = tls?.fingerprint ?? null;
  const monitoring = new Monitoring({ db, clock, replication: () => replicationNow(ctx) }, opts.monitoring);
  const nodeId = newId(8);
  let leases: NodeLeases | null = null;
  const clusterStatus = async (): Promise<ClusterStatus> => {
    const s = leases ? await leases.status() : { nodes: [], leases: [] };
    return {
      node: { id: nodeId, url: url ?? '' },
      catalog: { engine: catalog.engine, schemaVersion: await catalog.schemaVersion(), codeSchemaVersion: SCHEMA_VERSION, location: catalog.location },
      ...s,
    };
  };
  let url: string | null = null;
  let app;
  try {
    app = buildApi({ db, stores, clock, credentialsPin: tls?.selfSigned ? tls.fingerprint : null, monitoring, jobEnded: monitoring.jobEnded, cluster: clusterStatus }, { ...(tls ? { https: { cert: tls.cert, key: tls.key } } : {}), ...(opts.extend ? { extend: opts.extend } : {}) });
    // The composition root: the web dashboard (src/web) sits above the vault and signs in through its one door from a key to a principal.
    registerDashboard(app, { authenticate: (key) => authenticateToken(db, key) });
  } catch (e) {
    await db.destroy();
    topology.close();
    const code = (e as NodeJS.ErrnoException).code;
    // A key that does not match its certificate, or files that are not PEM, fail here.
    if (code?.startsWith('ERR_OSSL') || /PEM|key values mismatch/i.test((e as Error).message)) {
      throw new CoffreError('InvalidArgument', `the TLS certificate and key cannot be used together (${(e as Error).message}); check --tls-cert and --tls-key`);
    }
    throw e;
  }
  try {
    await app.listen({ host, port });
  } catch (e) {
    await db.destroy();
    topology.close();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new CoffreError('InvalidArgument', `${host}:${port} is already in use: is another coffre server running? choose another with --listen`);
    throw e;
  }
  const address = app.server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  // Jobs that maintenance ends (stale ones, prune, GC) reach the alerts and metrics too.
  const tracked = { ...ctx, jobEnded: monitoring.jobEnded };
  url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
  const envTtl = Number(process.env.COFFRE_LEASE_TTL_MS);
  leases = new NodeLeases(db, nodeId, url, { ttlMs: opts.leaseTtlMs ?? (Number.isInteger(envTtl) && envTtl > 0 ? envTtl : undefined), log });
  const nodeLeases = leases;
  try {
    await nodeLeases.start();
  } catch (e) {
    await app.close();
    await db.destroy();
    topology.close();
    throw e;
  }
  // Several nodes share the copy queue: the one holding the replication lease works through it.
  stores.queue.gate = () => nodeLeases.holds('replication');
  stores.start();
  let running: Promise<void> | null = null;
  const maintain = async () => {
    // One maintenance pass at a time; a tick that finds one running waits for it.
    if (!running) running = (async () => { await failStaleJobs(tracked); await runMaintenance(tracked); await monitoring.tick(); })().finally(() => { running = null; });
    await running;
  };
  // Failures are retried on the next tick; the jobs of prune and GC record their own errors.
  // Only the node holding the maintenance lease runs it: once across the nodes, not once per node.
  const timer = setInterval(() => { if (nodeLeases.holds('maintenance')) void maintain().catch(() => undefined); }, MAINTENANCE_INTERVAL_MS);
  timer.unref();
  // Not secret (the fingerprint is public by nature); lets `coffre` beside it connect without flags.
  await writeFile(join(dataDir, SERVER_INFO_FILE), JSON.stringify({ url, fingerprint }, null, 2) + '\n', { mode: 0o644 });
  return {
    url, dataDir, adminToken: token, db, catalog, stores, recovery, maintain, fingerprint, leases: nodeLeases, clusterStatus,
    drainReplication: () => stores.replicator.drain(),
    async close() {
      clearInterval(timer);
      await running?.catch(() => undefined);
      await monitoring.close();
      await app.close();
      await stores.stop();
      // Given back at once, so that another node takes the work over without waiting for expiry.
      await nodeLeases.stop().catch((e: unknown) => log(`leases: not released (${(e as Error).message}); they expire in ${nodeLeases.ttlMs / 1000} s`));
      await db.destroy();
    },
  };
}
