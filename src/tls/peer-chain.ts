// Reads what one completed handshake established about the peer: its certificate chain and
// OpenSSL's verification result, into a frozen record. Read once per handshake: Node loses
// intermediates on later getPeerCertificate calls and keeps `authorized` stale after a
// renegotiation (NODE-TLS-NOTES.md).
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

/** What the server recorded at one handshake it ran (frozen; replaced after each one). */
export interface HandshakeRecord {
  /** 1 for the initial handshake, +1 for each renegotiation the server started. */
  readonly sequence: number;
  /** When the handshake completed (ms since the epoch). */
  readonly completedAt: number;
  /** 'TLSv1.3', 'TLSv1.2', … */
  readonly protocol: string | null;
  readonly cipher: string | null;
  readonly resumed: boolean;
  /** ALPN protocol ('h2', 'http/1.1') or null. */
  readonly alpnProtocol: string | null;
  /** The client certificate chain as DER, leaf first; empty when the client sent none. */
  readonly chain: readonly Buffer[];
  /** OpenSSL's verification error code for that chain (null when verified or no certificate). */
  readonly verifyError: string | null;
}

/**
 * The peer chain as Node's getPeerCertificate(true) reports it, without its cost (about 90 µs
 * per handshake for the detailed objects it builds, against about 8 µs here): the certificates
 * the peer sent (getPeerX509Certificate().issuerCertificate), then the configured CAs up from the
 * last one, matched like OpenSSL's issuer lookup (X509_check_issued: names and key ids).
 */
function captureWithAnchors(socket: TLSSocket, anchors: readonly X509Certificate[]): { chain: Buffer[]; leaf: X509Certificate | undefined } {
  const leaf = socket.getPeerX509Certificate();
  if (!leaf) return { chain: [], leaf: undefined };
  const chain: Buffer[] = [];
  const seen = new Set<string>();
  let cert: X509Certificate | undefined = leaf;
  let last = leaf;
  while (cert && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    last = cert;
    cert = cert.issuerCertificate;
  }
  // Then up the configured CAs until a self-issued one, as Node does for the verified chain.
  while (!last.checkIssued(last)) {
    const issuer = anchors.find((a) => !seen.has(a.fingerprint256) && last.checkIssued(a));
    if (!issuer) break;
    seen.add(issuer.fingerprint256);
    chain.push(issuer.raw);
    last = issuer;
  }
  return { chain, leaf };
}

/** getPeerCertificate(true) as the first peer-certificate call (used without trust anchors). */
function captureDetailed(socket: TLSSocket): Buffer[] {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return [];
  const chain: Buffer[] = [];
  const seen = new Set<string>();
  let cert: typeof peer | undefined = peer;
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    cert = cert.issuerCertificate as typeof peer | undefined;
  }
  return chain;
}

/**
 * OpenSSL's verification result for the current session (SSL_get_verify_result), read from
 * the socket's handle: after a renegotiation it is the new chain's, whatever
 * `authorizationError` says. Falls back to `authorizationError` if Node hides the handle.
 */
function currentVerifyError(socket: TLSSocket): string | null {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (handle && typeof handle.verifyError === 'function') {
    const err = handle.verifyError();
    return err ? (err.code ?? err.message) : null;
  }
  const e = socket.authorizationError as unknown;
  return e ? String((e as { code?: string }).code ?? e) : null;
}

/**
 * Records the handshake that just completed on `socket`. With `anchors` (the trusted client
 * CAs) the chain is captured cheaply and the parsed leaf comes back too, so that the
 * certificate view need not parse it again.
 */
export function readHandshake(socket: TLSSocket, sequence: number, anchors: readonly X509Certificate[] | undefined): { record: HandshakeRecord; leaf: X509Certificate | undefined } {
  let chain: Buffer[];
  let leaf: X509Certificate | undefined;
  if (anchors) ({ chain, leaf } = captureWithAnchors(socket, anchors));
  else chain = captureDetailed(socket);
  const cipher = socket.getCipher();
  const record: HandshakeRecord = Object.freeze({
    sequence,
    completedAt: Date.now(),
    protocol: socket.getProtocol() ?? null,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
    resumed: socket.isSessionReused(),
    alpnProtocol: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null,
    chain: Object.freeze(chain),
    verifyError: chain.length > 0 ? currentVerifyError(socket) : null,
  });
  return { record, leaf };
}
