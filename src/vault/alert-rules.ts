/**
 * The alert rules, as a pure function from what the catalog says now to the alerts that
 * should be active now. Each alert has a key (the item, the vault, the operation...) that
 * identifies "the same problem": alerts.ts keeps at most one active alert per rule and key, so
 * a backup that fails every night is one alert whose occurrences grow, not a new alert a day.
 *
 * Rules and keys:
 * - JobFailed (warning): jobs of one operation on one item (or, for prune and GC, one vault)
 *   failed since that operation last succeeded there; resolved by the next success.
 * - MissedSchedule (critical): a scheduled run of an item found no agent since its last success.
 * - RpoBreach (critical): the item's last success is older than its schedule allows.
 * - VerifyFailed (critical): the latest verification of a vault (or of one of its items) found
 *   damaged or missing data, and no later verification of the whole vault passed.
 * - StorageAboveThreshold (warning): a vault stores more bytes than its threshold.
 * - ReplicationLag (warning): the oldest copy a GRS vault still owes its paired region has
 *   waited longer than allowed; resolved once the replicator has caught up that far.
 */
import type { JobProblem, Operation } from '../core/api.js';
import type { AlertRule, AlertSettings, AlertSeverity } from '../core/monitor-api.js';
import type { ItemState } from './protected-items.js';

export interface DesiredAlert {
  rule: AlertRule;
  key: string;
  severity: AlertSeverity;
  vaultId: string | null;
  itemId: string | null;
  summary: string;
  details: Record<string, unknown>;
  occurrences: number;
}

export interface FailedJobs {
  operation: Operation;
  vaultId: string;
  vault: string;
  itemId: string | null;
  item: string | null;
  jobs: { id: string; endTime: string; error: JobProblem | null }[];
}

export interface EndedVerify { id: string; vaultId: string; vault: string; itemId: string | null; item: string | null; status: string; endTime: string; error: JobProblem | null }

export interface VaultStorage { id: string; name: string; storedBytes: number }

/** What a vault that replicates to a paired region still has to copy there. */
export interface VaultReplication { id: string; name: string; pendingObjects: number; pendingBytes: number; oldestPendingSeconds: number }

export interface RuleInputs {
  items: ItemState[];
  /** Failures of operations other than backups and verifications, since their last success. */
  otherFailures: FailedJobs[];
  verifies: EndedVerify[];
  vaults: VaultStorage[];
  /** Vaults with a paired region only. */
  replication: VaultReplication[];
  settings: AlertSettings;
}

const describeError = (e: JobProblem | null) => (e ? `[${e.code}] ${e.message}` : 'no error recorded');

function itemAlerts(items: ItemState[]): DesiredAlert[] {
  const out: DesiredAlert[] = [];
  for (const it of items) {
    const s = it.status;
    const where = `${s.name} (vault ${s.vault}, machine ${s.machine})`;
    const base = { vaultId: it.vaultId, itemId: s.id };
    for (const c of it.conditions) {
      if (c.rule === 'RpoBreach') {
        out.push({ ...base, rule: 'RpoBreach', key: s.id, severity: 'critical', summary: `${where}: recovery point objective breached: ${c.reason}`,
          details: { item: s.name, vault: s.vault, dueBy: s.rpo.dueBy, lastSuccess: s.rpo.lastSuccess, policy: s.policy }, occurrences: c.occurrences });
      } else if (c.rule === 'MissedSchedule') {
        out.push({ ...base, rule: 'MissedSchedule', key: s.id, severity: 'critical', summary: `${where}: ${c.reason}`,
          details: { item: s.name, vault: s.vault, policy: s.policy }, occurrences: c.occurrences });
      } else if (c.rule === 'JobFailed') {
        out.push({ ...base, rule: 'JobFailed', key: `Backup:${s.id}`, severity: 'warning', summary: `${where}: ${c.reason}`,
          details: { operation: 'Backup', item: s.name, vault: s.vault, lastJob: s.lastBackup?.jobId ?? null }, occurrences: c.occurrences });
      }
    }
  }
  return out;
}

