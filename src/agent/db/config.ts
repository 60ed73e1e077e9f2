/**
 * What `coffre db protect` records about a database on its machine: how to connect, where its
 * data folder is, and the WAL spool its `archive_command` writes to. One JSON file per
 * database in the agent folder (mode 0600: the connection string may hold a password).
 */
import { join } from 'node:path';
import { z } from 'zod';
import { ItemSettings } from '../item-settings.js';

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

export const dbRoot = (agentDir: string) => join(agentDir, 'db');
const settings = new ItemSettings<DbConfig>((agentDir) => join(dbRoot(agentDir), 'items'), configSchema, {
  noun: 'database', protect: (name) => `coffre db protect ${name} --connection URL`,
});

export const checkDbName = (name: string): void => settings.checkName(name);
export const saveDbConfig = (agentDir: string, config: DbConfig): Promise<void> => settings.save(agentDir, config);
export const loadDbConfig = (agentDir: string, name: string): Promise<DbConfig | null> => settings.load(agentDir, name);
export const requireDbConfig = (agentDir: string, name: string): Promise<DbConfig> => settings.require(agentDir, name);
export const listDbConfigs = (agentDir: string): Promise<DbConfig[]> => settings.list(agentDir);
