// Reads what one completed handshake established about the peer: its certificate chain and
// OpenSSL's verification result, into a frozen record. Read once per handshake: Node loses
// intermediates on later getPeerCertificate calls and keeps `authorized` stale after a
// renegotiation (NODE-TLS-NOTES.md).
import { X509Certificate } from 'node:crypto';
import { rootCertificates, type TLSSocket } from 'node:tls';
import { pemBlocks } from './pem.js';

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

/** Verified (child, issuer) links: the same intermediates and leaves come back on every connection. */
const verifiedLinks = new Map<string, boolean>();
const MAX_VERIFIED_LINKS = 10_000;

/** True when `issuer` issued `cert`: names and key ids (X509_check_issued) *and* its key verifies the signature. */
export function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && signedBy(cert, issuer);
}

/** True when `issuer`'s public key verifies `cert`'s signature; remembered per (child, issuer) pair. */
export function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  const key = `${cert.fingerprint256}|${issuer.fingerprint256}`;
  let ok = verifiedLinks.get(key);
  if (ok === undefined) {
    try {
      ok = cert.verify(issuer.publicKey);
    } catch {
      ok = false;
    }
    if (verifiedLinks.size >= MAX_VERIFIED_LINKS) verifiedLinks.clear();
    verifiedLinks.set(key, ok);
  }
  return ok;
}

/**
 * The chain as it verifies, leaf first: each next certificate is one that issued the previous
 * (names, key ids and signature), taken from the trusted anchors first (OpenSSL's trusted-first
 * rule), then from the certificates the peer sent, preferring among them one valid at `now`. Names and key ids alone can be copied by a
 * forger; a signature cannot. Stops at a self-issued certificate or when no issuer verifies:
 * then the chain ends there, and whoever needs the issuer (revocation, CA pins) cannot tell it.
 * A leaf that nothing verifies keeps what the peer sent after it (for display; nothing trusts it).
 * Cheaper than getPeerCertificate(true) (about 90 µs per handshake for its detailed objects).
 */
function captureWithAnchors(socket: TLSSocket, anchors: readonly X509Certificate[], now: number): { chain: Buffer[]; certs: X509Certificate[]; leaf: X509Certificate | undefined } {
  const leaf = socket.getPeerX509Certificate();
  if (!leaf) return { chain: [], certs: [], leaf: undefined };
  // What the peer sent after its leaf, read only when the anchors do not complete the chain
  // (each one costs a SHA-256 fingerprint; with the usual client chain they are never needed).
  let sent: X509Certificate[] | undefined;
  const sentCerts = (): X509Certificate[] => {
    if (sent) return sent;
    sent = [];
    const seenSent = new Set<string>([leaf.fingerprint256]);
    for (let c = leaf.issuerCertificate; c && !seenSent.has(c.fingerprint256); c = c.issuerCertificate) {
      seenSent.add(c.fingerprint256);
      sent.push(c);
    }
    return sent;
  };
  const certs = linkChain(leaf, anchors, { [Symbol.iterator]: () => sentCerts()[Symbol.iterator]() }, now);
  if (certs.length === 1) certs.push(...sentCerts());
  return { chain: certs.map((c) => c.raw), certs, leaf };
}

/** The peer's leaf alone (a resumed handshake). */
function captureLeaf(socket: TLSSocket): { chain: Buffer[]; certs: X509Certificate[]; leaf: X509Certificate | undefined } {
  const leaf = socket.getPeerX509Certificate();
  return leaf ? { chain: [leaf.raw], certs: [leaf], leaf } : { chain: [], certs: [], leaf: undefined };
}

/** Parsed validity of certificates (anchors, intermediates, leaves): parsed once per certificate object. */
const validity = new WeakMap<X509Certificate, { readonly from: number; readonly to: number }>();

/**
 * `cert`'s validity dates in ms, parsed once per certificate object; an unparsable date fails
 * closed (a window that is never open). The one reading of validity dates for chain building,
 * the chain's window (src/tls/session-chains.ts) and verification against the material in force.
 */
export function certValidity(cert: X509Certificate): { readonly from: number; readonly to: number } {
  let v = validity.get(cert);
  if (!v) {
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    v = Number.isNaN(from) || Number.isNaN(to) ? { from: Infinity, to: -Infinity } : { from, to };
    validity.set(cert, v);
  }
  return v;
}

