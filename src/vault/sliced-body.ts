/**
 * Large binary answers (pack ranges for restores, manifests) go out apart from their headers,
 * a slice at a time, each once the socket has taken the last. Given to Node.js whole, with its
 * headers, the body is first copied into one new buffer and then encrypted by TLS into
 * another: two fresh copies of every 4-16 MiB answer, whose page faults cost the server more
 * than the copies themselves (the agent's uploads do the same, src/agent/client.ts).
 */
import { Readable } from 'node:stream';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';

const SLICED_FROM = 256 * 1024;
const SLICE = 1024 * 1024;

class SlicedBody extends Readable {
  private at = 0;

  constructor(private readonly body: Buffer, private readonly res: ServerResponse) {
    // No read-ahead: a slice is asked for once the response has taken the one before.
    super({ highWaterMark: 0 });
  }

  override _read(): void {
    // The headers on their own first (writeHead has run by the time the body is read).
    if (this.at === 0 && !this.res.headersSent) this.res.flushHeaders();
    if (this.at >= this.body.length) {
      this.push(null);
      return;
    }
    const slice = this.body.subarray(this.at, this.at + SLICE);
    this.at += slice.length;
    this.push(slice);
  }
}

/** Registers the hook; add it after any onSend hook that reads the payload. */
export function installSlicedBodies(app: FastifyInstance): void {
  app.addHook('onSend', async (req, reply, payload) => {
    if (!Buffer.isBuffer(payload) || payload.length < SLICED_FROM || req.method === 'HEAD') return payload;
    reply.header('content-length', payload.length);
    return new SlicedBody(payload, reply.raw);
  });
}
