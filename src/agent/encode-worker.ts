/** Worker thread: the CPU-heavy part of the data path (compress + seal, open + decompress + verify). */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeBlob, encodeBlob } from '../core/blob.js';
import { keysFromJSON, type KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';

const keys: KeySet = keysFromJSON(workerData as Parameters<typeof keysFromJSON>[0]);

type Request = { seq: number; op: 'encode' | 'decode'; ids: Uint8Array[]; data: Uint8Array[] };

parentPort!.on('message', (msg: Request) => {
  if (msg.op === 'encode') {
    parentPort!.postMessage({ seq: msg.seq, out: msg.data.map((d, i) => encodeBlob(keys, msg.ids[i]!, d)) });
    return;
  }
  // A blob that fails to open or to match its hash comes back as null: damage, not a crash.
  const out = msg.data.map((d, i) => {
    try {
      return decodeBlob(keys, msg.ids[i]!, d);
    } catch (e) {
      if (e instanceof CoffreError) return null;
      throw e;
    }
  });
  parentPort!.postMessage({ seq: msg.seq, out });
});
