/**
 * Packs blobs into ~16 MiB packs and sends them while reading goes on, a bounded number at
 * a time. One uploader per disk, so each disk's `bytesUploaded` is exact.
 */
import { randomBytes } from 'node:crypto';
import { PackWriter } from '../../core/pack.js';
import type { VaultClient } from '../client.js';

export const PACK_TARGET = 16 * 1024 * 1024;
const UPLOADS_IN_FLIGHT = 2;

export class PackUploader {
  private writer = new PackWriter();
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown = null;
  /** Bytes of packs the vault has acknowledged. */
  uploaded = 0;

  constructor(private readonly client: VaultClient, private readonly containerId: string) {}

  /** Adds a blob; waits only when a full pack must go and the uploads in flight are at their limit. */
  async add(id: Buffer, stored: Buffer): Promise<void> {
    this.writer.add(id, stored);
    if (this.writer.byteLength >= PACK_TARGET) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.writer.count === 0) return;
    const { data } = this.writer.finish();
    this.writer = new PackWriter();
    while (this.inflight.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
    const task = this.client.putPack(this.containerId, randomBytes(16).toString('hex'), data)
      .then(() => { this.uploaded += data.length; }, (e: unknown) => { this.failure = e; })
      .finally(() => { this.inflight.delete(task); });
    this.inflight.add(task);
  }

  /** Sends what is left and waits for every upload; throws the first upload failure. */
  async finish(): Promise<void> {
    await this.flush();
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }

  /** Waits for uploads in flight without raising: used when the backup fails anyway. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.inflight);
  }
}
