/** Worker thread: compresses and seals chunks, the CPU-heavy part of a backup, off the main thread. */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeBlob } from '../core/blob.js';
import { keysFromJSON, type KeySet } from '../core/crypto.js';

const keys: KeySet = keysFromJSON(workerData as Parameters<typeof keysFromJSON>[0]);

parentPort!.on('message', (msg: { seq: number; ids: Uint8Array[]; data: Uint8Array[] }) => {
  const stored = msg.data.map((d, i) => encodeBlob(keys, msg.ids[i]!, d));
  parentPort!.postMessage({ seq: msg.seq, stored });
});
