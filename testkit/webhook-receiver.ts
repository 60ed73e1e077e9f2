/**
 * A webhook receiver for tests: a real HTTP server on loopback that records every POST and
 * answers with the statuses it is told (then 200), so tests can count what was accepted and
 * see retries arrive with the same delivery id.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received { status: number; body: Record<string, unknown>; headers: Record<string, string | string[] | undefined>; raw: string }

export class WebhookReceiver {
  readonly received: Received[] = [];
  /** Statuses to answer next, in order; 200 once they run out. */
  readonly answers: number[] = [];
  private waiters: { n: number; accepted: boolean; resolve: () => void }[] = [];
  private server: Server | null = null;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (d: Buffer) => { raw += d.toString(); });
      req.on('end', () => {
        const status = this.answers.shift() ?? 200;
        this.received.push({ status, body: JSON.parse(raw) as Record<string, unknown>, headers: req.headers, raw });
        res.writeHead(status).end();
        this.wake();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/hook`;
    return this;
  }

  get accepted(): Received[] { return this.received.filter((r) => r.status >= 200 && r.status < 300); }

  /** Resolves once `n` requests (or `n` accepted ones) have arrived in all. */
  until(n: number, accepted = true): Promise<void> {
    return new Promise((resolve) => { this.waiters.push({ n, accepted, resolve }); this.wake(); });
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      const have = w.accepted ? this.accepted.length : this.received.length;
      if (have >= w.n) { w.resolve(); return false; }
      return true;
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
