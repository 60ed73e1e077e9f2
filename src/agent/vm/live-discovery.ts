/**
 * A running VM's disks as its QEMU describes them over QMP: for `coffre vm protect --qmp` and
 * for each backup (live-disks.ts). A VM's QEMU lists its drives (query-block);
 * qemu-storage-daemon has none, and its disks are the nodes it exports.
 */
import { CoffreError } from '../../core/errors.js';
import type { QemuBitmap } from './change-tracking.js';
import { QmpClient } from './qmp-client.js';

/** What QEMU says of a block node (query-named-block-nodes). */
export interface QemuNode {
  'node-name': string;
  drv: string;
  file: string;
  image?: { 'virtual-size'?: number; filename?: string; snapshots?: { name: string }[] };
  'dirty-bitmaps'?: QemuBitmap[];
}

export interface LiveDisk { node: string; file: string; format: 'qcow2' | 'raw'; size: number }

export async function queryNodes(qmp: QmpClient): Promise<QemuNode[]> {
  return qmp.execute<QemuNode[]>('query-named-block-nodes', { flat: true });
}

/**
 * The VM's disks as QEMU sees them: the nodes behind its drives (query-block), or, for
 * qemu-storage-daemon (no drives), the nodes it exports. `nodes` picks and orders them.
 */
export async function discoverDisks(qmp: QmpClient, nodes?: string[], known?: QemuNode[]): Promise<LiveDisk[]> {
  const all = known ?? await queryNodes(qmp);
  const byName = new Map(all.map((n) => [n['node-name'], n]));
  let names: string[];
  if (nodes?.length) names = nodes;
  else {
    const drives = await qmp.execute<{ device?: string; inserted?: { 'node-name'?: string } }[]>('query-block');
    names = drives.flatMap((d) => (d.inserted?.['node-name'] ? [d.inserted['node-name']] : []));
    if (names.length === 0) {
      const exports = await qmp.execute<{ id: string; 'node-name': string }[]>('query-block-exports');
      // QEMU lists exports newest first; node names in natural order (disk0, disk1, ... disk10) are the stable order.
      names = [...new Set(exports.filter((e) => !e.id.startsWith('coffre-')).map((e) => e['node-name']))].sort((x, y) => x.localeCompare(y, 'en', { numeric: true }));
    }
  }
  if (names.length === 0) throw new CoffreError('InvalidArgument', 'QEMU shows no disk (no drive with a medium, no block export); name the nodes with --node NAME');
  return names.map((name) => {
    const n = byName.get(name);
    if (!n) throw new CoffreError('InvalidArgument', `QEMU has no block node ${name}; its nodes are ${[...byName.keys()].join(', ')}`);
    return liveDisk(n);
  });
}

function liveDisk(n: QemuNode): LiveDisk {
  const size = n.image?.['virtual-size'];
  if (typeof size !== 'number') throw new CoffreError('HypervisorError', `QEMU does not say the size of node ${n['node-name']}`);
  return { node: n['node-name'], file: n.image?.filename ?? n.file, format: n.drv === 'qcow2' ? 'qcow2' : 'raw', size };
}

export async function discoverQemuDisks(qmpSocket: string, nodes: string[]): Promise<LiveDisk[]> {
  const qmp = await QmpClient.connect(qmpSocket);
  try {
    return await discoverDisks(qmp, nodes.length ? nodes : undefined);
  } finally {
    qmp.close();
  }
}
