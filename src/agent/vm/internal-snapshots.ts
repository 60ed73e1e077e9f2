/**
 * Internal snapshots of qcow2 images: the instant-restore copy of a qcow2 disk, kept inside
 * the image by QEMU's own copy-on-write (no data is copied when it is taken; clusters the VM
 * rewrites afterwards are kept until the snapshot is deleted). A running VM's QEMU takes and
 * deletes them over QMP; an image no QEMU holds is handled by qemu-img.
 *
 * Names are `coffre-<point id>`: a snapshot belongs to exactly one point.
 */
import { CoffreError } from '../../core/errors.js';
import { createInternalSnapshot, deleteInternalSnapshot, listInternalSnapshots } from './qemu-img.js';
import { QmpClient } from './qmp-client.js';
import type { InternalSnapshot } from './snapshot-store.js';

export const SNAPSHOT_PREFIX = 'coffre-';
export const internalSnapshotName = (pointId: string) => `${SNAPSHOT_PREFIX}${pointId}`;

/** Takes an internal snapshot through QMP (the image's QEMU is running) or qemu-img. */
export async function takeInternalSnapshot(s: InternalSnapshot, qmp?: QmpClient): Promise<void> {
  if (qmp && s.node) await qmp.execute('blockdev-snapshot-internal-sync', { device: s.node, name: s.name });
  else await createInternalSnapshot(s.image, s.name);
}

async function deleteOne(s: InternalSnapshot, qmp: QmpClient | null): Promise<void> {
  if (qmp && s.node) {
    const nodes = await qmp.execute<{ 'node-name'?: string; image?: { snapshots?: { name: string }[] } }[]>('query-named-block-nodes', { flat: true });
    const node = nodes.find((n) => n['node-name'] === s.node);
    // The node is gone (disk detached or the VM reconfigured): its image is handled without QEMU below.
    if (node) {
      if (!node.image?.snapshots?.some((x) => x.name === s.name)) return;
      await qmp.execute('blockdev-snapshot-delete-internal-sync', { device: s.node, name: s.name });
      return;
    }
  }
  if (!(await listInternalSnapshots(s.image)).includes(s.name)) return;
  await deleteInternalSnapshot(s.image, s.name);
}

/**
 * Deletes internal snapshots; true when all are gone. Through the image's QEMU when it runs
 * (its QMP socket answers), else with qemu-img; a failure (QEMU busy with a backup, the image
 * locked by a QEMU Coffre cannot reach) leaves the snapshot for the next sweep.
 */
export async function deleteInternalSnapshots(all: InternalSnapshot[]): Promise<boolean> {
  const clients = new Map<string, QmpClient | null>();
  let ok = true;
  try {
    for (const s of all) {
      let qmp: QmpClient | null = null;
      if (s.qmp) {
        if (!clients.has(s.qmp)) clients.set(s.qmp, await QmpClient.connect(s.qmp, { timeoutMs: 10_000 }).catch(() => null));
        qmp = clients.get(s.qmp) ?? null;
      }
      try {
        await deleteOne(s, qmp);
      } catch (e) {
        if (!(e instanceof CoffreError)) throw e;
        ok = false;
      }
    }
  } finally {
    for (const c of clients.values()) c?.close();
  }
  return ok;
}

/** Whether an image still holds the named internal snapshot (read without the image's lock). */
export async function hasInternalSnapshot(s: InternalSnapshot): Promise<boolean> {
  try {
    return (await listInternalSnapshots(s.image)).includes(s.name);
  } catch (e) {
    if (e instanceof CoffreError) return false;
    throw e;
  }
}
