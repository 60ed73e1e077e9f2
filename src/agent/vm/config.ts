/**
 * What `coffre vm protect` records about a VM: its disks, scripts, freeze path and policy.
 * It lives in the agent folder (the agent runs next to the VM), one JSON file per VM. A VM
 * protected with --qmp is reached through its QEMU: its disks are QEMU block nodes.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { ItemSettings } from '../item-settings.js';

export { DEFAULT_BLOCK_SIZE, DEFAULT_INSTANT_RESTORE_DAYS, DEFAULT_SCRIPT_TIMEOUT_SECONDS } from './limits.js';

const configSchema = z.strictObject({
  version: z.literal(1),
  name: z.string(),
  /** The disks in the VM's order: image files or devices, or (with `qmp`) the QEMU node behind each image. */
  disks: z.array(z.strictObject({ path: z.string(), node: z.string().optional() })).min(1),
  /** QEMU's QMP socket: disks are read through QEMU (dirty bitmaps, point-in-time NBD exports). */
  qmp: z.string().optional(),
  /** The unix socket of an NBD server the VM's QEMU already runs (otherwise Coffre starts and stops its own). */
  nbdSocket: z.string().optional(),
  /** The QEMU guest agent's socket: guest-fsfreeze-freeze/thaw around the snapshot (filesystem consistency). */
  guestAgent: z.string().optional(),
  preScript: z.string().optional(),
  postScript: z.string().optional(),
  freezePath: z.string().optional(),
  scriptTimeoutSeconds: z.number().positive(),
  blockSize: z.number().int().positive(),
  /** The policy asked for at protect time. */
  policy: z.string().optional(),
  /** Whether the vault applies `policy` to the item (assigning needs an administrator). */
  policyAssigned: z.boolean(),
  /** Where instant-restore snapshots go (default: the agent folder); put it on the disks' file system for reflink clones. */
  snapshotDir: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export type VmConfig = z.infer<typeof configSchema>;

export const vmRoot = (agentDir: string) => join(agentDir, 'vm');
const settings = new ItemSettings<VmConfig>((agentDir) => join(vmRoot(agentDir), 'items'), configSchema, {
  noun: 'VM', protect: (name) => `coffre vm protect ${name} --disk IMAGE`,
});

export const checkVmName = (name: string): void => settings.checkName(name);
export const saveVmConfig = (agentDir: string, config: VmConfig): Promise<void> => settings.save(agentDir, config);
export const loadVmConfig = (agentDir: string, name: string): Promise<VmConfig | null> => settings.load(agentDir, name);
export const requireVmConfig = (agentDir: string, name: string): Promise<VmConfig> => settings.require(agentDir, name);
export const listVmConfigs = (agentDir: string): Promise<VmConfig[]> => settings.list(agentDir);
