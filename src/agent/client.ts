/**
 * The agent's and the CLI's only way to the vault: its HTTP API. Errors from the vault come
 * back as CoffreError with the same code; a server that cannot be reached is ServerUnreachable.
 * Over HTTPS the vault is trusted by its pinned certificate fingerprint when one is given
 * (tls-trust.ts), else by the system's certificate authorities.
 */
import type {
  AssignmentInfo, AuditEntry, BackupStart, BlobLocation, GuardRequestInfo, ItemStatus, JobCounters, JobInfo, JobProblem, MachineInfo,
  PointInfo, PrincipalInfo, RegisterResult, RoleDefinition, SecurityInfo, VaultDetails, VaultInfo, Consistency, PointKind,
} from '../core/api.js';
import http from 'node:http';
import https from 'node:https';
import { CoffreError, isErrorCode } from '../core/errors.js';
import { normalizeFingerprint } from '../core/fingerprint.js';
import { httpsAgentFor, tlsError } from './tls-trust.js';
import type { ClusterStatus } from '../core/cluster.js';
import type { AlertInfo, AlertSettings, ItemHealthStatus, NotificationInfo, Report, RestoreRequestInfo } from '../core/monitor-api.js';
import type {
  BackupServerStatus, DbBackupType, DbPointMeta, FileSource, GroupInfo, ItemInfo, OnlineCopyInfo, PolicyInfo, RestorableRange, RetentionChange,
  ServerInfo, ServerRegistration, ServerReport, ThrottleInfo,
} from '../core/api.js';

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const LARGE_BODY = 64 * 1024;
/** Request bodies from this size are written apart from their headers, in slices (see `streamed`). */
const STREAMED_BODY = 256 * 1024;
const STREAM_SLICE = 1024 * 1024;

/** Resolves on `event` from `req`, or once it is closed (the request's own outcome reports why). */
function settled(req: http.ClientRequest, event: 'drain' | 'socket'): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => { req.off(event, done); req.off('close', done); resolve(); };
    req.on(event, done);
    req.on('close', done);
  });
}

/** The parts cut into slices of at most `size` bytes (views, no copies). */
function* slicesOf(parts: readonly Uint8Array[], size: number): Iterable<Uint8Array> {
  for (const part of parts) for (let at = 0; at < part.length; at += size) yield part.subarray(at, at + size);
}

/** Writes a body slice by slice (as a throttle releases them, or as they come), each once the socket has taken the last, then ends it. */
async function writeSlices(req: http.ClientRequest, slices: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  for await (const slice of slices) {
    if (req.destroyed) return;
    if (!req.write(slice)) await settled(req, 'drain');
  }
  req.end();
}

export interface ClientOptions {
  /** SHA-256 fingerprint of the vault's certificate: only a server holding it is spoken to. */
  fingerprint?: string | null | undefined;
  /** An approved request of the vault's guard, sent with every call (header x-coffre-guard-request). */
  guardRequest?: string | undefined;
  /** Paces binary bodies (packs, point objects) under a bandwidth limit (throttle.ts). */
  throttle?: { pace(parts: readonly Uint8Array[]): AsyncIterable<Uint8Array> } | undefined;
}

const q = (v: string) => encodeURIComponent(v);
const withVault = (vault?: string) => (vault ? { vault } : {});

/** Where a restore reads from (the paired region only, for a cross-region restore) and the job it belongs to. */
export interface ReadOptions { from?: 'secondary'; job?: string }

function readQuery(read: ReadOptions, lead: '?' | '&'): string {
  const q = new URLSearchParams();
  if (read.from) q.set('from', read.from);
  if (read.job) q.set('job', read.job);
  const text = q.toString();
  return text ? lead + text : '';
}

/** Connection failures that mean the node is gone or going (killed, restarted, unplugged). */
const NODE_LOST = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'EAI_AGAIN']);
/** How many times each node is tried before a request fails. */
const FAILOVER_ROUNDS = 4;

