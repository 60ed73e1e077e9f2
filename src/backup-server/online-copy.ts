/**
 * One online copy: a short-term point of the backup server, copied into its vault as the
 * encrypted bytes it is. No key is needed or held: the closure of the point is read from the
 * catalog (closure.ts), the vault says which of those ids the machine's container already holds,
 * and only the others travel, re-packed as they are stored (data packs for chunks, tree packs for
 * pages with their clear-text prefixes), each blob checked against the checksum recorded when it
 * arrived here. Then the point's manifest and reference list, then the commit, which the vault
 * accepts only once everything the point reaches is stored there.
 *
 * Crash and network safety come from that order. A pack is indexed by the vault only once
 * durable; a copy cut anywhere (kill -9, a lost connection) leaves no point in the vault, and the
 * next copy asks again which ids the vault holds, so what arrived is not sent again. The vault's
 * job of the copy is recorded in the local job before any byte is sent, so a restarted server
 * closes it as failed (recoverInterrupted).
 */
import type { Selectable } from 'kysely';
import type { JobRow } from '../catalog/schema.js';
import type { Consistency, JobCounters, JobProblem, OnlineCopyInfo } from '../core/api.js';
import { ID_BYTES, storedChecksum } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { PackWriter, type PackKind } from '../core/pack.js';
import type { VaultClient } from '../agent/client.js';
import { manifestKey, packKey, refsKey, type DataContext } from '../vault/data.js';
import { createJob, finishJob } from '../vault/jobs.js';
import { pointClosure } from './closure.js';

/** Packs sent to the vault are cut at about this size (the agent's are 4-8 MiB). */
export const COPY_PACK_BYTES = 4 * 1024 * 1024;
/** Contiguous blobs of one local pack are read together up to this size. */
const READ_RUN_BYTES = 8 * 1024 * 1024;
/** How often a running copy says it is alive, here and in the vault (stale after 2 minutes). */
const HEARTBEAT_MS = 10_000;
const BATCH = 400;

export interface CopyEnv {
  ctx: DataContext;
  /** The vault, with this server's key; its uploads go through the throttle. */
  upstream: VaultClient;
  /** Milliseconds waited for the bandwidth limit so far (the throttle's counter). */
  throttledMs: () => number;
  packBytes?: number;
  /** Set when the server stops: the copy ends between two packs, as a transient failure. */
  signal?: AbortSignal;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CoffreError('JobCancelled', 'the backup server is stopping; the copy resumes with its next run');
}

/** The details an OnlineCopy job keeps (jobs.details). */
export type CopyDetails = Pick<OnlineCopyInfo, 'group' | 'pointTime' | 'upstreamJob' | 'chunksTotal' | 'chunksPresent' | 'chunksSent' | 'packsSent' | 'bytesSent' | 'throttledMs'> & {
  alreadyCopied?: boolean;
  /** The vault's job of an earlier, interrupted copy of the point was taken up again. */
  resumed?: boolean;
};

interface Located { id: string; pack: string; offset: number; length: number; checksum: string }

async function locate(ctx: DataContext, containerId: string, ids: string[]): Promise<Map<string, Located>> {
  const out = new Map<string, Located>();
  for (let i = 0; i < ids.length; i += BATCH) {
    const rows = await ctx.db.selectFrom('blobs').select(['id', 'pack_id', 'offset', 'length', 'checksum'])
      .where('container_id', '=', containerId).where('id', 'in', ids.slice(i, i + BATCH)).execute();
    for (const r of rows) out.set(r.id, { id: r.id, pack: r.pack_id, offset: Number(r.offset), length: r.length, checksum: r.checksum });
  }
  return out;
}

function idSet(list: Buffer): Set<string> {
  const out = new Set<string>();
  for (let o = 0; o + ID_BYTES <= list.length; o += ID_BYTES) out.add(list.toString('hex', o, o + ID_BYTES));
  return out;
}

/** The OnlineCopy job of a copy as the API shows it. */
export function copyInfo(row: Selectable<JobRow>, names: { machine: string; item: string }): OnlineCopyInfo {
  const d = JSON.parse(row.details) as Partial<CopyDetails>;
  const errors = JSON.parse(row.errors) as JobProblem[];
  return {
    jobId: row.id, machine: names.machine, item: names.item, group: d.group ?? null, point: row.point_id ?? '', pointTime: d.pointTime ?? '',
    status: row.status as OnlineCopyInfo['status'], startTime: row.start_time, endTime: row.end_time,
    chunksTotal: d.chunksTotal ?? 0, chunksPresent: d.chunksPresent ?? 0, chunksSent: d.chunksSent ?? 0, packsSent: d.packsSent ?? 0,
    bytesSent: d.bytesSent ?? 0, throttledMs: d.throttledMs ?? 0, upstreamJob: d.upstreamJob ?? null, error: errors[0] ?? null,
  };
}

