/** `coffre vault show` and `coffre vault set`: a vault's redundancy, cross-region restore, and the state of its copies. */
import { Option, type Command } from 'commander';
import type { VaultDetails } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { adminClient, type GlobalOptions } from './context.js';
import { formatBytes, printJson } from './output.js';

function describe(v: VaultDetails): string {
  const r = v.replication;
  const lines = [
    `vault ${v.name} (${v.id}), subscription ${v.subscription}`,
    `  redundancy         ${v.redundancy}${v.redundancyLocked ? ' (locked: items are protected)' : ' (can still change)'}`,
    `  cross-region restore ${v.crossRegionRestore ? 'enabled' : 'disabled'}`,
    `  stores             ${v.stores.map((s) => `${s.name} (${s.role})`).join(', ')}`,
  ];
  if (v.redundancy === 'GRS') lines.push(`  replication        ${r.pendingObjects} object(s), ${formatBytes(r.pendingBytes)} to copy; oldest waiting ${r.oldestPendingSeconds} s`);
  if (v.redundancy === 'ZRS') lines.push(`  zone repair        ${v.zoneRepair.pendingObjects} object(s), ${formatBytes(v.zoneRepair.pendingBytes)} to copy to a zone that missed them`);
  return lines.join('\n') + '\n';
}

export function registerVaultStorageCommands(vault: Command, g: () => GlobalOptions): void {
  vault.command('show <name>')
    .description('a vault\'s redundancy, cross-region restore, stores, and replication lag')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const v = await (await adminClient(g())).showVault(name);
      if (o.json) printJson(v);
      else process.stdout.write(describe(v));
    });

  vault.command('set <name>')
    .description('change a vault\'s redundancy (until its first item is protected) or cross-region restore (GRS only)')
    .addOption(new Option('--redundancy <kind>', 'storage redundancy').choices(['LRS', 'ZRS', 'GRS']))
    .option('--cross-region-restore', 'allow restores from the secondary region (GRS only)')
    .option('--no-cross-region-restore', 'stop allowing restores from the secondary region')
    .option('--json', 'print the vault as JSON')
    .action(async (name: string, o: { redundancy?: string; crossRegionRestore?: boolean; json?: boolean }, cmd: Command) => {
      // Commander gives --no-X a default of true: only an option the user typed counts.
      const crr = cmd.getOptionValueSource('crossRegionRestore') === 'cli' ? o.crossRegionRestore : undefined;
      if (!o.redundancy && crr === undefined) throw new CoffreError('InvalidArgument', 'nothing to change: give --redundancy LRS|ZRS|GRS, --cross-region-restore or --no-cross-region-restore');
      const v = await (await adminClient(g())).setVault(name, { ...(o.redundancy ? { redundancy: o.redundancy } : {}), ...(crr !== undefined ? { crossRegionRestore: crr } : {}) });
      if (o.json) printJson(v);
      else process.stdout.write(describe(v));
    });
}
