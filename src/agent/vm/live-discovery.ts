/** `coffre vm protect --qmp`: the disks of a running VM, asked of its QEMU once. */
import { discoverDisks, type LiveDisk } from './live-disks.js';
import { QmpClient } from './qmp-client.js';

export async function discoverQemuDisks(qmpSocket: string, nodes: string[]): Promise<LiveDisk[]> {
  const qmp = await QmpClient.connect(qmpSocket);
  try {
    return await discoverDisks(qmp, nodes.length ? nodes : undefined);
  } finally {
    qmp.close();
  }
}
