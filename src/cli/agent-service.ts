/**
 * What a running agent (`coffre agent run`) does for `coffre vm backup` asked through its
 * control socket (agent-first.ts is the asking side): the command's own steps, in the resident
 * process, and the job and backup sent back for the command to print (vm-backup-output.ts).
 *
 * Same steps as the in-process command: the option values through the same parsers, expired
 * snapshots swept, the VM's configuration read, an on-demand backup. It declines (the command
 * then runs in its own process) what would print differently from here: option values the
 * parsers reject (the command prints the usage error) and a VM whose policy is not yet applied
 * in the vault (applying it needs the caller's administrator token, which the agent has not).
 */
import { InvalidArgumentError } from 'commander';
import { systemClock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import type { VaultClient } from '../agent/client.js';
import type { AgentState } from '../agent/state.js';
import type { KeySet } from '../core/crypto.js';
import type { ControlReply, ControlRequest } from '../agent/control/protocol.js';
import { retainUntil, seconds } from './arguments.js';

export interface AgentServiceContext {
  client: VaultClient;
  state: AgentState & { keySet: KeySet };
  agentDir: string;
  log: (line: string) => void;
}

/** Progress lines at most this often: a bar redraws no faster, and each line costs a write. */
const PROGRESS_EVERY_MS = 200;

/**
 * When this machine protects VMs: loads the VM engine and touches the buffers of an
 * incremental ahead of the first request, so that neither is part of that backup's time.
 */
export async function warmUp(agentDir: string): Promise<void> {
  const [{ listVmConfigs }, { warmIncrementalBuffers }] = await Promise.all([import('../agent/vm/config.js'), import('../agent/vm/block-encoder.js')]);
  const vms = await listVmConfigs(agentDir);
  if (!vms.length) return;
  await Promise.all([import('../agent/vm/vm-backup.js'), import('../agent/vm/snapshot-store.js'), import('../agent/vm/live-disks.js')]);
  warmIncrementalBuffers(Math.max(...vms.map((v) => v.blockSize)));
}

export async function serveRequest(request: ControlRequest, ctx: AgentServiceContext, reply: (r: ControlReply) => void): Promise<void> {
  let retain: string | undefined;
  let timeout: number | undefined;
  try {
    if (request.retainUntil !== undefined) retain = retainUntil(request.retainUntil);
    if (request.scriptTimeout !== undefined) timeout = seconds(request.scriptTimeout);
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    reply({ type: 'declined', reason: e.message });
    return;
  }
  try {
    const [{ requireVmConfig }, { backupVm }, { sweepSnapshots }] = await Promise.all([import('../agent/vm/config.js'), import('../agent/vm/vm-backup.js'), import('../agent/vm/snapshot-store.js')]);
    await sweepSnapshots(ctx.agentDir, systemClock);
    const config = await requireVmConfig(ctx.agentDir, request.name);
    if (config.policy && !config.policyAssigned) {
      reply({ type: 'declined', reason: `the policy of VM ${config.name} is not applied in the vault yet` });
      return;
    }
    ctx.log(`backing up ${config.name} (asked for through the control socket)`);
    let last = 0;
    const result = await backupVm({
      client: ctx.client, containerId: ctx.state.containerId, keys: ctx.state.keySet, agentDir: ctx.agentDir, vaultId: ctx.state.vaultId, config, kind: 'OnDemand',
      ...(retain ? { retainUntil: retain } : {}), ...(timeout ? { scriptTimeoutSeconds: timeout } : {}),
      onProgress: (c) => {
        if (!request.progress || Date.now() - last < PROGRESS_EVERY_MS) return;
        last = Date.now();
        reply({ type: 'progress', counters: c });
      },
    });
    const job = await ctx.client.getJob(result.jobId);
    ctx.log(`${config.name}: point ${result.point.id} (job ${result.jobId}), ${result.counters.bytesNew} new bytes, ${result.warnings.length} warning(s)`);
    reply({ type: 'result', job, backup: { point: result.point, consistency: result.consistency, disks: result.disks, notes: result.notes, snapshot: result.snapshot } });
  } catch (e) {
    ctx.log(`${request.name}: failed: ${(e as Error).message}`);
    reply(e instanceof CoffreError ? { type: 'error', code: e.code, message: e.message } : { type: 'error', code: null, message: (e as Error).message });
  }
}