/**
 * Copies one point. Returns the job id of the copy (an OnlineCopy job of this server), whether
 * it completed or failed; throws only when the copy could not even be recorded.
 */
export async function copyPoint(env: CopyEnv, pointId: string, opts: { group: string | null; policy: string; attach: (containerId: string) => Promise<string> }): Promise<string> {
  const { ctx } = env;
  const point = await ctx.db.selectFrom('points').selectAll().where('id', '=', pointId).executeTakeFirst();
  if (!point) throw new CoffreError('PointNotFound', `no point ${pointId} on this backup server`);
  const item = await ctx.db.selectFrom('items').selectAll().where('id', '=', point.item_id).executeTakeFirstOrThrow();
  const details: CopyDetails = {
    group: opts.group, pointTime: point.time, upstreamJob: null, chunksTotal: 0, chunksPresent: 0, chunksSent: 0, packsSent: 0, bytesSent: 0, throttledMs: 0,
  };
  const counters: JobCounters = { bytesScanned: 0, bytesNew: 0, bytesUploaded: 0, filesScanned: point.files, filesChanged: 0 };
  const jobId = await createJob(ctx, { vaultId: point.vault_id, itemId: item.id, containerId: point.container_id, operation: 'OnlineCopy', pointId, details: { ...details } });
  const throttledFrom = env.throttledMs();
  const save = async () => {
    details.throttledMs = env.throttledMs() - throttledFrom;
    await ctx.db.updateTable('jobs').set({
      heartbeat: ctx.clock.now().toISOString(), details: JSON.stringify(details),
      bytes_scanned: counters.bytesScanned, bytes_new: counters.bytesNew, bytes_uploaded: counters.bytesUploaded, files_scanned: counters.filesScanned,
    }).where('id', '=', jobId).execute();
    if (details.upstreamJob) await env.upstream.progress(details.upstreamJob, { bytesUploaded: counters.bytesUploaded, bytesNew: counters.bytesNew });
  };
  // Alive while waiting for the bandwidth limit too; a failed beat is retried at the next.
  const beat = setInterval(() => { void save().catch(() => undefined); }, HEARTBEAT_MS);
  try {
    const container = await opts.attach(point.container_id);
    const start = await env.upstream.startCopy({ container, item: item.name, kind: item.kind, policy: opts.policy, point: point.id, time: point.time });
    if (start.alreadyCopied) {
      details.alreadyCopied = true;
      await finishJob(ctx, jobId, { status: 'Completed', details: { ...details }, counters });
      return jobId;
    }
    details.upstreamJob = start.job.id;
    details.resumed = start.resumed;
    // Recorded before any byte leaves: a restarted server closes the vault's job of a cut copy.
    await save();
    const store = await ctx.stores.byId(point.vault_id);
    const refs = await store.get(refsKey(point.id));
    const closure = await pointClosure(ctx.db, point.container_id, refs);
    const present = idSet(await env.upstream.blobIds(container));
    const missing = closure.ids.filter((id) => !present.has(id));
    details.chunksTotal = closure.ids.length;
    details.chunksPresent = closure.ids.length - missing.length;
    await sendBlobs(env, point.container_id, container, missing, closure.pages, details, counters, save);
    checkAborted(env.signal);
    for (const [object, key] of [['manifest', manifestKey(point.id)], ['refs', refsKey(point.id)]] as const) {
      const data = object === 'refs' ? refs : await store.get(key);
      await env.upstream.putPointObject(point.id, start.job.id, object, data);
      details.bytesSent += data.length;
      counters.bytesUploaded += data.length;
    }
    details.throttledMs = env.throttledMs() - throttledFrom;
    await env.upstream.commitCopy(point.id, {
      jobId: start.job.id, files: point.files, bytes: Number(point.bytes), consistency: point.consistency as Consistency, counters,
      details: { copiedBy: 'backup server', chunksTotal: details.chunksTotal, chunksPresent: details.chunksPresent, chunksSent: details.chunksSent, packsSent: details.packsSent },
    });
    await finishJob(ctx, jobId, { status: 'Completed', details: { ...details }, counters });
  } catch (e) {
    const error: JobProblem = { code: e instanceof CoffreError ? e.code : 'Internal', message: (e as Error).message };
    details.throttledMs = env.throttledMs() - throttledFrom;
    await finishJob(ctx, jobId, { status: 'Failed', errors: [error], details: { ...details }, counters });
    // Cut off from the vault (or stopping): the vault's job stays open, and the next copy of the
    // point resumes it with what arrived (GC leaves a running backup's container alone). Any other
    // failure ends it now.
    const transient = error.code === 'ServerUnreachable' || error.code === 'JobCancelled';
    if (details.upstreamJob && !transient) await env.upstream.finishJob(details.upstreamJob, { status: 'Failed', errors: [error] }).catch(() => undefined);
  } finally {
    clearInterval(beat);
  }
  return jobId;
}

