/**
 * `coffre agent run`: the agent daemon. It asks its vault what is due (the vault owns the
 * schedule; the agent only connects outwards), claims each run, and backs it up: folders with
 * the file engine, a protected VM with the disk engine and its local configuration.
 */
import type { JobProblem } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { backupFiles, optionsFromSource } from './snapshot/snapshot-backup.js';
import { backupVm } from './vm/vm-backup.js';
import { requireVmConfig } from './vm/config.js';

/** What the daemon reports of each run, whichever engine made it. */
interface BackupResult { point: { id: string }; jobId: string; counters: { bytesNew: number }; warnings: unknown[] }
import type { VaultClient } from './client.js';
import type { AgentState } from './state.js';
import type { KeySet } from '../core/crypto.js';

export interface DaemonOptions {
  client: VaultClient;
  state: AgentState & { keySet: KeySet };
  agentDir: string;
  log?: (line: string) => void;
}

/** Runs every backup that is due now, one after the other; returns what happened. */
export async function runDueOnce(opts: DaemonOptions): Promise<{ item: string; scheduledAt: string; backupType?: string; result?: BackupResult; error?: JobProblem }[]> {
  const log = opts.log ?? (() => undefined);
  const out: { item: string; scheduledAt: string; backupType?: string; result?: BackupResult; error?: JobProblem }[] = [];
  for (const run of await opts.client.due()) {
    try {
      await opts.client.claim(run.item, run.scheduledAt, { onDemand: run.onDemand !== undefined, ...('db' in run.source ? { backupType: run.source.backupType } : {}) });
    } catch (e) {
      // Another agent process took it first: nothing to do.
      if (e instanceof CoffreError && e.code === 'BadRequest') continue;
      throw e;
    }
    log(`backing up ${run.item}${'db' in run.source ? ` (${run.source.backupType})` : ''} (${run.onDemand ? 'asked for' : 'scheduled'} at ${run.scheduledAt})`);
    try {
      // A backup a principal asked for is on-demand: kept until the date they gave, not by the policy.
      const kind = run.onDemand ? { kind: 'OnDemand' as const, retainUntil: run.onDemand.retainUntil } : { kind: 'Scheduled' as const };
      const common = { client: opts.client, containerId: opts.state.containerId, keys: opts.state.keySet, agentDir: opts.agentDir, vaultId: opts.state.vaultId, ...kind };
      const source = run.source;
      let result: BackupResult;
      if ('vm' in source) result = await backupVm({ ...common, config: await requireVmConfig(opts.agentDir, source.vm) });
      else if ('db' in source) {
        const db = await import('./db/engine.js');
        result = await db.backupDb({ ...common, config: await db.requireDbConfig(opts.agentDir, source.db) }, source.backupType);
      } else result = await backupFiles({ ...common, item: run.item, paths: source.paths, excludes: source.excludes ?? [], ...optionsFromSource(source) });
      log(`${run.item}: point ${result.point.id}, ${result.counters.bytesNew} new bytes, ${result.warnings.length} warning(s)`);
      out.push({ item: run.item, scheduledAt: run.scheduledAt, ...('db' in run.source ? { backupType: run.source.backupType } : {}), result });
    } catch (e) {
      // One failed item must not stop the others; the vault holds the failed job.
      const error = { code: e instanceof CoffreError ? e.code : 'Internal', message: (e as Error).message };
      log(`${run.item}: failed: ${error.message}`);
      out.push({ item: run.item, scheduledAt: run.scheduledAt, ...('db' in run.source ? { backupType: run.source.backupType } : {}), error });
    }
  }
  return out;
}

export async function runDaemon(opts: DaemonOptions & { intervalMs: number; signal?: AbortSignal }): Promise<void> {
  const log = opts.log ?? (() => undefined);
  while (!opts.signal?.aborted) {
    try {
      await runDueOnce(opts);
    } catch (e) {
      // The vault may be down or restarting: keep polling, say why.
      log(`cannot reach the vault: ${(e as Error).message}; retrying in ${opts.intervalMs / 1000} s`);
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, opts.intervalMs);
      opts.signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
}
