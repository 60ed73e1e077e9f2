/**
 * `coffre server status [--json]`: the deployment as the node asked sees it — live nodes, who
 * holds each lease, and the catalog's engine and schema version. Registered under `server` by
 * one call from main.ts.
 */
import type { Command } from 'commander';
import { adminClient, type GlobalOptions } from './context.js';
import { printJson, table } from './output.js';

export function registerServerStatus(server: Command, g: () => GlobalOptions): void {
  server.command('status')
    .description('show the nodes sharing this server\'s catalog, which node holds each lease, and the catalog\'s engine and schema version')
    .option('--json', 'print JSON: node, catalog {engine, schemaVersion, codeSchemaVersion, location}, nodes [{id, url, startedAt, heartbeat, live, self}], leases [{name, holder, holderUrl, expiresAt, acquiredAt}]')
    .action(async (o: { json?: boolean }) => {
      const s = await (await adminClient(g())).clusterStatus();
      if (o.json) return printJson(s);
      process.stdout.write(`catalog: ${s.catalog.engine} ${s.catalog.location}, schema version ${s.catalog.schemaVersion} (this node's code: ${s.catalog.codeSchemaVersion})\n`
        + `answered by node ${s.node.id} at ${s.node.url}\n\n`
        + table(['node', 'url', 'live', 'started', 'heartbeat'], s.nodes.map((n) => [n.id + (n.self ? ' *' : ''), n.url, n.live ? 'yes' : 'no', n.startedAt, n.heartbeat])) + '\n\n'
        + table(['lease', 'holder', 'url', 'expires'], s.leases.map((l) => [l.name, l.holder, l.holderUrl ?? '', l.expiresAt])) + '\n');
    });
}
