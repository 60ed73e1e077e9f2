/** Worker thread of the VM restore (see block-decoder.ts): opens the blobs of a lane, each into its slot of the lane's plain area. */
import { parentPort, workerData } from 'node:worker_threads';
import { BlobDecoder } from '../../core/blob.js';
import { keysFromJSON } from '../../core/crypto.js';
import { CoffreError } from '../../core/errors.js';
import type { BlockDecoderInit, DecodeReply, DecodeRequest, DecodeResult } from './block-decoder.js';

const init = workerData as BlockDecoderInit;
const decoder = new BlobDecoder(keysFromJSON(init.keys));
const laneBytes = init.fetchBytes + init.plainBytes;

parentPort!.on('message', (m: DecodeRequest) => {
  const base = m.lane * laneBytes;
  const fetched = Buffer.from(init.lanes, base, init.fetchBytes);
  const plain = Buffer.from(init.lanes, base + init.fetchBytes, init.plainBytes);
  const results: DecodeResult[] = m.blobs.map((b, i) => {
    const plainAt = i * m.maxBlock;
    try {
      const out = decoder.decode(Buffer.from(b.id, 'hex'), fetched.subarray(b.at, b.at + b.length), plain.subarray(plainAt, plainAt + m.maxBlock));
      // A plaintext opened elsewhere (raw chunks open in place) is copied to its slot.
      if (out.buffer !== plain.buffer || out.byteOffset !== plain.byteOffset + plainAt) plain.set(out, plainAt);
      return { plainAt, length: out.length };
    } catch (e) {
      // Damage (a blob that does not open or check out) is the answer; anything else is a bug and ends the worker.
      if (!(e instanceof CoffreError)) throw e;
      return { error: e.message };
    }
  });
  parentPort!.postMessage({ seq: m.seq, results } satisfies DecodeReply);
});
