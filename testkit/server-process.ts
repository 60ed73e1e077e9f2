/** A real `coffre server` in a child process, for tests of what its command line does (configuration, recovery). */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN } from './harness.js';

export interface ServerProcess {
  url: string; token: string; fingerprint: string | null; stderr(): string; stop(): Promise<void>;
  /** Kills the process with SIGKILL (a crash: nothing is released) and resolves once it is gone. */
  kill9(): Promise<void>;
}

export async function startServerProcess(args: string[], env: Record<string, string> = {}, opts: { cwd?: string; dataDir: string }): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, [BIN, 'server', '--listen', '127.0.0.1:0', ...args], { cwd: opts.cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`coffre server did not start in 60 s: ${err}`)); }, 60_000);
    const onData = () => {
      const m = /listening on (https?:\/\/\S+)/.exec(err);
      if (m && (m[1]!.startsWith('http:') || /fingerprint \(SHA-256\): \S+\n/.test(err))) { clearTimeout(timer); child.stderr!.off('data', onData); resolve(m[1]!); }
    };
    child.stderr!.on('data', onData);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`coffre server exited with ${code}: ${err}`)); });
  });
  return {
    url,
    fingerprint: /fingerprint \(SHA-256\): (\S+)\n/.exec(err)?.[1] ?? null,
    token: readFileSync(join(opts.dataDir, 'admin.token'), 'utf8').trim(),
    stderr: () => err,
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs `coffre server ...` expecting it to stop at once (a refused configuration), with its exit code and output. */
export function serverFails(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'server', '--listen', '127.0.0.1:0', ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stderr: err }); });
  });
}
