/**
 * The disk session (disk-session.ts) for a running VM, through its QEMU's block layer over QMP
 * (a VM's QEMU, or qemu-storage-daemon). For each backup, one QMP transaction takes, on every
 * disk at the same instant: a new dirty bitmap (the previous one disabled), and
 *
 * - for a qcow2 image on this machine, an internal snapshot: the point itself, read from the
 *   image file by Coffre (qcow2-snapshot.ts) and kept as the instant-restore copy; the changed
 *   extents come from the bitmap, exported over NBD through an empty read-only overlay;
 * - for any other disk, blockdev-backup sync=none into a temporary overlay whose backing is the
 *   disk ("fleecing": QEMU copies a cluster into the overlay before the guest rewrites it, so
 *   the overlay reads as the disk at that instant), exported over NBD with the bitmap and read
 *   by Coffre's NBD client.
 *
 * Only blocks the bitmap(s) since the last committed point mark are read, and only their data.
 * After the commit the old bitmaps are removed; after a failure they stay (change-tracking.ts).
 * Everything Coffre adds to QEMU is named after a tag of this agent and VM, so a backup killed
 * half-way is cleaned up by the next one: jobs cancelled, exports and overlays removed, internal
 * snapshots of uncommitted points deleted.
 */
import { createHash } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import { writeFileAtomic } from '../state.js';
import { bitmapsToRemove, mergedBitmapName, planTracking, type TrackingPlan, type TrackingState } from './change-tracking.js';
import { vmRoot, type VmConfig } from './config.js';
import type { DiskSession, SessionDisk } from './disk-session.js';
import { nbdReader } from './disk-reader.js';
import { internalSnapshotName, SNAPSHOT_PREFIX } from './internal-snapshots.js';
import { lockItem } from './item-lock.js';
import { NbdClient } from './nbd-client.js';
import { BASE_ALLOCATION, dirtyBitmapContext, type Extent } from './nbd-protocol.js';
import { snapshotView } from './snapshot-view.js';
import { createQcow2 } from './qemu-img.js';
import { QmpClient, QmpCommandError } from './qmp-client.js';
import { listSnapshots, type SnapshotDisk } from './snapshot-store.js';
import { discoverDisks, queryNodes, type LiveDisk } from './live-discovery.js';

const NODE_TIMEOUT_MS = 60_000;

/** Short, QEMU-safe ids (node names are limited to 31 characters) unique to this agent and VM. */
export function qemuTag(agentDir: string, item: string): string {
  return `coffre-${createHash('sha256').update(`${agentDir}\0${item}`).digest('hex').slice(0, 10)}`;
}

const trackingFile = (agentDir: string, vaultId: string, item: string) => join(vmRoot(agentDir), 'tracking', vaultId, `${item}.json`);

async function loadTracking(agentDir: string, vaultId: string, item: string): Promise<TrackingState | null> {
  try {
    const s = JSON.parse(await readFile(trackingFile(agentDir, vaultId, item), 'utf8')) as TrackingState;
    return s.version === 1 && typeof s.pointId === 'string' && Array.isArray(s.disks) ? s : null;
  } catch {
    // No tracking record (first backup through QEMU) or a damaged one: a full read is the safe answer.
    return null;
  }
}

/** Whether something accepts connections on a unix socket. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ path });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export interface LiveSessionOptions {
  config: VmConfig;
  agentDir: string;
  vaultId: string;
  staging: string;
  snapshotRoot: string;
  pointId: string;
}

interface Disk extends LiveDisk {
  index: number;
  plan: TrackingPlan;
  /**
   * `snapshot`: a qcow2 image on this machine; the point is an internal snapshot, read from the
   * image file (qcow2-snapshot.ts). `fleece`: any other disk; the point is a temporary overlay
   * filled by copy-before-write, read over NBD.
   */
  mode: 'snapshot' | 'fleece';
  fleeceNode: string;
  fleeceFile: string;
  job: string;
  exportId: string;
  nbd: NbdClient | null;
}

export async function liveDiskSession(o: LiveSessionOptions): Promise<DiskSession> {
  const { config } = o;
  const item = config.name;
  const tag = qemuTag(o.agentDir, item);
  const release = await lockItem(o.agentDir, item);
  let qmp: QmpClient | null = null;
  try {
    qmp = await QmpClient.connect(config.qmp!);
    return await openSession(o, qmp, tag, release);
  } catch (e) {
    qmp?.close();
    await release();
    throw e;
  }
}

/** Whether Coffre can read the image itself: an absolute path to a file or device on this machine. */
async function localImage(file: string): Promise<boolean> {
  if (!isAbsolute(file)) return false;
  try {
    const st = await stat(file);
    return st.isFile() || st.isBlockDevice();
  } catch {
    // Not a local path (a network protocol, or a path of another mount namespace): read through QEMU.
    return false;
  }
}

