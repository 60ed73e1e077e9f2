/**
 * What `coffre vm protect` records about a VM: its disks, scripts, freeze path and policy.
 * It lives in the agent folder (the agent runs next to the VM), one JSON file per VM. A VM
 * protected with --qmp is reached through its QEMU: its disks are QEMU block nodes.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CoffreError } from '../../core/errors.js';
import { writeFileAtomic } from '../state.js';

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
const itemsDir = (agentDir: string) => join(vmRoot(agentDir), 'items');
const configFile = (agentDir: string, name: string) => join(itemsDir(agentDir), `${name}.json`);

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export function checkVmName(name: string): void {
  if (!NAME.test(name)) throw new CoffreError('InvalidArgument', `VM name ${JSON.stringify(name)} is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
}

export async function saveVmConfig(agentDir: string, config: VmConfig): Promise<void> {
  checkVmName(config.name);
  await writeFileAtomic(configFile(agentDir, config.name), JSON.stringify(configSchema.parse(config), null, 2) + '\n');
}

export async function loadVmConfig(agentDir: string, name: string): Promise<VmConfig | null> {
  checkVmName(name);
  let text: string;
  try {
    text = await readFile(configFile(agentDir, name), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const parsed = configSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new CoffreError('InvalidArgument', `the protection settings of VM ${name} (${configFile(agentDir, name)}) are damaged; run \`coffre vm protect ${name} ...\` again`);
  return parsed.data;
}

export async function requireVmConfig(agentDir: string, name: string): Promise<VmConfig> {
  const c = await loadVmConfig(agentDir, name);
  if (!c) throw new CoffreError('ItemNotFound', `VM ${name} is not protected on this machine; run \`coffre vm protect ${name} --disk IMAGE\` first`);
  return c;
}

export async function listVmConfigs(agentDir: string): Promise<VmConfig[]> {
  let names: string[];
  try {
    names = (await readdir(itemsDir(agentDir))).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: VmConfig[] = [];
  for (const n of names.sort()) {
    if (!NAME.test(n)) continue;
    const c = await loadVmConfig(agentDir, n);
    if (c) out.push(c);
  }
  return out;
}

