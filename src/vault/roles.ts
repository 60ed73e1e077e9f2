/**
 * Roles as data: which semantic operation each built-in role permits, and which scopes an
 * assignment covers. Pure, so the whole matrix is tested against a model written out by hand
 * in the test (shared/research/azure-backup-spec.md §3.1 is the source of the table).
 *
 * Authorisation is by *semantic* operation (stop protection and retain data, stop protection and
 * delete data, ...), not by HTTP verb: the same kind of call can be harmless or destructive, and
 * the table speaks of what a call does. Every route of the vault names one of these operations.
 */
import { CoffreError } from '../core/errors.js';

/** The operations of the role table, in its order, with the words the table uses. */
export const ROLE_OPERATIONS = {
  'vault.create': 'create vault',
  'vault.delete': 'delete vault',
  'policy.write': 'create / modify / delete policy',
  'protection.enable': 'enable protection',
  'backup.onDemand': 'on-demand backup',
  'restore': 'restore',
  'protection.stopRetain': 'stop protection, retain data',
  'protection.stopDelete': 'stop protection, delete data',
  'security.write': 'change security settings',
  'redundancy.write': 'change redundancy',
  'machine.register': 'register machine',
  'machine.unregister': 'unregister machine',
  'job.cancel': 'cancel job',
  'view': 'view',
  'access.grant': 'grant access',
} as const;

/**
 * Operations no role grants. A machine's agent key holds the first four for its own machine
 * only (it writes backups, never deletes); the guard of a vault approves its requests; a few
 * calls need no principal at all (health, registration with a credentials secret).
 */
export const OTHER_OPERATIONS = {
  'backup.upload': 'upload backup data and commit points (agent)',
  'job.report': 'report job progress (agent)',
  'schedule.poll': 'ask for and claim due backups (agent)',
  'machine.keys': 'store the machine\'s wrapped keys once (agent)',
  'guard.approve': 'approve a guarded request (the vault\'s guard)',
  'public': 'nothing (no principal needed)',
} as const;

export type RoleOperation = keyof typeof ROLE_OPERATIONS;
export type Operation = RoleOperation | keyof typeof OTHER_OPERATIONS;

export const ROLE_NAMES = ['Owner', 'Contributor', 'Reader', 'Backup Contributor', 'Backup Operator', 'Backup Reader'] as const;
export type RoleName = typeof ROLE_NAMES[number];

const ALL = Object.keys(ROLE_OPERATIONS) as RoleOperation[];

/** The built-in roles: exactly the table of §3.1. */
export const ROLES: Readonly<Record<RoleName, ReadonlySet<RoleOperation>>> = {
  'Owner': new Set(ALL),
  'Contributor': new Set(ALL.filter((op) => op !== 'access.grant')),
  'Reader': new Set<RoleOperation>(['view']),
  // "can't delete vaults and give access to others"
  'Backup Contributor': new Set(ALL.filter((op) => op !== 'vault.delete' && op !== 'access.grant')),
  // "everything except removal of backup, vault creation and giving access to others"; the
  // docs list stopping protection, policies, security settings and unregistering as beyond it.
  'Backup Operator': new Set<RoleOperation>(['protection.enable', 'backup.onDemand', 'restore', 'redundancy.write', 'machine.register', 'job.cancel', 'view']),
  'Backup Reader': new Set<RoleOperation>(['view']),
};

export function isRoleName(value: string): value is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(value);
}

export function isRoleOperation(value: string): value is RoleOperation {
  return Object.prototype.hasOwnProperty.call(ROLE_OPERATIONS, value);
}

export function roleAllows(role: RoleName, op: Operation): boolean {
  return isRoleOperation(op) && ROLES[role].has(op);
}

/** The roles that grant an operation, for messages ("granted by Owner, Contributor"). */
export function rolesGranting(op: Operation): RoleName[] {
  return ROLE_NAMES.filter((r) => roleAllows(r, op));
}

export function operationLabel(op: Operation): string {
  return isRoleOperation(op) ? ROLE_OPERATIONS[op] : OTHER_OPERATIONS[op];
}

// ---- scopes ----

/** A scope names everything ("/"), a subscription, or one vault of a subscription. */
export type Scope = { kind: 'root' } | { kind: 'subscription'; subscription: string } | { kind: 'vault'; subscription: string; vault: string };

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function parseScope(text: string): Scope {
  if (text === '/') return { kind: 'root' };
  const parts = text.split('/');
  const ok = parts[0] === '' && parts[1] === 'subscriptions' && parts[2] !== undefined && SEGMENT.test(parts[2]);
  if (ok && parts.length === 3) return { kind: 'subscription', subscription: parts[2]! };
  if (ok && parts.length === 5 && parts[3] === 'vaults' && SEGMENT.test(parts[4]!)) return { kind: 'vault', subscription: parts[2]!, vault: parts[4]! };
  throw new CoffreError('InvalidArgument', `scope ${JSON.stringify(text)} is not valid: use /, /subscriptions/ID or /subscriptions/ID/vaults/NAME`);
}

export function formatScope(s: Scope): string {
  if (s.kind === 'root') return '/';
  if (s.kind === 'subscription') return `/subscriptions/${s.subscription}`;
  return `/subscriptions/${s.subscription}/vaults/${s.vault}`;
}

export const vaultScope = (subscription: string, vault: string) => `/subscriptions/${subscription}/vaults/${vault}`;

/** An assignment at `assigned` reaches `target` when target is the same scope or lies under it. */
export function scopeCovers(assigned: string, target: string): boolean {
  const a = formatScope(parseScope(assigned));
  const t = formatScope(parseScope(target));
  return a === '/' || t === a || t.startsWith(a + '/');
}

export interface Assignment { role: RoleName; scope: string }

/** Whether any of the assignments permits `op` at `target`. */
export function permitted(assignments: readonly Assignment[], op: Operation, target: string): boolean {
  return assignments.some((a) => roleAllows(a.role, op) && scopeCovers(a.scope, target));
}