async function openSession(o: LiveSessionOptions, qmp: QmpClient, tag: string, release: () => Promise<void>): Promise<DiskSession> {
  const { config } = o;
  const item = config.name;
  await cleanupLeftovers(qmp, o, tag);
  const all = await queryNodes(qmp);
  const found = await discoverDisks(qmp, config.disks.map((d) => d.node ?? d.path), all);
  const state = await loadTracking(o.agentDir, o.vaultId, item);
  const nodes = new Map(all.map((n) => [n['node-name'], n]));
  const disks: Disk[] = await Promise.all(found.map(async (d, index) => ({
    ...d, index,
    plan: planTracking(item, { index, node: d.node, file: d.file, size: d.size }, nodes.get(d.node)?.['dirty-bitmaps'] ?? [], state),
    mode: d.format === 'qcow2' && (await localImage(d.file)) ? 'snapshot' as const : 'fleece' as const,
    fleeceNode: `${tag}-fl${index}`, fleeceFile: join(o.staging, `fleece-${index}.qcow2`), job: `${tag}-job${index}`, exportId: `${tag}-ex${index}`,
    nbd: null,
  })));
  const snapshotName = internalSnapshotName(o.pointId);
  const snapshotted: Disk[] = [];
  const notes: string[] = [];
  for (const d of disks) {
    if (d.mode === 'fleece') notes.push(`disk ${d.index} (node ${d.node}) is not a qcow2 image on this machine: it is read through a temporary QEMU overlay, and this point keeps no instant-restore copy of it (its restores read the vault)`);
  }
  const exports: string[] = [];
  /** Read-only overlays added to export a disk's bitmap: their node names and files. */
  const maps: { node: string; file: string }[] = [];
  const readers: SessionDisk['reader'][] = [];
  let nbdServer: { socket: string; ours: boolean } | null = null;
  let merged = false;
  let tornDown = false;

  const teardown = async () => {
    if (tornDown) return;
    tornDown = true;
    await Promise.allSettled(readers.map((r) => r.close()));
    await Promise.allSettled(disks.map((d) => d.nbd?.close()));
    for (const id of exports) await deleteExport(qmp, id);
    const fleeced = disks.filter((d) => d.mode === 'fleece');
    await removeFleecing(qmp, [...fleeced.map((d) => ({ node: d.fleeceNode, job: d.job })), ...maps.map((m) => ({ node: m.node, job: '' }))]);
    await Promise.all(fleeced.map((d) => rm(d.fleeceFile, { force: true })));
    if (merged) for (const d of disks) await removeBitmap(qmp, d.node, mergedBitmapName(item));
    if (nbdServer?.ours) await qmp.execute('nbd-server-stop').catch(() => undefined); // already stopped: nothing to do
  };

  const server = async () => (nbdServer ??= await ensureNbdServer(qmp, config, tag));

  /** Exports `node` read-only with `bitmaps`, and connects to it with these contexts. */
  const exportNode = async (id: string, node: string, bitmap: string | null, contexts: string[]): Promise<NbdClient> => {
    const { socket } = await server();
    await qmp.execute('block-export-add', { type: 'nbd', id, 'node-name': node, name: id, writable: false, ...(bitmap ? { bitmaps: [bitmap] } : {}) });
    exports.push(id);
    return NbdClient.connect({ socket, export: id, metaContexts: contexts });
  };

  /** The bitmap whose dirty extents are the change since the last point: the chain's one, or their union. */
  const changeBitmap = async (d: Disk): Promise<string | null> => {
    if (d.plan.mode !== 'incremental') return null;
    if (d.plan.chain.length === 1) return d.plan.chain[0]!;
    const name = mergedBitmapName(item);
    await qmp.execute('block-dirty-bitmap-add', { node: d.node, name, persistent: false, disabled: true });
    merged = true;
    await qmp.execute('block-dirty-bitmap-merge', { node: d.node, target: name, bitmaps: d.plan.chain });
    return name;
  };

  return {
    notes,
    async take() {
      const fleeced = disks.filter((d) => d.mode === 'fleece');
      // Overlays exist before the instant (creating them takes time); they get no writes until the transaction.
      await Promise.all(fleeced.map((d) => createQcow2(d.fleeceFile, d.size)));
      for (const d of fleeced) {
        await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': d.fleeceNode, file: { driver: 'file', filename: d.fleeceFile }, backing: d.node });
      }
      const actions: unknown[] = [];
      for (const d of disks) {
        if (d.mode === 'snapshot') actions.push({ type: 'blockdev-snapshot-internal-sync', data: { device: d.node, name: snapshotName } });
        actions.push({ type: 'block-dirty-bitmap-add', data: { node: d.node, name: d.plan.next, persistent: d.format === 'qcow2' } });
        if (d.plan.disable) actions.push({ type: 'block-dirty-bitmap-disable', data: { node: d.node, name: d.plan.disable } });
        if (d.mode === 'fleece') actions.push({ type: 'blockdev-backup', data: { device: d.node, target: d.fleeceNode, sync: 'none', 'job-id': d.job, 'auto-dismiss': true } });
      }
      // One transaction: snapshots, overlays and bitmaps switch at one instant, on every disk at once.
      await qmp.execute('transaction', { actions });
      snapshotted.push(...disks.filter((d) => d.mode === 'snapshot'));
    },
    async open() {
      const out: SessionDisk[] = [];
      for (const d of disks) {
        const bitmap = await changeBitmap(d);
        const tracking = { mode: d.plan.mode, ...(d.plan.reason ? { reason: d.plan.reason } : {}), bitmap: d.plan.next };
        if (d.mode === 'fleece') {
          const contexts = bitmap ? [BASE_ALLOCATION, dirtyBitmapContext(bitmap)] : [BASE_ALLOCATION];
          const nbd = (d.nbd = await exportNode(d.exportId, d.fleeceNode, bitmap, contexts));
          const status = await nbd.blockStatus(0, nbd.size);
          const allocation = status.get(BASE_ALLOCATION)!;
          const reader = nbdReader(nbd, allocation, async () => { await nbd.close(); });
          readers.push(reader);
          out.push({
            index: d.index, path: d.file, format: d.format, size: d.size, allocation, dirty: bitmap ? status.get(dirtyBitmapContext(bitmap))! : null,
            since: d.plan.since, tracking, snapshot: 'none', reader,
          });
          continue;
        }
        // The changed extents, through an empty read-only overlay whose backing is the disk: an
        // export of the disk node itself would forbid resizing it, which its users may hold.
        let dirty: Extent[] | null = null;
        if (bitmap) {
          const overlay = { node: `${tag}-mp${d.index}`, file: await mapOverlay(o.agentDir, item, d) };
          await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': overlay.node, 'read-only': true, file: { driver: 'file', filename: overlay.file }, backing: d.node });
          maps.push(overlay);
          const map = await exportNode(d.exportId, overlay.node, bitmap, [dirtyBitmapContext(bitmap)]);
          try {
            dirty = (await map.blockStatus(0, map.size)).get(dirtyBitmapContext(bitmap))!;
          } finally {
            await map.close();
          }
        }
        const view = await snapshotView({ image: d.file, name: snapshotName });
        readers.push(view.reader);
        out.push({ index: d.index, path: d.file, format: 'qcow2', size: view.size, allocation: view.allocation, dirty, since: d.plan.since, tracking, snapshot: 'internal', reader: view.reader });
      }
      return out;
    },
    snapshotDisks(): SnapshotDisk[] {
      return snapshotted.map((d) => ({
        index: d.index, file: '', format: 'qcow2', dataSize: d.size, fileSize: 0, mtimeMs: 0,
        internal: { image: d.file, name: snapshotName, qmp: config.qmp!, node: d.node },
      }));
    },
    async committed(pointId: string) {
      const next: TrackingState = { version: 1, pointId, disks: disks.map((d) => ({ node: d.node, file: d.file, size: d.size, bitmap: d.plan.next })) };
      await writeFileAtomic(trackingFile(o.agentDir, o.vaultId, item), JSON.stringify(next, null, 2) + '\n');
      // Exported bitmaps are busy: the views go first, then the bitmaps older than this point.
      await teardown();
      const now = new Map((await queryNodes(qmp)).map((n) => [n['node-name'], n]));
      for (const d of disks) {
        for (const name of bitmapsToRemove(item, now.get(d.node)?.['dirty-bitmaps'] ?? [], d.plan.next)) await removeBitmap(qmp, d.node, name);
      }
    },
    async close(keepSnapshots: boolean) {
      try {
        await teardown();
        if (!keepSnapshots) {
          for (const d of snapshotted) await qmp.execute('blockdev-snapshot-delete-internal-sync', { device: d.node, name: snapshotName });
        }
      } finally {
        qmp.close();
        await release();
      }
    },
  };
}