/**
 * Requests that may reach the vault twice with the same outcome, so they can be sent again to
 * another node when the first may have acted before it died: reads, pack uploads (a pack id is
 * indexed once), point objects (the same bytes), progress reports, commits (a repeated
 * commit answers with its point) and a restore's final report (the same report answers the same).
 */
function repeatable(method: string, path: string): boolean {
  if (method === 'GET' || method === 'PUT' || method === 'HEAD') return true;
  return method === 'POST' && /^\/v1\/(points\/[^/]+\/commit|jobs\/[^/]+\/progress|jobs\/[^/]+\/finish|containers\/[^/]+\/blobs\/locate|agent\/due)$/.test(path);
}

/** The nodes of a vault service, as `--server URL1,URL2` or COFFRE_SERVER lists them; sticks to one until it fails. */
export class NodeList {
  private readonly urls: string[];
  private at = 0;
  constructor(servers: string) {
    this.urls = servers.split(',').map((s) => s.trim()).filter(Boolean);
    if (this.urls.length === 0) throw new CoffreError('InvalidArgument', 'no server URL given: set --server or COFFRE_SERVER (several nodes: URL1,URL2)');
  }
  get size(): number { return this.urls.length; }
  get current(): string { return this.urls[this.at]!; }
  get all(): readonly string[] { return this.urls; }
  /** The node `url` did not answer: move on to the next (unless another request already did). */
  failed(url: string): void {
    if (this.urls[this.at] === url) this.at = (this.at + 1) % this.urls.length;
  }
}

export class VaultClient {
  readonly fingerprint: string | undefined;
  /** The nodes `server` names (`URL1,URL2,…`): the same vault service, any of them answers. */
  private readonly nodes: NodeList;

  constructor(readonly server: string, private readonly token?: string, private readonly opts: ClientOptions = {}, nodes?: NodeList) {
    this.fingerprint = opts.fingerprint ? normalizeFingerprint(opts.fingerprint) : undefined;
    this.nodes = nodes ?? new NodeList(server);
  }

  /** The node spoken to now (the first of the list until one stops answering). */
  get currentServer(): string { return this.nodes.current; }

  /** The same client, sending an approved guard request with its calls. */
  withGuardRequest(id: string | undefined): VaultClient {
    return new VaultClient(this.server, this.token, { ...this.opts, guardRequest: id }, this.nodes);
  }

