/**
 * A QMP client: the JSON protocol of a QEMU monitor (a VM's QEMU or qemu-storage-daemon) over
 * a unix socket. One JSON object per line each way: QEMU greets, the client leaves
 * capabilities negotiation with `qmp_capabilities`, then sends commands (each with an `id`)
 * and receives their `return` or `error`, with asynchronous events in between.
 *
 * Commands may be sent while others are in flight; QEMU answers them in order, and the id
 * pairs each answer with its command anyway. Events are delivered to listeners and can be
 * awaited with `waitEvent`, registered before the command that causes them so none is missed.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { CoffreError } from '../../core/errors.js';

export interface QmpEvent { event: string; data: Record<string, unknown>; timestamp?: unknown }

/** A QMP error answer: its class (e.g. GenericError, DeviceNotFound) and QEMU's words. */
export class QmpCommandError extends CoffreError {
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super('HypervisorError', `QEMU refused ${command}: ${desc}`, { class: errorClass });
  }
}

const DEFAULT_TIMEOUT_MS = 60_000;

export class QmpClient {
  private readonly pending = new Map<number, { command: string; resolve(v: unknown): void; reject(e: unknown): void; timer: NodeJS.Timeout }>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private nextId = 1;
  private closed: CoffreError | null = null;
  private buffered = '';
  private greeting: ((g: unknown) => void) | null = null;
  private readonly closeWaiters = new Set<(e: CoffreError) => void>();

  private constructor(private readonly socket: Socket, private readonly where: string, private readonly timeoutMs: number) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (e) => this.fail(new CoffreError('HypervisorUnreachable', `QMP connection to ${where}: ${e.message}`)));
    socket.on('close', () => this.fail(new CoffreError('HypervisorUnreachable', `the QMP connection to ${where} closed`)));
  }

  /** Connects, reads the greeting and leaves capabilities negotiation. */
  static async connect(path: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const socket = netConnect({ path });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }).catch((e: NodeJS.ErrnoException) => {
      socket.destroy();
      throw new CoffreError('HypervisorUnreachable', `cannot reach QEMU's QMP socket ${path}: ${e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'nothing listens there (is the VM running? is it the path given to -qmp / --chardev?)' : e.message}`);
    });
    const client = new QmpClient(socket, path, timeoutMs);
    try {
      const hello = await new Promise<unknown>((resolve, reject) => {
        const t = setTimeout(() => reject(new CoffreError('HypervisorUnreachable', `${path} sent no QMP greeting within ${timeoutMs / 1000} s (another client may hold the monitor)`)), timeoutMs);
        client.greeting = (g) => { clearTimeout(t); resolve(g); };
        client.closeWaiters.add((e) => { clearTimeout(t); reject(e); });
      });
      if (!(hello as { QMP?: unknown }).QMP) throw new CoffreError('HypervisorError', `${path} is not a QMP monitor`);
      await client.execute('qmp_capabilities');
      return client;
    } catch (e) {
      client.close();
      throw e;
    }
  }

  private onData(d: string): void {
    this.buffered += d;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        this.fail(new CoffreError('HypervisorError', `${this.where} sent something that is not QMP: ${line.slice(0, 200)}`));
        this.socket.destroy();
        return;
      }
      this.dispatch(msg);
    }
  }

  private dispatch(msg: Record<string, unknown>): void {
    if ('QMP' in msg) {
      const g = this.greeting;
      this.greeting = null;
      g?.(msg);
      return;
    }
    if (typeof msg.event === 'string') {
      const e: QmpEvent = { event: msg.event, data: (msg.data ?? {}) as Record<string, unknown>, timestamp: msg.timestamp };
      for (const l of [...this.listeners]) l(e);
      return;
    }
    const id = typeof msg.id === 'number' ? msg.id : null;
    const p = id === null ? null : this.pending.get(id);
    if (!p) return;
    this.pending.delete(id!);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(new QmpCommandError(p.command, err.class ?? 'GenericError', err.desc ?? 'no reason given'));
    } else p.resolve(msg.return);
  }

  private fail(e: CoffreError): void {
    this.closed ??= e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.closed);
    }
    this.pending.clear();
    for (const w of [...this.closeWaiters]) w(this.closed);
    this.closeWaiters.clear();
  }

  /** Runs one command; resolves with its `return` value, rejects with a QmpCommandError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CoffreError('HypervisorUnreachable', `QEMU did not answer ${command} within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the first event matching `match`. Call it before the command that causes
   * the event, then await it after.
   */
  waitEvent(match: (e: QmpEvent) => boolean, timeoutMs = this.timeoutMs): Promise<QmpEvent> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const done = () => { clearTimeout(timer); off(); this.closeWaiters.delete(onClose); };
      const onClose = (e: CoffreError) => { done(); reject(e); };
      const timer = setTimeout(() => { done(); reject(new CoffreError('HypervisorError', `QEMU sent no expected event within ${timeoutMs / 1000} s`)); }, timeoutMs);
      const off = this.onEvent((e) => {
        if (!match(e)) return;
        done();
        resolve(e);
      });
      this.closeWaiters.add(onClose);
    });
  }

  close(): void {
    this.closed ??= new CoffreError('HypervisorUnreachable', `the QMP connection to ${this.where} is closed`);
    this.socket.destroy();
  }
}
