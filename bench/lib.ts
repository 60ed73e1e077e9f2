/**
 * Helpers shared by the benchmark (`npm run bench`) and the agent profile (bench/profile.ts):
 * child processes measured with GNU time, the test tree, a Coffre server in its own process,
 * a registered agent, sizes on disk, medians.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, totalmem, release, availableParallelism } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { healthy } from '../testkit/harness.js';

/** The project folder (this file runs from dist/bench/). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'coffre.js');
export const DATASET = join(ROOT, 'bench', 'dataset.py');
export const GNU_TIME = '/usr/bin/time';

/** Passphrases come from the environment, as in shared/bench/peers.sh (Coffre wants 16+ characters). */
export const PASSWORD = 'bench-password';
export const COFFRE_PASSPHRASE = 'bench-password-coffre';

export interface RunResult { code: number | null; stdout: string; stderr: string }

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command that must succeed (exit status 0, or one of `okCodes`). */
export async function must(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; okCodes?: number[] } = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0 && !(opts.okCodes ?? []).includes(r.code ?? -1)) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.code}\n${r.stderr.slice(-4000)}${r.stdout.slice(-2000)}`);
  }
  return r;
}

export interface Timed extends RunResult { wall: number; user: number; sys: number; rssKiB: number }

/** Runs a command under GNU time: wall seconds, user and system CPU seconds, peak RSS (KiB). */
export async function timed(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeFile: string; okCodes?: number[] }): Promise<Timed> {
  const r = await run(GNU_TIME, ['-f', '%e %U %S %M', '-o', opts.timeFile, cmd, ...args], opts);
  if (r.code !== 0 && !(opts.okCodes ?? []).includes(r.code ?? -1)) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.code}\n${r.stderr.slice(-4000)}${r.stdout.slice(-2000)}`);
  }
  // GNU time writes "Command exited with non-zero status N" first when the command fails.
  const lines = readFileSync(opts.timeFile, 'utf8').trim().split('\n');
  const [wall, user, sys, rss] = lines[lines.length - 1]!.trim().split(/\s+/).map(Number);
  return { ...r, wall: wall!, user: user!, sys: sys!, rssKiB: rss! };
}

/** Space used on disk, like `du -sk` (allocated blocks; holes cost nothing). */
export async function duBytes(path: string): Promise<number> {
  if (!existsSync(path)) return 0;
  const r = await must('du', ['-sk', path]);
  return Number(r.stdout.split(/\s/)[0]) * 1024;
}

export async function treeStats(path: string): Promise<{ files: number; bytes: number; disk: number }> {
  const r = await must('find', [path, '-type', 'f', '-printf', '%s\n']);
  const sizes = r.stdout.split('\n').filter(Boolean).map(Number);
  return { files: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0), disk: await duBytes(path) };
}

export async function generateTree(dir: string, scale: number, seed: number): Promise<void> {
  await must('python3', [DATASET, 'generate', dir, '--seed', String(seed), '--scale', String(scale)]);
}

/**
 * A tree of many small files, as mail spools, source trees and package caches are: folders of
 * 1000 files of 64-200 bytes each, contents from a seeded generator (the same tree every time).
 */
export async function generateSmallFiles(dir: string, count: number, seed: number): Promise<void> {
  const { mkdir: mk, writeFile: wf } = await import('node:fs/promises');
  let x = (seed * 2654435761) >>> 0 || 1;
  const next = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  const PER_FOLDER = 1000;
  for (let d = 0; d * PER_FOLDER < count; d++) {
    const folder = join(dir, `d${String(d).padStart(5, '0')}`);
    await mk(folder, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let f = 0; f < PER_FOLDER && d * PER_FOLDER + f < count; f++) {
      const data = Buffer.allocUnsafe(64 + (next() % 137));
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(next(), Math.min(i, data.length - 4));
      writes.push(wf(join(folder, `f${String(f).padStart(4, '0')}.dat`), data));
    }
    await Promise.all(writes);
  }
}

export async function mutateTree(dir: string, seed: number, round: number): Promise<void> {
  await must('python3', [DATASET, 'mutate', dir, '--seed', String(seed), '--round', String(round)]);
}

/** An environment without the caller's Coffre settings, so nothing leaks into a measured run. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('COFFRE_') || k.startsWith('RESTIC_') || k.startsWith('BORG_')) delete env[k];
  return { ...env, ...extra };
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** A `coffre server` in its own process on loopback, with its CPU time and peak memory. */
export class CoffreServer {
  private constructor(readonly child: ReturnType<typeof spawn>, readonly url: string, readonly token: string, readonly dataDir: string, readonly fingerprint: string | null) {}

