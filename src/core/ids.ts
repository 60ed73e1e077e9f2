import { randomBytes } from 'node:crypto';

/** Random identifiers: 16 hex digits for what users type (points, jobs), longer for secrets. */
export function newId(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}