async function removeBitmap(qmp: QmpClient, node: string, name: string): Promise<void> {
  const n = (await queryNodes(qmp)).find((x) => x['node-name'] === node);
  if (n?.['dirty-bitmaps']?.some((b) => b.name === name)) await qmp.execute('block-dirty-bitmap-remove', { node, name });
}

async function deleteExport(qmp: QmpClient, id: string): Promise<void> {
  const deleted = qmp.waitEvent((e) => e.event === 'BLOCK_EXPORT_DELETED' && e.data.id === id, NODE_TIMEOUT_MS);
  try {
    await qmp.execute('block-export-del', { id, mode: 'hard' });
  } catch (e) {
    deleted.catch(() => undefined); // no event will come for an export that was not there
    if (e instanceof QmpCommandError) return;
    throw e;
  }
  await deleted;
}

/** Cancels the fleecing jobs (QEMU removes their copy-before-write filters) and removes the overlays. */
async function removeFleecing(qmp: QmpClient, items: { node: string; job: string }[]): Promise<void> {
  const jobs = new Set((await qmp.execute<{ device: string }[]>('query-block-jobs')).map((j) => j.device));
  for (const { job } of items) {
    if (!jobs.has(job)) continue;
    const gone = qmp.waitEvent((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === job && e.data.status === 'null', NODE_TIMEOUT_MS);
    await qmp.execute('block-job-cancel', { device: job, force: true });
    await gone;
  }
  const nodes = new Set((await queryNodes(qmp)).map((n) => n['node-name']));
  for (const { node } of items) if (nodes.has(node)) await qmp.execute('blockdev-del', { 'node-name': node });
}

/**
 * The empty qcow2 overlay through which a disk's bitmap is exported. It is only ever opened
 * read-only, so it stays empty and is kept for the next backups (no qemu-img run per backup).
 */
async function mapOverlay(agentDir: string, item: string, d: { index: number; size: number }): Promise<string> {
  const dir = join(vmRoot(agentDir), 'maps');
  const file = join(dir, `${item}-${d.index}-${d.size}.qcow2`);
  try {
    await stat(file);
  } catch {
    // Not made yet: made once, under a temporary name so that a half-made one is never used.
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    await createQcow2(tmp, d.size);
    await rename(tmp, file);
  }
  return file;
}

/** An NBD server in QEMU for the exports: the VM's own (--nbd-socket), else one Coffre starts (and stops). */
async function ensureNbdServer(qmp: QmpClient, config: VmConfig, tag: string): Promise<{ socket: string; ours: boolean }> {
  if (config.nbdSocket) return { socket: config.nbdSocket, ours: false };
  const socket = join(tmpdir(), `${tag}.nbd`);
  if (await answers(socket)) return { socket, ours: true }; // started by a backup that was killed: still serving
  await rm(socket, { force: true });
  try {
    await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socket } } });
  } catch (e) {
    if (!(e instanceof QmpCommandError)) throw e;
    throw new CoffreError('InvalidArgument', `QEMU refused to start an NBD server for the backup (${e.desc}); if the VM already runs one, give its unix socket: coffre vm protect ${config.name} --qmp ${config.qmp} --nbd-socket PATH`);
  }
  return { socket, ours: true };
}

