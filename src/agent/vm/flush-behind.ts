/**
 * Flushes a file being written as it grows, in the background: a restore writes a whole image
 * and must have it on disk before it takes its name. Flushed only at the end, 800 MiB waited
 * half a second there; flushed every 64 MiB while the restore goes on, the last sync finds
 * little left. A failed background flush is reported by `drain` (and by the final sync, which
 * reports any write-back error of the file again).
 */
import type { FileHandle } from 'node:fs/promises';

const EVERY = 64 * 1024 * 1024;

export interface FlushBehind {
  /** Counts bytes written; starts a flush once EVERY bytes are written since the last (one at a time). */
  wrote(bytes: number): void;
  /** Waits for a flush in flight; rejects with its error. */
  drain(): Promise<void>;
}

export function flushBehind(fh: FileHandle, every = EVERY): FlushBehind {
  let written = 0;
  let flushedAt = 0;
  let flushing: Promise<void> | null = null;
  let failure: unknown = null;
  return {
    wrote(bytes) {
      written += bytes;
      if (flushing || failure || written - flushedAt < every) return;
      flushedAt = written;
      flushing = fh.datasync().catch((e: unknown) => { failure = e; }).finally(() => { flushing = null; });
    },
    async drain() {
      await flushing;
      if (failure) throw failure;
    },
  };
}