  get pid(): number { return this.child.pid!; }

  static async start(dataDir: string, env: NodeJS.ProcessEnv): Promise<CoffreServer> {
    const child = spawn(process.execPath, [BIN, 'server', '--data', dataDir, '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const url = await new Promise<string>((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => reject(new Error(`coffre server did not start in 30 s: ${err}`)), 30_000);
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /listening on (https?:\/\/\S+)/.exec(err);
        if (m) { clearTimeout(timer); resolve(m[1]!); }
      });
      child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`coffre server exited with ${code}: ${err}`)); });
    });
    child.stderr!.resume();
    if (!(await healthy(url))) throw new Error('coffre server does not answer its health check');
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    // The server serves HTTPS with its self-signed certificate: the CLI pins its fingerprint.
    const { fingerprint } = JSON.parse(readFileSync(join(dataDir, 'server.json'), 'utf8')) as { fingerprint: string | null };
    return new CoffreServer(child, url, token, dataDir, fingerprint);
  }

  /** CPU seconds (user + system) used so far. */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  }

  /** Peak resident memory (KiB) since start or since the last resetPeak(). */
  peakKiB(): number {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  }

  /** Resets the peak to the current resident size (Linux: write 5 to clear_refs); false if not allowed. */
  resetPeak(): boolean {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  }

  /** A JSON answer of the server's API, trusting its own certificate (as the CLI pins it). */
  async getJson<T>(path: string): Promise<T> {
    const ca = this.url.startsWith('https:') ? readFileSync(join(this.dataDir, 'tls', 'cert.pem'), 'utf8') : undefined;
    const lib = ca ? https : http;
    return new Promise<T>((resolve, reject) => {
      lib.get(this.url + path, { headers: { authorization: `Bearer ${this.token}` }, ...(ca ? { ca } : {}) }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          if ((res.statusCode ?? 0) >= 400) reject(new Error(`GET ${path}: ${res.statusCode} ${text}`));
          else resolve(JSON.parse(text) as T);
        });
      }).on('error', reject);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Creates a vault and registers an agent (state in agentDir) through the real CLI. */
/**
 * A vault and a registered agent. LRS by default: one copy, as restic and borg keep, so that
 * stored sizes compare (bench/redundancy.ts measures the other redundancies).
 */
export async function registerCoffreAgent(server: CoffreServer, workDir: string, agentDir: string, env: NodeJS.ProcessEnv, vault = 'bench', redundancy = 'LRS'): Promise<void> {
  const admin = ['--server', server.url, '--token', server.token, ...(server.fingerprint ? ['--fingerprint', server.fingerprint] : [])];
  await must(process.execPath, [BIN, ...admin, 'vault', 'create', vault, '--redundancy', redundancy], { cwd: workDir, env });
  const cred = join(workDir, `${vault}.cred`);
  await must(process.execPath, [BIN, ...admin, 'vault', 'credentials', vault, '--out', cred], { cwd: workDir, env });
  await must(process.execPath, [BIN, '--agent-dir', agentDir, 'agent', 'register', '--credentials', cred, '--machine', vault], { cwd: workDir, env });
}

/** CPU seconds the whole machine has spent busy (all processes, all CPUs) since boot, from /proc/stat. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) / CLK_TCK;
  } catch {
    return NaN;
  }
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function version(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return (r.stdout || r.stderr).trim().split('\n')[0]!;
}

export function machine(): Record<string, string> {
  const cpu = (() => {
    try {
      const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
      if (m) return m[1]!.trim();
    } catch { /* not Linux */ }
    return cpus()[0]?.model ?? 'unknown';
  })();
  const git = version('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = git ? (spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout.trim() ? ' (with uncommitted changes)' : '') : '';
  return {
    cpu: `${cpu}, ${availableParallelism()} CPUs (nproc)`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: release(),
    node: process.version,
    restic: version('restic', ['version']) ?? 'not installed',
    borg: version('borg', ['--version']) ?? 'not installed',
    coffre: git ? `commit ${git}${dirty}` : 'unknown commit',
  };
}

export const mib = (bytes: number) => bytes / 2 ** 20;

/** Replaces (or appends) the part of a markdown file between two marker comments. */
export function replaceSection(text: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${body.trimEnd()}\n${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) return text.slice(0, i) + block + text.slice(j + end.length);
  return text.trim() ? `${text.trimEnd()}\n\n${block}\n` : `${block}\n`;
}
