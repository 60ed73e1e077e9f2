/** Fetches planned pack ranges a few at a time, for the file and the disk restore engines. */
import { CoffreError } from '../core/errors.js';
import type { ReadOptions, VaultClient } from './client.js';
import type { PackRange } from './pack-ranges.js';

/**
 * A range the vault reports missing or shorter than its index says is damage, like a bad
 * blob: it goes to `onDamage` (the caller leaves out what needed it) and the rest goes on.
 * Any other error stops the fetch.
 */
export async function fetchRanges(opts: {
  client: VaultClient;
  containerId: string;
  ranges: readonly PackRange[];
  inFlight: number;
  onRange(range: PackRange, data: Buffer): Promise<void> | void;
  onDamage(range: PackRange, error: CoffreError): void;
  /** A buffer to read the range into (else one is allocated per range); see readPack. */
  bufferFor?(range: PackRange): Uint8Array;
  /** The region to read from and the restore job (see VaultClient.readPack). */
  read?: ReadOptions;
}): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (!failure && next < opts.ranges.length) {
      const r = opts.ranges[next++]!;
      let data: Buffer;
      try {
        data = await opts.client.readPack(opts.containerId, r.pack, r.offset, r.length, opts.bufferFor?.(r), opts.read);
      } catch (err) {
        if (!(err instanceof CoffreError) || (err.code !== 'ChecksumMismatch' && err.code !== 'NotFound')) throw err;
        opts.onDamage(r, err);
        continue;
      }
      await opts.onRange(r, data);
    }
  };
  // On a failure the other lanes stop, and every lane has settled before it is raised: no
  // write of this restore happens after its caller has started cleaning up.
  const lane = () => worker().catch((error: unknown) => { failure ??= { error }; });
  await Promise.all(Array.from({ length: Math.min(opts.inFlight, opts.ranges.length) }, lane));
  if (failure) throw (failure as { error: unknown }).error;
}
