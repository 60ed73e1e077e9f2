/**
 * Flushes a file being written as it grows, in the background: a restore writes a whole image
 * and must have it on disk before it takes its name. Flushed only at the end, 800 MiB waited
 * half a second there; flushed every 64 MiB while the restore goes on, the last sync finds
 * little left.
 *
 * A failed background flush must not be lost: Linux reports a write-back error once per open
 * file, so the final sync on the same descriptor would then succeed. It is kept, thrown by the
 * next `wrote` (the restore stops at once instead of writing the rest of the disk) and by
 * `drain`, which callers await before their final sync.
 */
import type { FileHandle } from 'node:fs/promises';

const EVERY = 64 * 1024 * 1024;

export interface FlushBehind {
  /** Counts bytes written; starts a flush once EVERY bytes are written since the last (one at a time). Throws a background flush's failure. */
  wrote(bytes: number): void;
  /** Waits for a flush in flight; rejects with its error. */
  drain(): Promise<void>;
  /** `fh.write` of `length` bytes of `data` from `from` at `position`, counted. */
  write(data: Uint8Array, from: number, length: number, position: number): Promise<void>;
  /** The file durable: the flush in flight settled (its failure thrown), then `fh.sync`. */
  sync(): Promise<void>;
}

export function flushBehind(fh: FileHandle, every = EVERY): FlushBehind {
  let written = 0;
  let flushedAt = 0;
  let flushing: Promise<void> | null = null;
  let failure: unknown = null;
  const self: FlushBehind = {
    wrote(bytes) {
      if (failure) throw failure;
      written += bytes;
      if (flushing || written - flushedAt < every) return;
      flushedAt = written;
      flushing = fh.datasync().catch((e: unknown) => { failure = e; }).finally(() => { flushing = null; });
    },
    async drain() {
      await flushing;
      if (failure) throw failure;
    },
    async write(data, from, length, position) {
      await fh.write(data, from, length, position);
      self.wrote(length);
    },
    async sync() {
      await self.drain();
      await fh.sync();
    },
  };
  return self;
}
