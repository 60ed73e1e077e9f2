/**
 * The running agent's side of the control socket (protocol.ts): listens on the agent folder's
 * socket, owner-only, and hands each request to `handle`, which runs beside the daemon's
 * scheduled work (both are asynchronous on the one event loop; an item's lock keeps two backups
 * of one VM apart, whoever asked for them).
 *
 * A socket file left by an agent that was killed is stale: nobody accepts on it, so it is
 * removed and listened on again. One that answers belongs to another agent process of the same
 * folder: that one keeps it, and this one serves no local requests (say so, keep running).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { CoffreError } from '../../core/errors.js';
import { CONTROL_VERSION, MAX_SOCKET_PATH, controlSocketPath, type ControlReply, type ControlRequest } from './protocol.js';

/** A request line longer than this is not one of ours. */
const MAX_REQUEST_BYTES = 64 * 1024;

export interface ControlServer {
  path: string;
  /** Stops accepting, waits for the requests in flight to end (a backup asked for is finished), removes the socket file. */
  close(): Promise<void>;
}

/** Runs one request; `reply` sends a line to the caller (progress, then one final reply). */
export type ControlHandler = (request: ControlRequest, reply: (r: ControlReply) => void) => Promise<void>;

/** Whether some process accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.on('connect', () => { s.destroy(); resolve(true); });
    // ECONNREFUSED: a socket file nobody listens on (its agent was killed).
    s.on('error', () => resolve(false));
  });
}

function parseRequest(line: string): ControlRequest | { declined: string } | null {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    // Not JSON: not a client of ours; the caller answers BadRequest.
    return null;
  }
  if (typeof r !== 'object' || r === null) return null;
  const o = r as Record<string, unknown>;
  if (o.v !== CONTROL_VERSION) return { declined: `this agent speaks version ${CONTROL_VERSION} of the control protocol, not ${String(o.v)}` };
  if (o.op !== 'vm-backup') return { declined: `this agent does not run ${String(o.op)}` };
  const optional = (k: string) => o[k] === undefined || typeof o[k] === 'string';
  if (typeof o.name !== 'string' || typeof o.json !== 'boolean' || typeof o.progress !== 'boolean' || !optional('retainUntil') || !optional('scriptTimeout')) return null;
  return {
    v: CONTROL_VERSION, op: 'vm-backup', name: o.name, json: o.json, progress: o.progress,
    ...(o.retainUntil !== undefined ? { retainUntil: o.retainUntil as string } : {}), ...(o.scriptTimeout !== undefined ? { scriptTimeout: o.scriptTimeout as string } : {}),
  };
}

/** Connections that have not sent their request yet: closing the server drops them, not the ones at work. */
type Idle = Set<Socket>;

function serve(socket: Socket, idle: Idle, handle: ControlHandler, log: (line: string) => void): void {
  let buffered = '';
  let started = false;
  idle.add(socket);
  socket.on('close', () => idle.delete(socket));
  const reply = (r: ControlReply) => {
    // The caller may be gone (Ctrl-C): the backup goes on and its job says how it ended.
    if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(r) + '\n');
  };
  socket.setEncoding('utf8');
  socket.on('error', () => {
    // A caller that went away; nothing to tell it.
  });
  socket.on('data', (chunk: string) => {
    if (started) return;
    buffered += chunk;
    const nl = buffered.indexOf('\n');
    if (nl < 0) {
      if (buffered.length > MAX_REQUEST_BYTES) { reply({ type: 'error', code: 'BadRequest', message: 'control request too long' }); socket.end(); }
      return;
    }
    started = true;
    idle.delete(socket);
    const request = parseRequest(buffered.slice(0, nl));
    if (request === null) { reply({ type: 'error', code: 'BadRequest', message: 'not a control request of this Coffre version' }); socket.end(); return; }
    if ('declined' in request) { reply({ type: 'declined', reason: request.declined }); socket.end(); return; }
    handle(request, reply).catch((e: unknown) => {
      // The handler reports its own failures; this is a bug in it, said rather than lost.
      log(`control request failed: ${(e as Error).message}`);
      reply({ type: 'error', code: null, message: (e as Error).message });
    }).finally(() => socket.end());
  });
}

/**
 * Listens on the agent folder's control socket. Null when this agent cannot serve local
 * requests (another agent process of the folder does, or the path is too long): said in `log`.
 */
export async function startControlServer(agentDir: string, handle: ControlHandler, log: (line: string) => void): Promise<ControlServer | null> {
  const path = controlSocketPath(agentDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    log(`no control socket: ${path} is longer than a Unix socket path may be; \`coffre vm backup\` runs in its own process`);
    return null;
  }
  const existing = await lstat(path).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return null; throw e; });
  if (existing) {
    if (!existing.isSocket()) throw new CoffreError('InvalidArgument', `${path} exists and is not the agent's control socket; move it away`);
    if (await answers(path)) {
      log(`another agent process serves ${path}; this one takes no local requests`);
      return null;
    }
    await unlink(path);
  }
  const idle: Idle = new Set();
  const server: Server = createServer((socket) => serve(socket, idle, handle, log));
  // Owner-only from its creation: bind() creates the file with the process umask, so no other
  // user can connect in the moment before the chmod below. listen() binds a path synchronously,
  // so the umask is back before anything else of this process creates a file.
  const listening = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => { server.off('error', reject); resolve(); });
  });
  const umask = process.umask(0o177);
  try {
    server.listen(path);
  } finally {
    process.umask(umask);
  }
  await listening;
  await chmod(path, 0o600);
  const ino = (await lstat(path)).ino;
  log(`local requests on ${path}`);
  return {
    path,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of idle) s.destroy();
      await closed;
      // Only our own file: another agent may have taken the name since (it found ours stale).
      const now = await lstat(path).catch(() => null);
      if (now && now.ino === ino) await unlink(path).catch(() => undefined);
    },
  };
}