function failureAlerts(groups: FailedJobs[]): DesiredAlert[] {
  return groups.filter((g) => g.jobs.length > 0).map((g) => {
    const last = g.jobs[g.jobs.length - 1]!;
    const scope = g.item ? `${g.item} (vault ${g.vault})` : `vault ${g.vault}`;
    return {
      rule: 'JobFailed', key: `${g.operation}:${g.itemId ?? g.vaultId}`, severity: 'warning', vaultId: g.vaultId, itemId: g.itemId,
      summary: `${scope}: ${g.jobs.length} ${g.operation.toLowerCase()} job(s) failed since the last success, latest: ${describeError(last.error)}`,
      details: { operation: g.operation, item: g.item, vault: g.vault, lastJob: last.id }, occurrences: g.jobs.length,
    };
  });
}

function verifyAlerts(verifies: EndedVerify[]): DesiredAlert[] {
  const latest = new Map<string, EndedVerify>();
  const wholeVaultPass = new Map<string, string>();
  for (const v of [...verifies].sort((a, b) => a.endTime.localeCompare(b.endTime))) {
    latest.set(`${v.vaultId}:${v.itemId ?? '*'}`, v);
    if (v.itemId === null && v.status !== 'Failed') wholeVaultPass.set(v.vaultId, v.endTime);
  }
  const out: DesiredAlert[] = [];
  for (const [key, v] of latest) {
    if (v.status !== 'Failed') continue;
    const passedSince = wholeVaultPass.get(v.vaultId);
    if (passedSince !== undefined && passedSince > v.endTime) continue;
    out.push({
      rule: 'VerifyFailed', key, severity: 'critical', vaultId: v.vaultId, itemId: v.itemId,
      summary: `${v.item ? `${v.item} (vault ${v.vault})` : `vault ${v.vault}`}: verification found damaged or missing data: ${describeError(v.error)}`,
      details: { vault: v.vault, item: v.item, job: v.id }, occurrences: 1,
    });
  }
  return out;
}

function storageAlerts(vaults: VaultStorage[], settings: AlertSettings): DesiredAlert[] {
  const out: DesiredAlert[] = [];
  for (const v of vaults) {
    const threshold = settings.vaultStorageThresholdBytes[v.name] ?? settings.storageThresholdBytes;
    if (threshold === null || threshold === undefined || v.storedBytes <= threshold) continue;
    out.push({
      rule: 'StorageAboveThreshold', key: v.id, severity: 'warning', vaultId: v.id, itemId: null,
      summary: `vault ${v.name} stores ${v.storedBytes} bytes, above its threshold of ${threshold} bytes`,
      details: { vault: v.name, storedBytes: v.storedBytes, thresholdBytes: threshold }, occurrences: 1,
    });
  }
  return out;
}

function replicationAlerts(vaults: VaultReplication[], settings: AlertSettings): DesiredAlert[] {
  const allowed = settings.replicationLagSeconds;
  if (allowed === null) return [];
  return vaults.filter((v) => v.pendingObjects > 0 && v.oldestPendingSeconds > allowed).map((v) => ({
    rule: 'ReplicationLag', key: v.id, severity: 'warning', vaultId: v.id, itemId: null,
    summary: `vault ${v.name}: ${v.pendingObjects} object(s) (${v.pendingBytes} bytes) not yet copied to the paired region, the oldest waiting for ${v.oldestPendingSeconds} s (allowed: ${allowed} s); is the secondary region's store reachable?`,
    details: { vault: v.name, pendingObjects: v.pendingObjects, pendingBytes: v.pendingBytes, oldestPendingSeconds: v.oldestPendingSeconds, allowedSeconds: allowed },
    occurrences: 1,
  }));
}

export function evaluateRules(input: RuleInputs): DesiredAlert[] {
  const all = [
    ...itemAlerts(input.items),
    ...failureAlerts(input.otherFailures),
    ...verifyAlerts(input.verifies),
    ...storageAlerts(input.vaults, input.settings),
    ...replicationAlerts(input.replication, input.settings),
  ];
  const disabled = new Set(input.settings.disabledRules);
  return all.filter((a) => !disabled.has(a.rule));
}
