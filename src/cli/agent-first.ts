/**
 * The `coffre` command's first step: `coffre vm backup NAME` asks the running agent of its agent
 * folder (`coffre agent run`, through its control socket) to make the backup, and prints what it
 * answers; only when no agent answers does the command load the CLI and the engine and do the
 * work itself. That is the point of it (issue 16): an incremental of a 20 MiB change took ~1 s,
 * a third of it Node.js start-up and the CLI's modules. So this module loads as little as it
 * can: node:net and the light output helpers, no commander, no zod, no sodium.
 *
 * It recognises only the plain form of the command: `[--agent-dir DIR] vm backup NAME` with
 * `--json`, `--retain-until DATE`, `--script-timeout SECONDS`. Anything else (help, other
 * options, --server or --fingerprint, which name another vault than the agent's) goes to the
 * full parser, which prints the usual errors. The agent checks the option values with the CLI's
 * own parsers and declines what they reject, so usage errors read the same too.
 */
import { connect } from 'node:net';
import { agentDirFrom } from '../agent/agent-dir.js';
import { CONTROL_VERSION, MAX_SOCKET_PATH, controlSocketPath, type ControlReply, type VmBackupRequest } from '../agent/control/protocol.js';
import { exitCodeFor, type ErrorCode } from '../core/errors.js';
import { progressBar } from './output.js';
import { renderVmBackup } from './vm-backup-output.js';

interface Recognised { agentDir: string; request: VmBackupRequest }


/** `argv` (without node and the script) if it is the plain `vm backup` command, else null. */
export function recognise(argv: string[]): Recognised | null {
  // Another vault than the one the agent is registered with: the command's own process talks to it.
  if (process.env.COFFRE_SERVER || process.env.COFFRE_FINGERPRINT) return null;
  let i = 0;
  let agentDir: string | undefined;
  const valueOf = (flag: string): string | undefined => {
    const a = argv[i]!;
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
    const v = argv[++i];
    return v === undefined || v.startsWith('-') ? undefined : v;
  };
  for (; i < argv.length && argv[i] !== 'vm'; i++) {
    if (agentDir !== undefined || !(argv[i] === '--agent-dir' || argv[i]!.startsWith('--agent-dir='))) return null;
    agentDir = valueOf('--agent-dir');
    if (!agentDir) return null;
  }
  if (argv[i++] !== 'vm' || argv[i++] !== 'backup') return null;
  let name: string | undefined;
  const request: VmBackupRequest = { v: CONTROL_VERSION, op: 'vm-backup', name: '', json: false, progress: false };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json' && !request.json) request.json = true;
    else if ((a === '--retain-until' || a.startsWith('--retain-until=')) && request.retainUntil === undefined) {
      const v = valueOf('--retain-until');
      if (v === undefined) return null;
      request.retainUntil = v;
    } else if ((a === '--script-timeout' || a.startsWith('--script-timeout=')) && request.scriptTimeout === undefined) {
      const v = valueOf('--script-timeout');
      if (v === undefined) return null;
      request.scriptTimeout = v;
    } else if (!a.startsWith('-') && name === undefined) name = a;
    else return null;
  }
  if (name === undefined) return null;
  request.name = name;
  request.progress = !request.json && process.stderr.isTTY === true;
  return { agentDir: agentDirFrom(agentDir), request };
}

/**
 * Sends the request to the agent; resolves with its final reply, or null when no agent listens
 * (no socket, a stale one, or a path too long for a socket) or the agent declines.
 */
export function ask(agentDir: string, request: VmBackupRequest, onProgress: (r: Extract<ControlReply, { type: 'progress' }>) => void): Promise<Exclude<ControlReply, { type: 'progress' | 'declined' }> | null> {
  const path = controlSocketPath(agentDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return Promise.resolve(null);
  return new Promise((done, fail) => {
    const socket = connect(path);
    let connected = false;
    let settled = false;
    let buffered = '';
    const finish = (r: Exclude<ControlReply, { type: 'progress' | 'declined' }> | null) => {
      settled = true;
      socket.destroy();
      done(r);
    };
    socket.on('connect', () => {
      connected = true;
      socket.write(JSON.stringify(request) + '\n');
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while (!settled && (nl = buffered.indexOf('\n')) >= 0) {
        let reply: ControlReply;
        try {
          reply = JSON.parse(buffered.slice(0, nl)) as ControlReply;
        } catch {
          // Not our protocol (a different program on the socket's name): said, not guessed at.
          settled = true;
          socket.destroy();
          fail(new Error(`${path} answered something that is not a Coffre agent's reply`));
          return;
        }
        buffered = buffered.slice(nl + 1);
        if (reply.type === 'progress') onProgress(reply);
        else finish(reply.type === 'declined' ? null : reply);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      // Before the connection: no agent (ENOENT, a stale socket: ECONNREFUSED, another user's: EACCES).
      if (!connected) { finish(null); return; }
      settled = true;
      fail(e);
    });
    socket.on('close', () => {
      if (settled) return;
      if (!connected) { finish(null); return; }
      settled = true;
      fail(new Error('the agent closed the connection before the backup ended (was it stopped?); see `coffre jobs` for the job'));
    });
  });
}

/**
 * Runs `coffre vm backup` through the agent when the arguments are its plain form and an agent
 * answers; sets the exit status and returns true. False: the caller runs the full CLI.
 */
export async function viaAgent(argv: string[]): Promise<boolean> {
  const r = recognise(argv.slice(2));
  if (!r) return false;
  // Drawn once the agent sends progress: asking an agent that is not there loads no bar.
  const shown: { bar: ReturnType<typeof progressBar> | null } = { bar: null };
  let reply;
  try {
    reply = await ask(r.agentDir, r.request, (p) => { (shown.bar ??= progressBar(r.request.progress, `vm ${r.request.name}`)).update(p.counters); });
  } catch (e) {
    shown.bar?.stop();
    // As main.ts reports an error that is not a CoffreError.
    process.stderr.write(`coffre: unexpected error: ${(e as Error).message} (run with --debug for details)\n`);
    process.exitCode = 1;
    return true;
  }
  shown.bar?.stop();
  if (!reply) return false;
  if (reply.type === 'error') {
    if (reply.code === null) {
      process.stderr.write(`coffre: unexpected error: ${reply.message} (run with --debug for details)\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`coffre: ${reply.message} [${reply.code}]\n`);
      process.exitCode = exitCodeFor(reply.code as ErrorCode);
    }
    return true;
  }
  const out = renderVmBackup(reply.job, reply.backup, r.request.json);
  process.stdout.write(out.stdout);
  if (out.exitCode) process.exitCode = out.exitCode;
  return true;
}