  /**
   * One request over node:http with keep-alive. Binary bodies go out as they are (no copy):
   * packs are 16 MiB and fetch() would clone them. Only a refused connection is retried,
   * since then the server cannot have acted on the request.
   */
  private async request(method: string, path: string, body?: unknown, binary?: Uint8Array | Uint8Array[], into?: Uint8Array): Promise<Buffer> {
    const headers: Record<string, string | number> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (this.opts.guardRequest) headers['x-coffre-guard-request'] = this.opts.guardRequest;
    let payload: Uint8Array[] | undefined;
    if (binary) {
      headers['content-type'] = 'application/octet-stream';
      payload = Array.isArray(binary) ? binary : [binary];
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = [Buffer.from(JSON.stringify(body))];
    }
    const bodyLength = payload?.reduce((n, p) => n + p.length, 0) ?? 0;
    if (payload) headers['content-length'] = bodyLength;
    let failovers = 0;
    for (let attempt = 0; ; attempt++) {
      const node = this.nodes.current;
      const url = new URL(node.replace(/\/+$/, '') + path);
      const lib = url.protocol === 'https:' ? https : http;
      const agent = url.protocol === 'https:' ? httpsAgentFor(this.fingerprint) : httpAgent;
      try {
        const { status, data } = await new Promise<{ status: number; data: Buffer }>((resolve, reject) => {
          const req = lib.request(url, { method, headers, agent }, (res) => {
            // A large body of known length is gathered into one buffer of its own (or the
            // caller's), which a restore can then move to a worker without another copy.
            const length = Number(res.headers['content-length']);
            const fits = into !== undefined && Number.isSafeInteger(length) && length <= into.byteLength && res.statusCode === 200;
            if (fits || (Number.isSafeInteger(length) && length >= LARGE_BODY)) {
              const whole = fits ? Buffer.from(into.buffer, into.byteOffset, length) : Buffer.allocUnsafeSlow(length);
              let at = 0;
              res.on('data', (d: Buffer) => {
                if (at + d.length <= length) d.copy(whole, at);
                at += d.length;
              });
              res.on('end', () => {
                if (at !== length) reject(new CoffreError('ServerUnreachable', `the vault sent ${at} bytes of a ${length}-byte answer`));
                else resolve({ status: res.statusCode ?? 0, data: whole });
              });
            } else {
              const parts: Buffer[] = [];
              res.on('data', (d: Buffer) => parts.push(d));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, data: parts.length === 1 ? parts[0]! : Buffer.concat(parts) }));
            }
            res.on('error', reject);
          });
          req.on('error', reject);
          if (binary && this.opts.throttle) void writeSlices(req, this.opts.throttle.pace(payload ?? [])).catch((e: Error) => { req.destroy(e); });
          else if (payload && bodyLength >= STREAMED_BODY) void this.streamed(req, payload).catch((e: Error) => { req.destroy(e); });
          else {
            for (const part of payload ?? []) req.write(part);
            req.end();
          }
        });
        if (status >= 200 && status < 300) return data;
        let code = 'Internal';
        let message = `the vault answered ${status} to ${method} ${path}`;
        let details: unknown;
        try {
          const j = JSON.parse(data.toString('utf8')) as { error?: { code?: string; message?: string; details?: unknown } };
          if (j.error?.code) code = j.error.code;
          if (j.error?.message) message = j.error.message;
          details = j.error?.details;
        } catch {
          // Not JSON (a proxy's error page): keep the generic message built above.
        }
        throw new CoffreError(isErrorCode(code) ? code : 'Internal', message, details);
      } catch (e) {
        const errno = (e as NodeJS.ErrnoException).code;
        // Several nodes: one that stopped answering is left for the next, for any request the
        // server cannot have acted on (a refused connection) and for the requests that may be
        // sent twice (reads, pack and point-object uploads, progress, commits: see REPEATABLE).
        const lost = e instanceof CoffreError ? e.code === 'ServerUnreachable' || (e.httpStatus >= 502 && e.httpStatus <= 504 && e.code !== 'StorageUnavailable' && e.code !== 'StorageError' && e.code !== 'WalNotArchived') : errno !== undefined && NODE_LOST.has(errno);
        if (lost && this.nodes.size > 1 && failovers < this.nodes.size * FAILOVER_ROUNDS && (errno === 'ECONNREFUSED' || repeatable(method, path))) {
          failovers++;
          this.nodes.failed(node);
          if (failovers % this.nodes.size === 0) await new Promise((r) => setTimeout(r, Math.min(2000, 250 * 2 ** (failovers / this.nodes.size))));
          continue;
        }
        if (e instanceof CoffreError) throw e;
        const untrusted = tlsError(e, node);
        if (untrusted) throw untrusted;
        if (errno === 'ECONNREFUSED' && attempt < 3) {
          await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
          continue;
        }
        // A protocol mix-up looks like a broken connection: say which way round it probably is.
        const hint = url.protocol === 'http:' && errno === 'ECONNRESET' ? ' (the vault may speak HTTPS: use an https:// address)'
          : url.protocol === 'https:' && errno === 'EPROTO' ? ' (the vault may speak plain HTTP: use an http:// address)' : '';
        throw new CoffreError('ServerUnreachable', `cannot reach the vault at ${this.server} (${errno ?? (e as Error).message})${hint}; is \`coffre server\` running? set --server or COFFRE_SERVER`);
      }
    }
  }

  /**
   * Writes a large body on its own, a slice at a time, each once the socket has taken the last.
   * Written with the headers, or in parts queued together, Node.js first copies the whole body
   * into one new buffer (and TLS encrypts it into another): 32 MiB of fresh memory per 16 MiB
   * pack, whose page faults cost more than the copies. A slice at a time reuses the same memory.
   */
  private async streamed(req: http.ClientRequest, parts: Uint8Array[]): Promise<void> {
    req.flushHeaders();
    // A request gets its socket on the next tick, even a kept-alive one: a slice written before
    // would go out with the headers, in one copy.
    if (!req.socket) await settled(req, 'socket');
    await writeSlices(req, slicesOf(parts, STREAM_SLICE));
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return JSON.parse((await this.request(method, path, body)).toString('utf8')) as T;
  }

  private bytes(method: string, path: string): Promise<Buffer> {
    return this.request(method, path);
  }

  health(): Promise<{ status: string }> { return this.json('GET', '/v1/health'); }
  clusterStatus(): Promise<ClusterStatus> { return this.json('GET', '/v1/cluster'); }
  createVault(body: { name: string; subscription?: string; redundancy?: string; crossRegionRestore?: boolean }): Promise<VaultInfo> { return this.json('POST', '/v1/vaults', body); }
  showVault(vault: string): Promise<VaultDetails> { return this.json('GET', `/v1/vaults/${encodeURIComponent(vault)}`); }
  setVault(vault: string, body: { redundancy?: string; crossRegionRestore?: boolean }): Promise<VaultDetails> { return this.json('PATCH', `/v1/vaults/${encodeURIComponent(vault)}`, body); }
  listVaults(): Promise<VaultInfo[]> { return this.json('GET', '/v1/vaults'); }
  createCredentials(vault: string, days?: number): Promise<{ vault: VaultInfo; secret: string; expiresAt: string; fingerprint: string | null }> {
    return this.json('POST', `/v1/vaults/${encodeURIComponent(vault)}/credentials`, days ? { days } : {});
  }
  register(secret: string, machine: string): Promise<RegisterResult> { return this.json('POST', '/v1/register', { secret, machine }); }
  getKeys(container: string): Promise<unknown> { return this.json('GET', `/v1/containers/${container}/keys`); }
  async putKeys(container: string, wrapped: unknown): Promise<void> { await this.json('PUT', `/v1/containers/${container}/keys`, wrapped); }
  blobIds(container: string): Promise<Buffer> { return this.bytes('GET', `/v1/containers/${container}/blobs`); }
  locate(container: string, ids: string[]): Promise<BlobLocation[]> { return this.json('POST', `/v1/containers/${container}/blobs/locate`, { ids }); }
  /** A pack may be given as its pieces (blobs and footer), sent back to back. */
  async putPack(container: string, packId: string, data: Uint8Array | Uint8Array[]): Promise<void> {
    await this.request('PUT', `/v1/containers/${container}/packs/${packId}`, undefined, data);
  }
  /**
   * With `into`, the range is read into that buffer when it fits (the answer is a view of it).
   * `read.from` restricts the read to the secondary region; `read.job` is the restore job that
   * the vault names any repair of a damaged copy on.
   */
  readPack(container: string, packId: string, offset: number, length: number, into?: Uint8Array, read: ReadOptions = {}): Promise<Buffer> {
    return this.request('GET', `/v1/containers/${container}/packs/${packId}?offset=${offset}&length=${length}${readQuery(read, '&')}`, undefined, undefined, into);
  }
  startBackup(item: string, kind: string, source: unknown): Promise<BackupStart> { return this.json('POST', '/v1/backups', { item, kind, source }); }
  async putPointObject(point: string, job: string, object: 'manifest' | 'refs', data: Uint8Array): Promise<void> {
    await this.request('PUT', `/v1/points/${point}/${object}?job=${job}`, undefined, data);
  }
  commit(point: string, body: { jobId: string; files: number; bytes: number; kind: PointKind; consistency: Consistency; retainUntil?: string | null; counters: JobCounters; warnings: JobProblem[]; details?: Record<string, unknown> }): Promise<PointInfo> {
    return this.json('POST', `/v1/points/${point}/commit`, body);
  }
  listPoints(filter: { vault?: string; item?: string }): Promise<PointInfo[]> {
    const q = new URLSearchParams(Object.entries(filter).filter((e): e is [string, string] => typeof e[1] === 'string'));
    return this.json('GET', `/v1/points?${q}`);
  }
  getPoint(point: string, read: ReadOptions = {}): Promise<PointInfo & { containerId: string }> { return this.json('GET', `/v1/points/${encodeURIComponent(point)}${readQuery(read, '?')}`); }
  manifest(point: string, read: ReadOptions = {}): Promise<Buffer> { return this.bytes('GET', `/v1/points/${encodeURIComponent(point)}/manifest${readQuery(read, '?')}`); }
  startRestore(point: string, details: Record<string, unknown>): Promise<JobInfo> { return this.json('POST', `/v1/points/${encodeURIComponent(point)}/restores`, details); }
  listJobs(vault?: string): Promise<JobInfo[]> { return this.json('GET', `/v1/jobs${vault ? `?vault=${encodeURIComponent(vault)}` : ''}`); }
  getJob(job: string): Promise<JobInfo> { return this.json('GET', `/v1/jobs/${job}`); }
  async progress(job: string, counters: Partial<JobCounters>): Promise<void> { await this.json('POST', `/v1/jobs/${job}/progress`, counters); }
  finishJob(job: string, body: { status: string; counters?: Partial<JobCounters>; errors?: JobProblem[]; warnings?: JobProblem[]; details?: Record<string, unknown> }): Promise<JobInfo> {
    return this.json('POST', `/v1/jobs/${job}/finish`, body);
  }
  listPolicies(vault?: string): Promise<PolicyInfo[]> { return this.json('GET', `/v1/policies${vault ? `?vault=${encodeURIComponent(vault)}` : ''}`); }
  showPolicy(name: string, vault?: string): Promise<PolicyInfo> {
    return this.json('GET', `/v1/policies/${encodeURIComponent(name)}${vault ? `?vault=${encodeURIComponent(vault)}` : ''}`);
  }
  createPolicy(name: string, policy: unknown, vault?: string): Promise<PolicyInfo> { return this.json('POST', '/v1/policies', { name, policy, ...(vault ? { vault } : {}) }); }
  setPolicy(name: string, policy: unknown, dryRun: boolean, vault?: string): Promise<{ policy: PolicyInfo; change: RetentionChange; prune: JobInfo | null; gc?: JobInfo }> {
    return this.json('PUT', `/v1/policies/${encodeURIComponent(name)}`, { policy, dryRun, ...(vault ? { vault } : {}) });
  }
  assignPolicy(name: string, item: string, vault?: string): Promise<{ policy: PolicyInfo; change: RetentionChange; prune: JobInfo; gc: JobInfo }> {
    return this.json('POST', `/v1/policies/${encodeURIComponent(name)}/assign`, { item, ...(vault ? { vault } : {}) });
  }
  gc(vault?: string): Promise<JobInfo> { return this.json('POST', '/v1/gc', vault ? { vault } : {}); }
  due(): Promise<{ item: string; scheduledAt: string; source: FileSource | { vm: string } | { db: string; backupType: DbBackupType }; onDemand?: { retainUntil: string } }[]> {
    return this.json('GET', '/v1/agent/due');
  }
  /** Claims a due run: an on-demand one (asked for by a principal), or a database run of one backup type. */
  async claim(item: string, scheduledAt: string, run: { onDemand?: boolean; backupType?: DbBackupType } = {}): Promise<void> {
    await this.json('POST', '/v1/agent/claim', { item, scheduledAt, ...(run.onDemand ? { onDemand: true } : {}), ...(run.backupType ? { backupType: run.backupType } : {}) });
  }
  prune(vault?: string): Promise<JobInfo> { return this.json('POST', '/v1/prune', vault ? { vault } : {}); }
  verify(filter: { vault?: string; item?: string; repair?: boolean }): Promise<JobInfo> { return this.json('POST', '/v1/verify', filter); }

  // ---- access and protection ----
  deleteVault(vault: string): Promise<{ deleted: string; subscription: string }> { return this.json('DELETE', `/v1/vaults/${q(vault)}`); }
  security(vault: string): Promise<SecurityInfo> { return this.json('GET', `/v1/vaults/${q(vault)}/security`); }
  setSecurity(vault: string, change: { softDelete?: string; softDeleteDays?: number; immutability?: string; guard?: string | null; guardWindowMinutes?: number }): Promise<SecurityInfo & { purged: string[] }> {
    return this.json('PUT', `/v1/vaults/${q(vault)}/security`, change);
  }
  listMachines(vault: string): Promise<MachineInfo[]> { return this.json('GET', `/v1/vaults/${q(vault)}/machines`); }
  unregisterMachine(vault: string, machine: string): Promise<{ machine: string; vault: string; packsDeleted: number }> {
    return this.json('DELETE', `/v1/vaults/${q(vault)}/machines/${q(machine)}`);
  }
  listItems(vault?: string): Promise<ItemStatus[]> { return this.json('GET', `/v1/items${vault ? `?vault=${q(vault)}` : ''}`); }
  stopItem(item: string, deleteData: boolean, vault?: string): Promise<ItemStatus & { purged: boolean; gc: JobInfo | null }> {
    return this.json('POST', `/v1/items/${q(item)}/stop`, { deleteData, ...withVault(vault) });
  }
  resumeItem(item: string, policy?: string, vault?: string): Promise<ItemStatus & { prune: JobInfo; gc: JobInfo }> {
    return this.json('POST', `/v1/items/${q(item)}/resume`, { ...(policy ? { policy } : {}), ...withVault(vault) });
  }
  undeleteItem(item: string, vault?: string): Promise<ItemStatus> { return this.json('POST', `/v1/items/${q(item)}/undelete`, withVault(vault)); }
  backupItem(item: string, retainUntil?: string, vault?: string): Promise<{ item: string; requestedAt: string; retainUntil: string }> {
    return this.json('POST', `/v1/items/${q(item)}/backup`, { ...(retainUntil ? { retainUntil } : {}), ...withVault(vault) });
  }
  cancelJob(job: string): Promise<JobInfo> { return this.json('POST', `/v1/jobs/${q(job)}/cancel`, {}); }
  deletePolicy(name: string, vault?: string): Promise<{ deleted: string; vault: string }> {
    return this.json('DELETE', `/v1/policies/${q(name)}${vault ? `?vault=${q(vault)}` : ''}`);
  }
  createPrincipal(name: string): Promise<PrincipalInfo & { key: string }> { return this.json('POST', '/v1/principals', { name }); }
  listPrincipals(): Promise<PrincipalInfo[]> { return this.json('GET', '/v1/principals'); }
  deletePrincipal(name: string): Promise<{ deleted: string }> { return this.json('DELETE', `/v1/principals/${q(name)}`); }
  assignRole(a: { principal: string; role: string; scope: string }): Promise<AssignmentInfo> { return this.json('POST', '/v1/role-assignments', a); }
  removeRole(a: { principal: string; role: string; scope: string }): Promise<{ removed: boolean }> { return this.json('POST', '/v1/role-assignments/remove', a); }
  listAssignments(filter: { principal?: string; scope?: string } = {}): Promise<AssignmentInfo[]> {
    const qs = new URLSearchParams(Object.entries(filter).filter((e): e is [string, string] => typeof e[1] === 'string'));
    return this.json('GET', `/v1/role-assignments?${qs}`);
  }
  roleDefinitions(): Promise<RoleDefinition[]> { return this.json('GET', '/v1/roles'); }
  guardRequests(): Promise<GuardRequestInfo[]> { return this.json('GET', '/v1/guard/requests'); }
  approveGuardRequest(id: string): Promise<GuardRequestInfo> { return this.json('POST', `/v1/guard/requests/${q(id)}/approve`, {}); }
  audit(filter: { since?: string } = {}): Promise<AuditEntry[]> { return this.json('GET', `/v1/audit${filter.since ? `?since=${q(filter.since)}` : ''}`); }

  // Databases (PostgreSQL): see src/vault/db-points.ts.
  dbProtect(name: string, policy?: string): Promise<{ item: ItemInfo; created: boolean; policyNote: string | null }> {
    return this.json('POST', '/v1/db/items', { name, ...(policy ? { policy } : {}) });
  }
  dbChain(item: string): Promise<PointInfo[]> { return this.json('GET', `/v1/db/items/${encodeURIComponent(item)}/chain`); }
  dbRanges(item: string): Promise<RestorableRange[]> { return this.json('GET', `/v1/db/items/${encodeURIComponent(item)}/ranges`); }
  dbStartBackup(item: string, type: DbBackupType): Promise<BackupStart> { return this.json('POST', `/v1/db/items/${encodeURIComponent(item)}/backups`, { type }); }
  dbCommit(point: string, body: { jobId: string; files: number; bytes: number; kind: PointKind; retainUntil?: string | null; counters: JobCounters; warnings: JobProblem[]; details?: Record<string, unknown>; database: DbPointMeta }): Promise<PointInfo> {
    return this.json('POST', `/v1/db/points/${point}/commit`, body);
  }

  // Backup center (src/vault/monitoring-http.ts); "back up now" is backupItem above.
  itemHealth(): Promise<ItemHealthStatus[]> { return this.json('GET', '/v1/monitor/items'); }
  alerts(all = false): Promise<AlertInfo[]> { return this.json('GET', `/v1/alerts${all ? '?all=true' : ''}`); }
  alert(id: string): Promise<{ alert: AlertInfo; notifications: NotificationInfo[] }> { return this.json('GET', `/v1/alerts/${q(id)}`); }
  alertSettings(): Promise<AlertSettings> { return this.json('GET', '/v1/alerts/settings'); }
  setAlertSettings(settings: AlertSettings): Promise<AlertSettings> { return this.json('PUT', '/v1/alerts/settings', settings); }
  report(query: { vault?: string; item?: string; from?: string; to?: string }): Promise<Report> { return this.json('GET', `/v1/reports${searchOf(query)}`); }
  async reportCsv(query: { vault?: string; item?: string; from?: string; to?: string }): Promise<string> { return (await this.request('GET', `/v1/reports${searchOf({ ...query, format: 'csv' })}`)).toString('utf8'); }
  async metrics(): Promise<string> { return (await this.request('GET', '/metrics')).toString('utf8'); }
  requestRestore(body: { point: string; target: string; paths?: string[]; overwrite?: string }): Promise<RestoreRequestInfo> { return this.json('POST', '/v1/restore-requests', body); }
  restoreRequests(item?: string): Promise<RestoreRequestInfo[]> { return this.json('GET', `/v1/restore-requests${searchOf({ item })}`); }
  pendingRestores(): Promise<RestoreRequestInfo[]> { return this.json('GET', '/v1/agent/restores'); }
  claimRestore(id: string): Promise<RestoreRequestInfo> { return this.json('POST', `/v1/agent/restores/${q(id)}/claim`, {}); }
  async linkRestoreJob(id: string, jobId: string): Promise<void> { await this.json('POST', `/v1/agent/restores/${q(id)}/job`, { jobId }); }
  finishRestoreRequest(id: string, body: { jobId?: string; error?: string }): Promise<RestoreRequestInfo> { return this.json('POST', `/v1/agent/restores/${q(id)}/finish`, body); }

  // ---- the backup server: its calls to its vault (with its server key), and the vault's listing ----
  registerServer(secret: string, name: string): Promise<ServerRegistration> { return this.json('POST', '/v1/servers/register', { secret, name }); }
  attachMachine(machine: string, wrappedKeys: unknown): Promise<{ containerId: string; machine: string; created: boolean }> {
    return this.json('POST', '/v1/servers/self/machines', { machine, wrappedKeys });
  }
  serverMachines(): Promise<{ machine: string; containerId: string; wrappedKeys: unknown }[]> { return this.json('GET', '/v1/servers/self/machines'); }
  serverPolicy(name: string): Promise<unknown> { return this.json('GET', `/v1/servers/self/policies/${q(name)}`); }
  startCopy(body: { container: string; item: string; kind: string; policy: string; point: string; time: string }): Promise<(BackupStart & { alreadyCopied: false; resumed: boolean }) | { alreadyCopied: true; point: PointInfo }> {
    return this.json('POST', '/v1/servers/self/copies', body);
  }
  commitCopy(point: string, body: { jobId: string; files: number; bytes: number; consistency: Consistency; counters: JobCounters; details?: Record<string, unknown> }): Promise<PointInfo> {
    return this.json('POST', `/v1/servers/self/copies/${q(point)}/commit`, body);
  }
  async reportServer(report: ServerReport): Promise<{ reportedAt: string }> { return this.json('PUT', '/v1/servers/self/report', report); }
  listServers(vault: string): Promise<ServerInfo[]> { return this.json('GET', `/v1/vaults/${q(vault)}/servers`); }
  unregisterServer(vault: string, name: string): Promise<{ server: string; vault: string; machines: number }> { return this.json('DELETE', `/v1/vaults/${q(vault)}/servers/${q(name)}`); }

  // ---- a backup server's own API (groups, online copies, bandwidth), with its admin token ----
  backupServerStatus(): Promise<BackupServerStatus> { return this.json('GET', '/v1/backup-server'); }
  createGroup(body: { name: string; shortTermPolicy: string; onlinePolicy: string }): Promise<GroupInfo> { return this.json('POST', '/v1/groups', body); }
  listGroups(): Promise<GroupInfo[]> { return this.json('GET', '/v1/groups'); }
  showGroup(name: string): Promise<GroupInfo> { return this.json('GET', `/v1/groups/${q(name)}`); }
  deleteGroup(name: string): Promise<{ deleted: string }> { return this.json('DELETE', `/v1/groups/${q(name)}`); }
  addToGroup(name: string, machine: string, item: string): Promise<GroupInfo> { return this.json('POST', `/v1/groups/${q(name)}/items`, { machine, item }); }
  removeFromGroup(name: string, item: string): Promise<GroupInfo> { return this.json('POST', `/v1/groups/${q(name)}/items/remove`, { item }); }
  copyOnline(item: string, point?: string): Promise<OnlineCopyInfo> { return this.json('POST', '/v1/online/copies', { item, ...(point ? { point } : {}) }); }
  listOnlineCopies(item?: string): Promise<OnlineCopyInfo[]> { return this.json('GET', `/v1/online/copies${item ? `?item=${q(item)}` : ''}`); }
  throttleSettings(): Promise<ThrottleInfo> { return this.json('GET', '/v1/online/throttle'); }
  setThrottle(schedule: unknown): Promise<ThrottleInfo> { return this.json('PUT', '/v1/online/throttle', schedule); }
}

function searchOf(query: Record<string, string | undefined>): string {
  const s = new URLSearchParams(Object.entries(query).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1] !== '')).toString();
  return s ? `?${s}` : '';
}
