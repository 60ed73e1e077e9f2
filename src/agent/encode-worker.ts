/** Worker thread: the CPU-heavy part of the data path (compress + seal, open + decompress + verify). */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeBlob, encodeBlob } from '../core/blob.js';
import { keysFromJSON, storedChecksum, type KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';

const keys: KeySet = keysFromJSON(workerData as Parameters<typeof keysFromJSON>[0]);

type Request =
  | { seq: number; op: 'encode'; ids: string[]; data: Uint8Array[] }
  | { seq: number; op: 'decode'; ids: string[]; data: Uint8Array; spans: [number, number][] };

/**
 * Results go back in one buffer that is moved, not copied. Posting many small Buffers would
 * clone, for each, the whole 8 KiB pool it may be a view of.
 */
function reply(seq: number, out: (Uint8Array | null)[]): void {
  const lengths = out.map((o) => (o ? o.length : -1));
  const all = new Uint8Array(lengths.reduce((n, l) => n + Math.max(0, l), 0));
  let at = 0;
  for (const o of out) if (o) { all.set(o, at); at += o.length; }
  parentPort!.postMessage({ seq, all, lengths }, [all.buffer]);
}

parentPort!.on('message', (msg: Request) => {
  const id = (i: number) => Buffer.from(msg.ids[i]!, 'hex');
  if (msg.op === 'encode') {
    // Each sealed blob is followed by its 16-byte stored checksum, for the pack footer.
    reply(msg.seq, msg.data.map((d, i) => {
      const stored = encodeBlob(keys, id(i), d);
      return Buffer.concat([stored, storedChecksum(stored)]);
    }));
    return;
  }
  // A blob that fails to open or to match its hash comes back as null: damage, not a crash.
  reply(msg.seq, msg.spans.map(([offset, length], i) => {
    try {
      return decodeBlob(keys, id(i), msg.data.subarray(offset, offset + length));
    } catch (e) {
      if (e instanceof CoffreError) return null;
      throw e;
    }
  }));
});
