/**
 * One error type for the whole system. The `code` is stable and shared by the HTTP API
 * (`{ "error": { "code", "message" } }`) and the CLI (one line on stderr, non-zero exit):
 * scripts and other tools match on it, never on the message.
 */
export const ERROR_CODES = {
  BadRequest: 400,
  InvalidArgument: 400,
  InvalidPolicy: 400,
  PassphraseTooShort: 400,
  PassphraseWrong: 401,
  Unauthorized: 401,
  CredentialsExpired: 401,
  CredentialsInvalid: 401,
  Forbidden: 403,
  NotFound: 404,
  VaultNotFound: 404,
  ItemNotFound: 404,
  PointNotFound: 404,
  JobNotFound: 404,
  PolicyNotFound: 404,
  ChunkMissing: 409,
  VaultExists: 409,
  PolicyExists: 409,
  ItemOwnedElsewhere: 409,
  NotRegistered: 412,
  VaultLimitReached: 409,
  ChecksumMismatch: 422,
  ManifestInvalid: 422,
  PackInvalid: 422,
  ServerUnreachable: 503,
  Internal: 500,
  /** The snapshot asked for (`--snapshot btrfs|lvm|zfs`) cannot be made of this path. */
  SnapshotUnavailable: 409,
  /** Making a volume snapshot failed (the tool's message says why); nothing was read. */
  SnapshotFailed: 500,
  /** A snapshot stopped being one instant while it was read (an LVM snapshot filled up): no point was made. */
  SnapshotInvalid: 409,
  // Access and protection (roles, lifecycle, soft delete, immutability, the guard, TLS).
  PrincipalExists: 409,
  PrincipalNotFound: 404,
  VaultNotEmpty: 409,
  MachineNotFound: 404,
  MachineHasItems: 409,
  RedundancyLocked: 409,
  PolicyInUse: 409,
  ProtectionStopped: 409,
  ItemSoftDeleted: 409,
  ItemStateInvalid: 409,
  VaultImmutable: 409,
  ImmutabilityLocked: 409,
  SoftDeleteAlwaysOn: 409,
  GuardApprovalRequired: 403,
  GuardRequestPending: 403,
  GuardRequestExpired: 403,
  GuardRequestUsed: 409,
  GuardRequestMismatch: 409,
  GuardRequestNotFound: 404,
  GuardSelfApproval: 403,
  JobNotCancellable: 409,
  JobCancelled: 409,
  // Raised by the client before any request: the server is not the one it pins (or not trusted).
  CertificateMismatch: 401,
  CertificateUntrusted: 401,
  DatabaseNotReady: 412,
  DatabaseUnreachable: 503,
  TimeNotRestorable: 409,
  ChainIncomplete: 409,
  WalGap: 409,
  WalOverlap: 409,
  WalNotArchived: 504,
  BackupInProgress: 409,
  StorageFull: 507,
  StorageUnavailable: 503,
  StorageError: 502,
  NotReplicated: 409,
  CrossRegionRestoreDisabled: 409,
  ConfigInvalid: 400,
  /** No restore request with this id (or not one this principal may see). */
  RestoreRequestNotFound: 404,
  // The backup server (two tiers): registered servers, protection groups, online copies.
  ServerNotFound: 404,
  /** A machine of the backup server exists in the vault with other keys, or is another server's. */
  ServerContainerConflict: 409,
  GroupNotFound: 404,
  GroupExists: 409,
  GroupNotEmpty: 409,
  ItemInGroup: 409,
  /** QEMU (QMP, NBD, qemu-img, qemu-nbd) refused or failed an operation on a VM's disks. */
  HypervisorError: 502,
  /** The VM's QEMU (its QMP or NBD socket) cannot be reached. */
  HypervisorUnreachable: 503,
  /** Another backup of the same item is running on this machine. */
  ItemBusy: 409,
  // Scale-out (the catalog on PostgreSQL, several nodes).
  /** The catalog was migrated by a newer Coffre than this one: upgrade this node (nothing was changed). */
  CatalogTooNew: 409,
  /** The catalog database cannot be reached or refused the connection. */
  CatalogUnavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class CoffreError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'CoffreError';
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code];
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: unknown } } {
    return { error: { code: this.code, message: this.message, ...(this.details === undefined ? {} : { details: this.details }) } };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** Exit codes scripts can rely on: 1 = operation failed, 2 = usage/argument error, 3 = auth/access. */
export function exitCodeFor(code: ErrorCode): number {
  const status = ERROR_CODES[code];
  if (code === 'InvalidArgument' || code === 'BadRequest' || code === 'InvalidPolicy' || code === 'PassphraseTooShort' || code === 'ConfigInvalid') return 2;
  if (status === 401 || status === 403) return 3;
  return 1;
}
