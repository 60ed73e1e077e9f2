/**
 * The vault's TLS identity. `coffre server` speaks HTTPS: with the certificate and key the
 * operator gives (--tls-cert/--tls-key), or else with a self-signed certificate made on first
 * start and kept in the data folder. Agents do not need a CA for it: they pin the certificate's
 * SHA-256 fingerprint, which travels in the vault credentials file (Proxmox Backup Server's
 * habit), so a fresh install is encrypted and authenticated in transit from the first command.
 *
 * The key is an ECDSA P-256 key made by Node's WebCrypto and the certificate is written by
 * @peculiar/x509 (about 100 ms on first start, nothing after). Plain HTTP is for loopback only.
 */
import { KeyObject, webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { CoffreError } from '../core/errors.js';
import { fingerprintOfPem } from '../core/fingerprint.js';
import { writeFileAtomic } from '../core/atomic-file.js';

export const TLS_DIR = 'tls';
export const CERT_FILE = 'cert.pem';
export const KEY_FILE = 'key.pem';
/** Long enough never to surprise an operator; pinning, not expiry, is what the agent checks. */
const SELF_SIGNED_YEARS = 20;

export interface TlsIdentity { cert: string; key: string; fingerprint: string; certFile: string; selfSigned: boolean }

async function readOptional(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

async function selfSigned(names: string[]): Promise<{ cert: string; key: string }> {
  // Loaded only to make a certificate: 2-3 MB of a server's heap otherwise, for a first start.
  await import('reflect-metadata'); // @peculiar/x509 resolves its ASN.1 types through tsyringe, which needs it
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = new Date();
  const serial = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  serial[0]! &= 0x7f; // a positive serial number
  const sans = [...new Set(names)].map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: `CN=coffre vault ${hostname()}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + SELF_SIGNED_YEARS * 365 * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sans),
    ],
  });
  const key = KeyObject.from(keys.privateKey as unknown as webcrypto.CryptoKey).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { cert: cert.toString('pem') + '\n', key };
}

/**
 * The certificate to serve. Given files are read as they are (the operator owns them); without
 * them the data folder's self-signed pair is used, made on first start (key mode 0600).
 */
export async function loadTlsIdentity(dataDir: string, opts: { certFile?: string; keyFile?: string; host: string }): Promise<TlsIdentity> {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new CoffreError('InvalidArgument', '--tls-cert and --tls-key go together: give both, or neither for a self-signed certificate');
    const [cert, key] = await Promise.all([readOptional(opts.certFile), readOptional(opts.keyFile)]);
    if (cert === null) throw new CoffreError('InvalidArgument', `--tls-cert ${opts.certFile} does not exist`);
    if (key === null) throw new CoffreError('InvalidArgument', `--tls-key ${opts.keyFile} does not exist`);
    let fingerprint: string;
    try {
      fingerprint = fingerprintOfPem(cert);
    } catch (e) {
      throw new CoffreError('InvalidArgument', `--tls-cert ${opts.certFile} is not a PEM certificate (${(e as Error).message})`);
    }
    return { cert, key, fingerprint, certFile: opts.certFile, selfSigned: false };
  }
  const certFile = join(dataDir, TLS_DIR, CERT_FILE);
  const keyFile = join(dataDir, TLS_DIR, KEY_FILE);
  let [cert, key] = await Promise.all([readOptional(certFile), readOptional(keyFile)]);
  if (cert === null || key === null) {
    ({ cert, key } = await selfSigned(['localhost', '127.0.0.1', '::1', hostname(), ...(opts.host && !/^(0\.0\.0\.0|::)$/.test(opts.host) ? [opts.host] : [])]));
    // The key first: a certificate on disk always has its key beside it.
    await writeFileAtomic(keyFile, key, 0o600);
    await writeFileAtomic(certFile, cert, 0o644);
  }
  return { cert, key, fingerprint: fingerprintOfPem(cert), certFile, selfSigned: true };
}

/** Plain HTTP is allowed on loopback only, where nothing travels over a network. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
