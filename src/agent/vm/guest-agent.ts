/**
 * The QEMU guest agent (qemu-ga) seen from the host: JSON commands over the unix socket of the
 * VM's virtio-serial channel. Coffre uses it to freeze the guest's file systems around the
 * snapshot (`guest-fsfreeze-freeze` / `guest-fsfreeze-thaw`), which makes a point
 * `filesystem`-consistent.
 *
 * The channel has no framing of its own and may hold a stale answer from an earlier client, so
 * every session starts with `guest-sync-delimited`: the agent answers with a 0xFF byte and the
 * random id sent, and everything before that byte is discarded.
 */
import { randomInt } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { CoffreError } from '../../core/errors.js';

const SYNC_MARK = 0xff;

export class GuestAgent {
  private buffered = Buffer.alloc(0);
  private synced = false;
  private waiter: { resolve(v: Record<string, unknown>): void; reject(e: unknown): void } | null = null;
  private failure: CoffreError | null = null;

  private constructor(private readonly socket: Socket, private readonly where: string) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) => this.fail(new CoffreError('HypervisorUnreachable', `guest agent ${where}: ${e.message}`)));
    socket.on('close', () => this.fail(new CoffreError('HypervisorUnreachable', `the guest agent connection ${where} closed`)));
  }

  static async connect(path: string, timeoutMs: number): Promise<GuestAgent> {
    const socket = netConnect({ path });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }).catch((e: Error) => { socket.destroy(); throw new CoffreError('HypervisorUnreachable', `cannot reach the guest agent socket ${path}: ${e.message}`); });
    const ga = new GuestAgent(socket, path);
    try {
      const id = randomInt(1, 2 ** 31);
      const r = await ga.command('guest-sync-delimited', { id }, timeoutMs);
      if (r !== id) throw new CoffreError('HypervisorError', `the guest agent at ${path} answered sync ${String(r)} to ${id}`);
      return ga;
    } catch (e) {
      ga.close();
      throw e;
    }
  }

  private onData(d: Buffer): void {
    let data = d;
    if (!this.synced) {
      // 0xFF never occurs in UTF-8 JSON: it marks where the answers of this session begin.
      const mark = data.indexOf(SYNC_MARK);
      if (mark < 0) return;
      this.synced = true;
      data = data.subarray(mark + 1);
    }
    this.buffered = Buffer.concat([this.buffered, data]);
    for (let nl = this.buffered.indexOf(0x0a); nl >= 0; nl = this.buffered.indexOf(0x0a)) {
      const line = this.buffered.toString('utf8', 0, nl).trim();
      this.buffered = this.buffered.subarray(nl + 1);
      if (!line) continue;
      const w = this.waiter;
      this.waiter = null;
      try {
        w?.resolve(JSON.parse(line) as Record<string, unknown>);
      } catch {
        w?.reject(new CoffreError('HypervisorError', `the guest agent at ${this.where} sent something that is not JSON: ${line.slice(0, 200)}`));
      }
    }
  }

  private fail(e: CoffreError): void {
    this.failure ??= e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(this.failure);
  }

  /** Runs one command; resolves with its `return`, rejects with the agent's error. */
  async command(name: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    if (this.failure) throw this.failure;
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => { this.waiter = null; reject(new CoffreError('HypervisorUnreachable', `the guest agent did not answer ${name} within ${timeoutMs / 1000} s (is qemu-ga running in the guest?)`)); }, timeoutMs);
      this.waiter = { resolve: (v) => { clearTimeout(t); resolve(v); }, reject: (e) => { clearTimeout(t); reject(e); } };
    });
    const msg = JSON.stringify({ execute: name, ...(args ? { arguments: args } : {}) });
    // The sync request is preceded by 0xFF too: the agent then drops any half-read input.
    this.socket.write(name === 'guest-sync-delimited' ? Buffer.concat([Buffer.from([SYNC_MARK]), Buffer.from(msg + '\n')]) : msg + '\n');
    const r = await answer;
    if ('error' in r) {
      const err = r.error as { class?: string; desc?: string };
      throw new CoffreError('HypervisorError', `the guest agent refused ${name}: ${err.desc ?? err.class ?? 'no reason given'}`);
    }
    return r.return;
  }

  close(): void {
    this.failure ??= new CoffreError('HypervisorUnreachable', `the guest agent connection ${this.where} is closed`);
    this.socket.destroy();
  }
}

/** Freezes (or thaws) every file system of the guest; resolves with how many it froze (thawed). */
export async function guestFreeze(socket: string, action: 'freeze' | 'thaw', timeoutMs: number): Promise<number> {
  const ga = await GuestAgent.connect(socket, timeoutMs);
  try {
    const n = await ga.command(action === 'freeze' ? 'guest-fsfreeze-freeze' : 'guest-fsfreeze-thaw', undefined, timeoutMs);
    return typeof n === 'number' ? n : 0;
  } finally {
    ga.close();
  }
}
