/**
 * Packs sealed blobs into ~16 MiB packs and sends them while reading goes on, a bounded
 * number at a time. `uploaded` counts the bytes the vault acknowledged (a job's bytesUploaded).
 */
import { randomBytes } from 'node:crypto';
import { PackWriter } from '../core/pack.js';
import type { VaultClient } from './client.js';

export const PACK_TARGET = 16 * 1024 * 1024;
const UPLOADS_IN_FLIGHT = 2;

export class PackUploader {
  private writer = new PackWriter();
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown = null;
  uploaded = 0;

  constructor(private readonly client: VaultClient, private readonly containerId: string) {}

  /** Adds a blob; a full pack starts uploading at once. Callers pace themselves with `room()`. */
  add(id: Buffer, stored: Buffer, checksum?: Buffer): void {
    this.writer.add(id, stored, checksum);
    if (this.writer.byteLength >= PACK_TARGET) this.send();
  }

  /** Adds a blob and waits if too many packs are on the wire. */
  async addPaced(id: Buffer, stored: Buffer): Promise<void> {
    this.add(id, stored);
    await this.room();
  }

  private send(): void {
    if (this.writer.count === 0) return;
    const { parts, size } = this.writer.finishParts();
    this.writer = new PackWriter();
    const task = this.client.putPack(this.containerId, randomBytes(16).toString('hex'), parts)
      .then(() => { this.uploaded += size; }, (e: unknown) => { this.failure ??= e; })
      .finally(() => { this.inflight.delete(task); });
    this.inflight.add(task);
  }

  /** Backpressure: wait until fewer than UPLOADS_IN_FLIGHT packs are on the wire; throws the first upload failure. */
  async room(): Promise<void> {
    while (this.inflight.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
  }

  /** Sends what is left and waits for every upload; throws the first upload failure. */
  async finish(): Promise<void> {
    this.send();
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }

  /** Waits for uploads in flight without raising: used when the backup fails anyway. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.inflight);
  }
}
