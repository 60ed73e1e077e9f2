/** What the `coffre vm` commands run, gathered so the CLI loads it only when a vm command runs. */
export { checkVmName, listVmConfigs, loadVmConfig, requireVmConfig, saveVmConfig } from './config.js';
export { probeDisk } from './disk-source.js';
export { extractFiles, listFiles } from './file-recovery.js';
export { defaultSnapshotRoot, listSnapshots, sweepSnapshots } from './snapshot-store.js';
export { backupVm } from './vm-backup.js';
export { discoverQemuDisks } from './live-discovery.js';
export { restoreVm } from './vm-restore.js';
