/**
 * End-to-end test harness: a real server on loopback (HTTPS with its self-signed certificate,
 * as `coffre server` runs by default) with a real SQLite catalog and folder store in a
 * temporary data folder, a registered agent, and helpers to run the real CLI.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VaultClient } from '../src/agent/client.js';
import { registerAgent } from '../src/agent/register.js';
import { keysFromJSON, type KeySet } from '../src/core/crypto.js';
import type { CredentialsFile, Redundancy } from '../src/core/api.js';
import { startServer, type RunningServer } from '../src/vault/server.js';
import type { AgentState } from '../src/agent/state.js';

export const PASSPHRASE = 'correct horse battery staple';
export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'coffre.js');

export interface TestAgent { state: AgentState; keys: KeySet; client: VaultClient; agentDir: string }

export interface Harness {
  dir: string;
  server: RunningServer;
  admin: VaultClient;
  credentials: CredentialsFile;
  credentialsFile: string;
  agent(machine?: string): Promise<TestAgent>;
  close(): Promise<void>;
}

export async function tempDir(prefix = 'coffre-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A client of an in-process server that pins its certificate; the admin token unless another is given. */
export function clientFor(server: RunningServer, token: string = server.adminToken): VaultClient {
  return new VaultClient(server.url, token, { fingerprint: server.fingerprint });
}

/** Vault credentials of a vault on an in-process server, as `coffre vault credentials` writes them. */
export async function credentialsFor(server: RunningServer, vault: string): Promise<CredentialsFile> {
  const c = await clientFor(server).createCredentials(vault);
  return { kind: 'coffre-vault-credentials', version: 1, server: server.url, vault: c.vault.name, vaultId: c.vault.id, secret: c.secret, expiresAt: c.expiresAt, fingerprint: c.fingerprint };
}

/**
 * One raw HTTP(S) call to a server, for status codes and bodies the client would turn into
 * errors. Trusts the server's own certificate (read from its data folder).
 */
export async function rawRequest(server: { url: string; dataDir: string }, method: string, path: string, opts: { token?: string; body?: unknown; raw?: Uint8Array; headers?: Record<string, string> } = {}): Promise<{ status: number; body: unknown; bytes: Buffer; headers: http.IncomingHttpHeaders }> {
  const url = new URL(server.url + path);
  const ca = url.protocol === 'https:' ? await readFile(join(server.dataDir, 'tls', 'cert.pem'), 'utf8') : undefined;
  const payload = opts.raw ?? (opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body)));
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (payload) headers['content-type'] = opts.raw ? 'application/octet-stream' : 'application/json';
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers, ...(ca ? { ca } : {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const bytes = Buffer.concat(parts);
        const text = bytes.toString('utf8');
        let body: unknown = text;
        try { body = JSON.parse(text); } catch { /* not JSON: keep the text */ }
        resolve({ status: res.statusCode ?? 0, body, bytes, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Whether a server answers its health check now; over HTTPS without trusting it yet (liveness only). */
export function healthy(url: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const u = new URL(`${url}/v1/health`);
    const get = u.protocol === 'https:' ? https.get(u, { rejectUnauthorized: false }) : http.get(u);
    get.on('response', (res) => { res.resume(); resolve(res.statusCode === 200); });
    get.on('error', () => resolve(false));
  });
}

/** Waits until a server (a child process) answers its health check. */
export async function waitHealthy(url: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await healthy(url))) {
    if (Date.now() > until) throw new Error(`server at ${url} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function harness(opts: { vault?: string; redundancy?: Redundancy } = {}): Promise<Harness> {
  const dir = await tempDir();
  const server = await startServer({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', log: () => undefined });
  const admin = clientFor(server);
  const vault = await admin.createVault({ name: opts.vault ?? 'testvault', ...(opts.redundancy ? { redundancy: opts.redundancy } : {}) });
  const credentials = await credentialsFor(server, vault.name);
  const credentialsFile = join(dir, 'vault.cred');
  await writeFile(credentialsFile, JSON.stringify(credentials), { mode: 0o600 });
  let n = 0;
  return {
    dir, server, admin, credentials, credentialsFile,
    async agent(machine?: string) {
      const agentDir = join(dir, `agent-${n++}`);
      const state = await registerAgent({ agentDir, credentials, passphrase: PASSPHRASE, machine: machine ?? `machine-${n}` });
      return { state, keys: keysFromJSON(state.keys), client: clientFor(server, state.token), agentDir };
    },
    async close() {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function backupOptions(a: TestAgent, item: string, paths: string[]) {
  return { client: a.client, containerId: a.state.containerId, keys: a.keys, agentDir: a.agentDir, vaultId: a.state.vaultId, item, paths };
}

export interface CliResult { code: number | null; stdout: string; stderr: string; signal: NodeJS.Signals | null }

/** Runs the real `coffre` command in a child process. */
export function cli(args: string[], env: Record<string, string> = {}, opts: { cwd?: string; uid?: number; onSpawn?: (pid: number) => void } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    if (child.pid) opts.onSpawn?.(child.pid);
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, stdout, stderr, signal }));
  });
}

/** The first zone of the embedded default's primary region: where every vault keeps its first copy. */
export const primaryZone = (dataDir: string) => join(dataDir, 'regions', 'primary', 'zone-1');

/** A vault's folder in a zone of the embedded default (the first primary zone unless named). */
export const vaultDir = (dataDir: string, vaultId: string, zone = join('primary', 'zone-1')) => join(dataDir, 'regions', zone, 'vaults', vaultId);

/**
 * Files under a folder (e.g. "packs") of every vault's first copy in a data folder, path →
 * size; none before the folder exists.
 */
export async function storeFiles(dataDir: string, under = ''): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (dir: string): Promise<void> => {
    let names;
    try {
      names = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const d of names) {
      const p = join(dir, d.name);
      if (d.isDirectory()) await walk(p);
      else if (d.isFile()) out.set(p, (await stat(p)).size);
    }
  };
  let vaults: string[] = [];
  try {
    vaults = await readdir(join(primaryZone(dataDir), 'vaults'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const v of vaults) await walk(join(primaryZone(dataDir), 'vaults', v, under));
  return out;
}

/** Bytes held by the first copy of every vault of a data folder. */
export async function storeBytes(dataDir: string): Promise<number> {
  let total = 0;
  for (const size of (await storeFiles(dataDir)).values()) total += size;
  return total;
}
