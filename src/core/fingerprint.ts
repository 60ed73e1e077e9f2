/**
 * Certificate fingerprints as people read and paste them. A fingerprint is the SHA-256 of the
 * certificate (DER), shown as 32 colon-separated hex pairs, the form `openssl x509 -fingerprint
 * -sha256` and Node print; comparisons ignore case and colons so either form pastes.
 */
import { X509Certificate } from 'node:crypto';
import { CoffreError } from './errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** "AB:CD:…" or "abcd…" → "AB:CD:…"; refuses anything that is not a SHA-256. */
export function normalizeFingerprint(text: string): string {
  const hex = text.trim().replace(/^sha256[:=]?/i, '').replace(/:/g, '').toLowerCase();
  if (!HEX64.test(hex)) {
    throw new CoffreError('InvalidArgument', `${JSON.stringify(text)} is not a SHA-256 certificate fingerprint (64 hex digits, colons allowed); \`coffre server\` prints its fingerprint`);
  }
  return hex.toUpperCase().match(/../g)!.join(':');
}

export function fingerprintOfPem(pem: string | Buffer): string {
  return normalizeFingerprint(new X509Certificate(pem).fingerprint256);
}