/** True when `cert` is within its validity dates at `now` (an unparsable date: false). */
function validAt(cert: X509Certificate, now: number): boolean {
  const v = certValidity(cert);
  return v.from <= now && now <= v.to;
}

/**
 * The first of `candidates` (not in the chain yet) that issued `cert`, or rather one valid at
 * `now` when the first is not: a bundle may hold an expired copy of a CA (same name and key)
 * before its renewal, and OpenSSL too prefers an issuer valid now (X509_STORE_CTX_get1_issuer,
 * find_issuer). Only looks past the first fitting candidate when that one is not valid now.
 */
function pickIssuer(cert: X509Certificate, candidates: Iterable<X509Certificate>, inChain: ReadonlySet<string>, now: number): X509Certificate | undefined {
  let first: X509Certificate | undefined;
  for (const c of candidates) {
    if (first === c || inChain.has(c.fingerprint256) || !issuedBy(cert, c)) continue;
    if (validAt(c, now)) return c;
    first ??= c;
  }
  return first;
}

/**
 * The chain of `leaf` as it verifies, leaf first: each next certificate issued the previous
 * (names, key ids and signature), taken from `anchors` first, then from `others` (iterated only
 * when no anchor fits); among those that fit, one valid at `now` is preferred (pickIssuer).
 * Stops at a self-issued certificate or when no issuer verifies.
 */
export function linkChain(leaf: X509Certificate, anchors: readonly X509Certificate[], others: Iterable<X509Certificate>, now: number = Date.now()): X509Certificate[] {
  const certs: X509Certificate[] = [leaf];
  const inChain = new Set<string>([leaf.fingerprint256]);
  let cur = leaf;
  while (!cur.checkIssued(cur)) {
    const next = pickIssuer(cur, anchors, inChain, now) ?? pickIssuer(cur, others, inChain, now);
    if (!next) break;
    inChain.add(next.fingerprint256);
    certs.push(next);
    cur = next;
  }
  return certs;
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

/** What readHandshake() read: the record, and the parsed certificates behind it. */
export interface HandshakeRead {
  readonly record: HandshakeRecord;
  readonly leaf: X509Certificate | undefined;
  /** The chain of the record, parsed (leaf first); the leaf alone on a resumed handshake. */
  readonly certs: readonly X509Certificate[];
}

/**
 * Records the handshake that just completed on `socket`, with its chain built against
 * `anchors` (the trusted client CAs) at `now`; the parsed leaf comes back too, so that the
 * certificate view need not parse it again.
 */
export function readHandshake(socket: TLSSocket, sequence: number, anchors: readonly X509Certificate[], now: number = Date.now()): HandshakeRead {
  const resumed = socket.isSessionReused();
  // A resumed session carries the leaf alone (OpenSSL keeps no peer chain in a ticket): its
  // chain comes from what full handshakes verified (src/tls/session-chains.ts).
  const { chain, certs, leaf } = resumed ? captureLeaf(socket) : captureWithAnchors(socket, anchors, now);
  const cipher = socket.getCipher();
  const record: HandshakeRecord = Object.freeze({
    sequence,
    completedAt: Date.now(),
    protocol: socket.getProtocol() ?? null,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
    resumed,
    alpnProtocol: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null,
    chain: Object.freeze(chain),
    verifyError: chain.length > 0 ? currentVerifyError(socket) : null,
  });
  return { record, leaf, certs };
}

/** Parses trusted CA PEM (strings or Buffers, one or many certificates each); unparsable blocks are skipped. */
export function anchorsFromPem(pems: ReadonlyArray<string | Buffer>): X509Certificate[] {
  return pems.flatMap((p) => pemBlocks(p.toString(), 'CERTIFICATE')).flatMap((der) => {
    try {
      return [new X509Certificate(der)];
    } catch {
      return [];
    }
  });
}

/**
 * The client CAs a TLS server trusts: its `ca` option (Node keeps it on the server), else
 * Node's bundled roots, which OpenSSL then uses. For the plugin on an app it did not build.
 */
export function serverAnchors(server: unknown): X509Certificate[] {
  const ca = (server as { ca?: string | Buffer | Array<string | Buffer> } | undefined)?.ca;
  if (ca === undefined) return anchorsFromPem(rootCertificates);
  return anchorsFromPem(Array.isArray(ca) ? ca : [ca]);
}
