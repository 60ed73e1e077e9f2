/**
 * Restores a principal asked for from the dashboard (src/vault/restore-requests.ts), carried
 * out by the daemon on its poll: it claims each pending request of its machine once, restores
 * with the machine's keys into the requested folder (the same engine and guarantees as
 * `coffre restore`: nothing written outside the target, every chunk checked), and reports the
 * outcome with the restore job. The agent still connects outward only.
 */
import type { JobProblem, JobStatus } from '../core/api.js';
import type { KeySet } from '../core/crypto.js';
import { CoffreError } from '../core/errors.js';
import type { VaultClient } from './client.js';
import { restore, type OverwritePolicy } from './restore.js';

export interface RequestedRestoreResult { request: string; item: string; pointId: string; jobId: string | null; status: JobStatus | null; error?: JobProblem }

export async function runRequestedRestores(opts: { client: VaultClient; keys: KeySet; log?: (line: string) => void }): Promise<RequestedRestoreResult[]> {
  const log = opts.log ?? (() => undefined);
  const out: RequestedRestoreResult[] = [];
  for (const req of await opts.client.pendingRestores()) {
    try {
      await opts.client.claimRestore(req.id);
    } catch (e) {
      // Another agent process of this machine took it first: nothing to do.
      if (e instanceof CoffreError && e.code === 'BadRequest') continue;
      throw e;
    }
    log(`restoring point ${req.pointId} of ${req.item} into ${req.target} (asked by ${req.requestedBy})`);
    let jobId: string | null = null;
    try {
      const result = await restore({
        client: opts.client, keys: opts.keys, pointId: req.pointId, target: req.target, paths: req.paths, overwrite: req.overwrite as OverwritePolicy,
        onJob: async (job) => {
          jobId = job.id;
          // Linking only lets the request show the job's progress; the restore goes on without it.
          await opts.client.linkRestoreJob(req.id, job.id).catch((e: Error) => log(`could not link job ${job.id} to request ${req.id}: ${e.message}`));
        },
      });
      await opts.client.finishRestoreRequest(req.id, { jobId: result.job.id });
      log(`${req.item}: restore ${result.job.status} (${result.errors.length} error(s), ${result.warnings.length} warning(s))`);
      out.push({ request: req.id, item: req.item, pointId: req.pointId, jobId: result.job.id, status: result.job.status });
    } catch (e) {
      const error = { code: e instanceof CoffreError ? e.code : 'Internal', message: (e as Error).message };
      log(`${req.item}: restore failed: ${error.message}`);
      // The request says why; a vault that cannot be reached now hears it from the stale job instead.
      await opts.client.finishRestoreRequest(req.id, { ...(jobId ? { jobId } : {}), error: error.message }).catch(() => undefined);
      out.push({ request: req.id, item: req.item, pointId: req.pointId, jobId, status: null, error });
    }
  }
  return out;
}
