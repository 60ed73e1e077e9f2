/**
 * What `coffre db protect` records about a database on its machine: how to connect, where its
 * data folder is, and the WAL spool its `archive_command` writes to. One JSON file per
 * database in the agent folder (mode 0600: the connection string may hold a password).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CoffreError } from '../../core/errors.js';
import { writeFileAtomic } from '../state.js';

const configSchema = z.strictObject({
  version: z.literal(1),
  name: z.string(),
  /** A libpq connection URL (postgres://user@host:port/db); a local socket or loopback. */
  connection: z.string(),
  /** The cluster's data folder, as the server reports it. */
  dataDir: z.string(),
  /** Where `coffre db archive-wal` keeps archived WAL until a log backup sends it. */
  spoolDir: z.string(),
  walSegmentSize: z.number().int().positive(),
  policy: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export type DbConfig = z.infer<typeof configSchema>;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const dbRoot = (agentDir: string) => join(agentDir, 'db');
const itemsDir = (agentDir: string) => join(dbRoot(agentDir), 'items');
const configFile = (agentDir: string, name: string) => join(itemsDir(agentDir), `${name}.json`);

export function checkDbName(name: string): void {
  if (!NAME.test(name)) throw new CoffreError('InvalidArgument', `database item name ${JSON.stringify(name)} is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
}

export async function saveDbConfig(agentDir: string, config: DbConfig): Promise<void> {
  checkDbName(config.name);
  await writeFileAtomic(configFile(agentDir, config.name), JSON.stringify(configSchema.parse(config), null, 2) + '\n');
}

export async function loadDbConfig(agentDir: string, name: string): Promise<DbConfig | null> {
  checkDbName(name);
  let text: string;
  try {
    text = await readFile(configFile(agentDir, name), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const parsed = configSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new CoffreError('InvalidArgument', `the protection settings of database ${name} (${configFile(agentDir, name)}) are damaged; run \`coffre db protect ${name} ...\` again`);
  return parsed.data;
}

export async function requireDbConfig(agentDir: string, name: string): Promise<DbConfig> {
  const c = await loadDbConfig(agentDir, name);
  if (!c) throw new CoffreError('ItemNotFound', `database ${name} is not protected on this machine; run \`coffre db protect ${name} --connection URL\` first`);
  return c;
}

export async function listDbConfigs(agentDir: string): Promise<DbConfig[]> {
  let names: string[];
  try {
    names = (await readdir(itemsDir(agentDir))).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: DbConfig[] = [];
  for (const n of names.sort()) {
    if (!NAME.test(n)) continue;
    const c = await loadDbConfig(agentDir, n);
    if (c) out.push(c);
  }
  return out;
}
