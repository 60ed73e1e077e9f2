/**
 * What `coffre vm backup` prints, and its exit status, whether the backup ran in the command's
 * own process or in the running agent (the control socket): one function, so both print the
 * same. Light on purpose (output.ts and types only): the agent path loads it, not the engine.
 */
import type { JobInfo } from '../core/api.js';
import type { VmBackupShown } from '../agent/control/protocol.js';
import { formatBytes, jobSummary, table } from './output.js';

/** Exit status of a job that completed with warnings (as `coffre backup`). */
export const EXIT_WARNINGS = 4;

/** The command's stdout (`policyLine`: the policy note, when the VM's policy is not yet applied) and exit status. */
export function renderVmBackup(job: JobInfo, r: VmBackupShown, json: boolean, policyLine?: string): { stdout: string; exitCode: number } {
  const exitCode = job.status === 'CompletedWithWarnings' ? EXIT_WARNINGS : 0;
  if (json) return { stdout: JSON.stringify(job, null, 2) + '\n', exitCode };
  const lines = [jobSummary(job), `  point ${r.point.id}: ${r.consistency}-consistent, ${r.disks.length} disk(s), ${formatBytes(r.point.bytes)}, kept until ${r.point.expiresAt}`];
  lines.push(table(['disk', 'path', 'format', 'size', 'read', 'blocks', 'zero', 'changed', 'new', 'sent', 'snapshot'], r.disks.map((d) => [
    d.index, d.path, d.format, formatBytes(d.size), `${formatBytes(d.bytesScanned)} (${d.changeTracking.mode})`, d.blocks, d.zeroBlocks, d.changedBlocks, formatBytes(d.bytesNew), formatBytes(d.bytesUploaded), d.snapshot,
  ])));
  for (const d of r.disks) if (d.changeTracking.reason) lines.push(`  disk ${d.index} read in full: ${d.changeTracking.reason}`);
  for (const n of r.notes) lines.push(`  ${n}`);
  lines.push(r.snapshot ? `  instant restore from the local snapshot (${r.snapshot.method === 'internal' ? 'internal qcow2 snapshot' : r.snapshot.method}) until ${r.snapshot.expiresAt}` : '  no instant-restore snapshot kept (see above)');
  if (policyLine) lines.push(`  ${policyLine}`);
  return { stdout: lines.join('\n') + '\n', exitCode };
}
