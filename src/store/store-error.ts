/**
 * Errors of the store layer. Drivers translate what their backend says (errno, HTTP status,
 * service error code) into one of four codes and say whether trying again may help; wrappers
 * decide on that flag alone, never on a message. Every error names the store and the key so
 * that an operator knows which disk or bucket to look at.
 */
import { CoffreError } from '../core/errors.js';

export type StoreErrorCode = 'NotFound' | 'StorageFull' | 'StorageUnavailable' | 'StorageError' | 'ChecksumMismatch';

export class StoreFailure extends CoffreError {
  constructor(
    code: StoreErrorCode,
    readonly store: string,
    readonly key: string | undefined,
    message: string,
    /** Whether the same request may succeed if tried again (a timeout, a reset, a 5xx). */
    readonly transient: boolean,
    cause?: unknown,
  ) {
    super(code, message, { store, ...(key !== undefined ? { key } : {}) });
    if (cause !== undefined) this.cause = cause;
  }
}

const where = (store: string, key?: string) => `store ${store}${key !== undefined ? `, object ${key}` : ''}`;

export function notFound(store: string, key: string): StoreFailure {
  return new StoreFailure('NotFound', store, key, `object ${key} is missing from store ${store}`, false);
}

export function truncated(store: string, key: string): StoreFailure {
  return new StoreFailure('ChecksumMismatch', store, key, `object ${key} in store ${store} is shorter than expected (truncated?)`, false);
}

export function storageFull(store: string, key: string | undefined, cause?: unknown): StoreFailure {
  return new StoreFailure('StorageFull', store, key,
    `${where(store, key)}: the store is full; free space (run \`coffre prune\` and \`coffre gc\`, or grow the disk or quota) and run the operation again — nothing was lost`,
    false, cause);
}

export function unavailable(store: string, key: string | undefined, why: string, transient: boolean, cause?: unknown): StoreFailure {
  return new StoreFailure('StorageUnavailable', store, key, `${where(store, key)}: the store is unavailable (${why})`, transient, cause);
}

export function storageError(store: string, key: string | undefined, why: string, transient: boolean, cause?: unknown): StoreFailure {
  return new StoreFailure('StorageError', store, key, `${where(store, key)}: ${why}`, transient, cause);
}

export function isTransient(e: unknown): boolean {
  return e instanceof StoreFailure && e.transient;
}

export function isNotFound(e: unknown): boolean {
  return e instanceof CoffreError && e.code === 'NotFound';
}

/** A copy that cannot be reached now (as opposed to one that answered "missing" or "damaged"). */
export function isUnavailable(e: unknown): boolean {
  return e instanceof CoffreError && (e.code === 'StorageUnavailable' || e.code === 'StorageError' || e.code === 'StorageFull');
}

/** Node's network errnos that say "the other side or the path to it failed, try again". */
export const TRANSIENT_ERRNOS = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);

/** Maps an HTTP status of an object service (Azure Blob, S3) to our error, for drivers. */
export function fromHttpStatus(store: string, key: string | undefined, status: number, serviceCode: string | undefined, cause: unknown): StoreFailure {
  const what = `${serviceCode ?? 'HTTP'} ${status}`;
  if (status === 507 || serviceCode === 'XMinioStorageFull' || serviceCode === 'QuotaExceeded' || serviceCode === 'AccountIsFull') return storageFull(store, key, cause);
  if (status === 408 || status === 429 || status >= 500) return unavailable(store, key, what, true, cause);
  if (status === 401 || status === 403) return storageError(store, key, `access denied (${what}): check the store's credentials`, false, cause);
  return storageError(store, key, `the service refused the request (${what})`, false, cause);
}
