/**
 * Worker thread of the VM backup (see block-encoder.ts): for each disk block it is handed,
 * detects a block of zeros, names the block by its keyed hash, and encodes a block no thread
 * has stored yet straight into a pack. The block's buffer goes back with the answer; full
 * packs go to the main thread, which uploads them and hands the pack buffer back.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { BlobEncoder, maxStoredLength } from '../../core/blob.js';
import { chunkId, keysFromJSON } from '../../core/crypto.js';
import { SharedIdSet } from '../../core/known-ids.js';
import { PackArena } from '../../core/pack.js';
import type { BlockEncoderInit, BlockReply, BlockRequest } from './block-encoder.js';

const init = workerData as BlockEncoderInit;
const keys = keysFromJSON(init.keys);
const encoder = new BlobEncoder(keys);
const known = new SharedIdSet(init.ids);
const signal = new Int32Array(init.signal);
const recycled: MessagePort = init.recycle;
let zeros = Buffer.alloc(0);

let arena: PackArena | null = null;
let arenas = 0;
/** Stored bytes and blob count per disk in the pack being filled. */
let shares = new Map<number, { bytes: number; blobs: number }>();

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

function sendPack(): void {
  if (!arena || arena.count === 0) return;
  const blobs = arena.count;
  const stored = arena.byteLength;
  const size = arena.finish();
  const data = arena.buffer.buffer as ArrayBuffer;
  arena = null;
  // The footer is shared out per blob; what does not divide evenly goes to the first disk.
  const perBlob = Math.floor((size - stored) / blobs);
  const out: [number, number][] = [...shares].map(([disk, s]) => [disk, s.bytes + s.blobs * perBlob]);
  out[0]![1] += size - stored - perBlob * blobs;
  shares = new Map();
  post({ op: 'pack', data, size, shares: out }, [data]);
}

function encodeBlock(disk: number, data: ArrayBuffer, length: number): { id: Uint8Array | null; isNew: boolean } {
  const block = Buffer.from(data, 0, length);
  if (zeros.length < length) zeros = Buffer.alloc(length);
  if (block.equals(zeros.subarray(0, length))) return { id: null, isNew: false };
  const id = chunkId(keys.idKey, block);
  if (known.claim(id) === 'known') return { id, isNew: false };
  const room = maxStoredLength(length);
  if (arena && !arena.fits(room)) sendPack();
  arena ??= takeArena();
  const n = encoder.encodeInto(id, block, arena.free());
  arena.commit(id, n);
  const share = shares.get(disk) ?? { bytes: 0, blobs: 0 };
  share.bytes += n;
  share.blobs++;
  shares.set(disk, share);
  return { id, isNew: true };
}

parentPort!.on('message', (msg: BlockRequest) => {
  if (msg.op === 'block') {
    const r = encodeBlock(msg.disk, msg.data, msg.length);
    // A copy of the id: a view into a larger buffer would clone all of it.
    post({ op: 'done', seq: msg.seq, id: r.id ? new Uint8Array(r.id) : null, isNew: r.isNew, data: msg.data }, [msg.data]);
  } else {
    sendPack();
    post({ op: 'done', seq: msg.seq, id: null, isNew: false, data: null });
  }
});
