/**
 * Worker thread of the VM backup (see block-encoder.ts): encodes the blocks the main thread has
 * read into the shared block pool (block-packer.ts does the work), answers with each block's id,
 * and sends full packs to the main thread, which uploads them and hands the pack buffer back.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { keysFromJSON } from '../../core/crypto.js';
import { SharedIdSet } from '../../core/known-ids.js';
import { PackArena } from '../../core/pack.js';
import type { BlockEncoderInit, BlockReply, BlockRequest } from './block-encoder.js';
import { BlockPacker } from './block-packer.js';

const init = workerData as BlockEncoderInit;
const signal = new Int32Array(init.signal);
const recycled: MessagePort = init.recycle;
let arenas = 0;

function post(message: BlockReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(message, transfer);
}

/** A fresh pack buffer, or, once this worker has its share, one the main thread has sent back. */
function takeArena(): PackArena {
  if (arenas < init.maxArenas) {
    arenas++;
    return new PackArena(new Uint8Array(init.arenaBytes));
  }
  for (;;) {
    const seen = Atomics.load(signal, init.index);
    const m = receiveMessageOnPort(recycled);
    if (m) return new PackArena(new Uint8Array(m.message as ArrayBuffer));
    Atomics.wait(signal, init.index, seen);
  }
}

const packer = new BlockPacker(keysFromJSON(init.keys), new SharedIdSet(init.ids), takeArena, (arena, size, shares) => {
  const data = arena.buffer.buffer as ArrayBuffer;
  post({ op: 'pack', data, size, shares }, [data]);
});

parentPort!.on('message', (msg: BlockRequest) => {
  if (msg.op === 'block') {
    const r = packer.encode(msg.disk, Buffer.from(init.pool, msg.slot * init.blockSize, msg.length));
    // A copy of the id: a view into a larger buffer would clone all of it.
    post({ op: 'done', seq: msg.seq, id: r.id ? new Uint8Array(r.id) : null, isNew: r.isNew });
  } else {
    packer.flush();
    post({ op: 'done', seq: msg.seq, id: null, isNew: false });
  }
});
