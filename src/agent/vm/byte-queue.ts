/**
 * The bytes a socket delivers, handed to one reader at a time in exact amounts and copied into
 * the reader's own buffer as they arrive (a 1 MiB read reply goes straight from the socket's
 * chunks into the block buffer it was read for). Used by the NBD client.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private available = 0;
  private waiter: { dest: Buffer; at: number; end: number; resolve(): void; reject(e: unknown): void } | null = null;
  private failure: unknown = null;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.available += chunk.length;
    this.pump();
  }

  fail(e: unknown): void {
    this.failure ??= e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(this.failure);
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    while (w.at < w.end && this.available > 0) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length - this.head, w.end - w.at);
      c.copy(w.dest, w.at, this.head, this.head + n);
      w.at += n;
      this.head += n;
      this.available -= n;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    if (w.at === w.end) {
      this.waiter = null;
      w.resolve();
    }
  }

  /** Fills dest[at, at + length) with the next bytes. One reader at a time. */
  readInto(dest: Buffer, at: number, length: number): Promise<void> {
    if (length === 0) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { dest, at, end: at + length, resolve, reject };
      this.pump();
    });
  }

  async read(length: number): Promise<Buffer> {
    const b = Buffer.allocUnsafe(length);
    await this.readInto(b, 0, length);
    return b;
  }

  /** Discards the next bytes (a payload nobody asked for). */
  async skip(length: number): Promise<void> {
    const scratch = Buffer.allocUnsafe(Math.min(length, 64 * 1024));
    for (let left = length; left > 0; left -= scratch.length) await this.readInto(scratch, 0, Math.min(left, scratch.length));
  }
}
