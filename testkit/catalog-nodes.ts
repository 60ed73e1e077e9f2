/**
 * Several `coffre server` nodes in this process on one catalog, for the scale-out tests: on
 * PostgreSQL, N nodes sharing a database of a test cluster and one store; on SQLite, the
 * embedded default, one node. Every node has its own data folder but the same admin token and
 * the same TLS certificate (as a deployment behind a load balancer has), so one pinned client
 * configuration reaches all of them.
 */
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Clock } from '../src/core/clock.js';
import { startServer, type RunningServer } from '../src/vault/server.js';
import type { PgCluster } from './postgres.js';

export type EngineName = 'sqlite' | 'postgresql';

let databases = 0;

/** A fresh database on a test cluster; its connection URL. */
export async function createDatabase(cluster: PgCluster, prefix = 'coffre'): Promise<string> {
  const name = `${prefix}_${process.pid}_${databases++}`;
  await cluster.query(`CREATE DATABASE ${name}`);
  return `postgresql://postgres@127.0.0.1:${cluster.port}/${name}`;
}

export interface Nodes { servers: RunningServer[]; catalog: string | undefined; store: string; close(): Promise<void> }

export async function startNodes(dir: string, opts: { catalog?: string | undefined; count: number; clock?: Clock }): Promise<Nodes> {
  const store = pathToFileURL(join(dir, 'store')).href;
  const servers: RunningServer[] = [];
  try {
    for (let i = 0; i < opts.count; i++) {
      const dataDir = join(dir, `node-${i}`);
      if (i > 0) {
        await mkdir(dataDir, { recursive: true, mode: 0o700 });
        await writeFile(join(dataDir, 'admin.token'), servers[0]!.adminToken + '\n', { mode: 0o600 });
        await cp(join(servers[0]!.dataDir, 'tls'), join(dataDir, 'tls'), { recursive: true });
      }
      servers.push(await startServer({
        dataDir, listen: '127.0.0.1:0', store, log: () => undefined,
        ...(opts.catalog ? { catalog: opts.catalog } : {}), ...(opts.clock ? { clock: opts.clock } : {}),
      }));
    }
  } catch (e) {
    for (const s of servers) await s.close();
    throw e;
  }
  return {
    servers, catalog: opts.catalog, store,
    async close() {
      for (const s of servers) await s.close();
    },
  };
}
