/**
 * How the agent and the CLI trust a vault over HTTPS: by the certificate's pinned SHA-256
 * fingerprint when they have one (self-signed vaults: the fingerprint comes with the vault
 * credentials), else by the system's certificate authorities.
 *
 * The pin is checked when the connection is made and before it is handed to the HTTP client,
 * so not one byte of a request (and never the bearer token) goes to a server that does not
 * hold the pinned certificate. Node checks a chain before it would call checkServerIdentity,
 * which a self-signed certificate never passes, hence an Agent whose createConnection waits for
 * the handshake, compares fingerprints, and only then gives the socket to the request.
 */
import https from 'node:https';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { CoffreError } from '../core/errors.js';
import { normalizeFingerprint } from '../core/fingerprint.js';

class PinnedAgent extends https.Agent {
  constructor(private readonly pinned: string) {
    // No TLS session reuse: every new connection shows its certificate and is checked.
    super({ keepAlive: true, maxSockets: 8, maxCachedSessions: 0 });
  }

  override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const socket = tls.connect({ ...(options as tls.ConnectionOptions), rejectUnauthorized: false });
    let settled = false;
    const done = (err: Error | null) => {
      if (settled) return;
      settled = true;
      callback?.(err, socket);
    };
    socket.once('secureConnect', () => {
      const raw = socket.getPeerCertificate().fingerprint256;
      const seen = raw ? normalizeFingerprint(raw) : 'none';
      if (seen === this.pinned) return done(null);
      socket.destroy();
      done(new CoffreError('CertificateMismatch',
        `the vault at ${options.host}:${options.port} presented a certificate with fingerprint ${seen}, not the pinned ${this.pinned}: `
        + 'this is another server, or someone in between. Nothing was sent. If the vault\'s certificate was replaced on purpose, '
        + 'register with new vault credentials (or pass the new fingerprint with --fingerprint / COFFRE_FINGERPRINT)',
        { expected: this.pinned, presented: seen }));
    });
    socket.once('error', (e) => done(e));
    return undefined;
  }
}

const pinnedAgents = new Map<string, PinnedAgent>();
const systemAgent = new https.Agent({ keepAlive: true, maxSockets: 8 });

/** The HTTPS agent for a pin (one per fingerprint, shared, keeping connections alive). */
export function httpsAgentFor(fingerprint: string | undefined): https.Agent {
  if (!fingerprint) return systemAgent;
  const pin = normalizeFingerprint(fingerprint);
  let agent = pinnedAgents.get(pin);
  if (!agent) pinnedAgents.set(pin, (agent = new PinnedAgent(pin)));
  return agent;
}

const UNTRUSTED = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID']);

/** A TLS failure as the error a user can act on, or null when it is not one. */
export function tlsError(e: unknown, server: string): CoffreError | null {
  const code = (e as NodeJS.ErrnoException).code;
  if (code && UNTRUSTED.has(code)) {
    return new CoffreError('CertificateUntrusted', `the vault at ${server} has a certificate this machine does not trust (${code}); a vault with a self-signed certificate is trusted by its fingerprint: vault credentials carry it, \`coffre server\` prints it, or pass it with --fingerprint / COFFRE_FINGERPRINT`);
  }
  return null;
}