/**
 * Sends the given blobs, read from this server's packs, in new packs of the same kinds. A local
 * pack that is gone (garbage collection rewrote it meanwhile) is looked up again once.
 */
async function sendBlobs(env: CopyEnv, localContainer: string, container: string, ids: string[], pages: Set<string>, details: CopyDetails, counters: JobCounters, save: () => Promise<void>): Promise<void> {
  const { ctx } = env;
  const store = await ctx.stores.forContainer(localContainer);
  const limit = env.packBytes ?? COPY_PACK_BYTES;
  const writers: Record<PackKind, PackWriter> = { data: new PackWriter('data'), tree: new PackWriter('tree') };
  const flush = async (kind: PackKind) => {
    const w = writers[kind];
    if (w.count === 0) return;
    writers[kind] = new PackWriter(kind);
    const { parts, size, entries } = w.finishParts();
    checkAborted(env.signal);
    await env.upstream.putPack(container, newId(16), parts);
    details.packsSent++;
    details.chunksSent += entries.length;
    details.bytesSent += size;
    counters.bytesUploaded += size;
    await save();
  };
  let pending = ids;
  for (let attempt = 0; pending.length > 0; attempt++) {
    const located = await locate(ctx, localContainer, pending);
    const lost = pending.filter((id) => !located.has(id));
    if (lost.length) {
      throw new CoffreError('ChunkMissing', `${lost.length} chunk(s) of this point are not on the backup server (first: ${lost[0]!.slice(0, 16)}); run \`coffre verify\` on it`, { missing: lost.slice(0, 100) });
    }
    const byPack = new Map<string, Located[]>();
    for (const l of located.values()) {
      let list = byPack.get(l.pack);
      if (!list) byPack.set(l.pack, (list = []));
      list.push(l);
    }
    const retry: string[] = [];
    for (const [pack, blobs] of byPack) {
      blobs.sort((a, b) => a.offset - b.offset);
      for (let i = 0; i < blobs.length;) {
        // A run of blobs that lie back to back in the pack: one read.
        let j = i + 1;
        while (j < blobs.length && blobs[j]!.offset === blobs[j - 1]!.offset + blobs[j - 1]!.length && blobs[j]!.offset + blobs[j]!.length - blobs[i]!.offset <= READ_RUN_BYTES) j++;
        const from = blobs[i]!.offset;
        let data: Buffer;
        try {
          data = await store.get(packKey(localContainer, pack), { offset: from, length: blobs[j - 1]!.offset + blobs[j - 1]!.length - from });
        } catch (e) {
          if (!(e instanceof CoffreError && e.code === 'NotFound') || attempt > 0) throw e;
          retry.push(...blobs.slice(i).map((b) => b.id));
          break;
        }
        for (const b of blobs.slice(i, j)) {
          const stored = data.subarray(b.offset - from, b.offset - from + b.length);
          const checksum = storedChecksum(stored);
          if (checksum.toString('hex') !== b.checksum) {
            throw new CoffreError('ChecksumMismatch', `chunk ${b.id.slice(0, 16)} in pack ${pack} of the backup server does not match its checksum: nothing damaged is copied; run \`coffre verify\` on the backup server`);
          }
          counters.bytesScanned += b.length;
          counters.bytesNew += b.length;
          const kind: PackKind = pages.has(b.id) ? 'tree' : 'data';
          // Copied out of the read buffer: the pack keeps it until it is sent.
          writers[kind].add(Buffer.from(b.id, 'hex'), Buffer.from(stored), checksum);
          if (writers[kind].byteLength >= limit) await flush(kind);
        }
        i = j;
      }
    }
    pending = retry;
  }
  await flush('data');
  await flush('tree');
}