/**
 * Removes what a killed backup of this VM left in QEMU and on disk: its exports, jobs and
 * overlays, the merged bitmap, internal snapshots of points that were never committed, and
 * staging folders. Bitmaps of the chain are kept: they hold changes not yet in any point.
 */
async function cleanupLeftovers(qmp: QmpClient, o: LiveSessionOptions, tag: string): Promise<void> {
  const item = o.config.name;
  const exports = await qmp.execute<{ id: string }[]>('query-block-exports');
  for (const e of exports) if (e.id.startsWith(`${tag}-`)) await deleteExport(qmp, e.id);
  const jobs = (await qmp.execute<{ device: string }[]>('query-block-jobs')).filter((j) => j.device.startsWith(`${tag}-`));
  const nodes = await queryNodes(qmp);
  await removeFleecing(qmp, [...jobs.map((j) => ({ node: '', job: j.device })), ...nodes.filter((n) => n['node-name'].startsWith(`${tag}-`)).map((n) => ({ node: n['node-name'], job: '' }))]);
  const kept = new Set((await listSnapshots(o.agentDir, item)).map((s) => internalSnapshotName(s.pointId)));
  for (const n of await queryNodes(qmp)) {
    if (!o.config.disks.some((d) => d.node === n['node-name'])) continue;
    if (n['dirty-bitmaps']?.some((b) => b.name === mergedBitmapName(item))) await qmp.execute('block-dirty-bitmap-remove', { node: n['node-name'], name: mergedBitmapName(item) });
    for (const s of n.image?.snapshots ?? []) {
      if (s.name.startsWith(SNAPSHOT_PREFIX) && !kept.has(s.name)) await qmp.execute('blockdev-snapshot-delete-internal-sync', { device: n['node-name'], name: s.name });
    }
  }
  // Staging folders of this VM's killed backups (the lock says none is running).
  const dir = join(o.snapshotRoot, item);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const p = join(dir, name);
    if (name.endsWith('.partial') && p !== o.staging && (await stat(p)).isDirectory()) await rm(p, { recursive: true, force: true });
  }
}
