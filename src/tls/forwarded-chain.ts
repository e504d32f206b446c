// Verifies a client certificate that a trusted proxy forwarded (RFC 9440): certbound's own
// verdict, outside OpenSSL's handshake, so that it gives the OpenSSL verify-error code a direct
// TLS connection with the same chain would get (src/tls/verdict.ts maps it to certFlags).
//
// Why node:crypto and not pkijs's CertificateChainValidationEngine: the direct path already builds
// chains with X509Certificate.checkIssued + verify (src/tls/peer-chain.ts issuedBy, OpenSSL's own
// X509_check_issued and signature check, cached per link) and judges them after a reload with
// verifyUnder (src/tls/trust-material.ts: anchors, validity, CRLs). Using the same two pieces here
// keeps one rule for "this chain verifies", synchronous and cheap, and lets the result be stated
// as OpenSSL's error codes; pkijs's engine answers with its own result codes and messages, which
// would need a second mapping to certFlags. pkijs is used where node:crypto says nothing: the
// pathLenConstraint of the issuers.
import type { X509Certificate } from 'node:crypto';
import { pkijs } from './pkijs-engine.js';
import { verifyParsedUnder, type TrustMaterial } from './trust-material.js';
import { signedBy } from './peer-chain.js';

/** OpenSSL's default verify depth is 100; a forwarded chain is bounded far lower by its header (DEFAULTS.forwardedChainMaxCertificates). */
const MAX_DEPTH = 16;
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_SUBJECT_KEY_ID = '2.5.29.14';
const OID_AUTHORITY_KEY_ID = '2.5.29.35';

/** What node:crypto does not expose of a certificate, read once with pkijs. */
interface Extras {
  readonly skid: string | null;
  readonly akid: string | null;
  /** keyCertSign allowed (true when the certificate has no keyUsage extension). */
  readonly certSign: boolean;
  readonly pathLen: number | undefined;
}
const extrasCache = new WeakMap<X509Certificate, Extras>();

function extrasOf(cert: X509Certificate): Extras {
  let e = extrasCache.get(cert);
  if (e) return e;
  const parsed = pkijs.Certificate.fromBER(cert.raw);
  const ext = (oid: string) => parsed.extensions?.find((x) => x.extnID === oid)?.parsedValue as unknown;
  const hex = (v: { valueBlock: { valueHexView: Uint8Array } } | undefined) => (v ? Buffer.from(v.valueBlock.valueHexView).toString('hex') : null);
  const skid = ext(OID_SUBJECT_KEY_ID) as { valueBlock: { valueHexView: Uint8Array } } | undefined;
  const akid = ext(OID_AUTHORITY_KEY_ID);
  const ku = ext(OID_KEY_USAGE) as { valueBlock: { valueHexView: Uint8Array } } | undefined;
  const bc = ext(OID_BASIC_CONSTRAINTS);
  const pathLen = bc instanceof pkijs.BasicConstraints && bc.pathLenConstraint !== undefined
    ? (typeof bc.pathLenConstraint === 'number' ? bc.pathLenConstraint : bc.pathLenConstraint.valueBlock.valueDec)
    : undefined;
  // KeyUsage is a BIT STRING: keyCertSign is bit 5 of the first byte (0x04).
  const kuBytes = ku ? ku.valueBlock.valueHexView : undefined;
  e = Object.freeze({
    skid: hex(skid),
    akid: akid instanceof pkijs.AuthorityKeyIdentifier ? hex(akid.keyIdentifier) : null,
    certSign: kuBytes === undefined || ((kuBytes[0] ?? 0) & 0x04) !== 0,
    pathLen,
  });
  extrasCache.set(cert, e);
  return e;
}

/** OpenSSL's "likely issued" (x509_likely_issued): the issuer name matches, and the key ids when both are there. No signature, no key usage. */
function likelyIssued(cert: X509Certificate, issuer: X509Certificate): boolean {
  if (cert.issuer !== issuer.subject) return false;
  const akid = extrasOf(cert).akid;
  const skid = extrasOf(issuer).skid;
  return akid === null || skid === null || akid === skid;
}

export interface ForwardedChainResult {
  /** The chain as it was built, leaf first (after a leaf whose issuer is not found: what the proxy sent, for display). */
  readonly chain: readonly Buffer[];
  /** The OpenSSL verify-error code (CERT_HAS_EXPIRED, SELF_SIGNED_CERT_IN_CHAIN, …), null when the chain verifies. */
  readonly verifyError: string | null;
}

/**
 * Builds the chain of `leaf` as OpenSSL 3 does (an issuer is the first certificate whose name
 * and key ids match, trusted anchors first, then the certificates the proxy sent) and verifies
 * it: a link whose signature fails is CERT_SIGNATURE_FAILURE (a forged link); an issuer whose
 * keyUsage forbids certificate signing is KEYUSAGE_NO_CERTSIGN, one that is not a CA INVALID_CA,
 * one whose pathLenConstraint is exceeded PATH_LENGTH_EXCEEDED; then verifyUnder: anchored in
 * `material` (else UNABLE_TO_GET_ISSUER_CERT_LOCALLY / SELF_SIGNED_CERT_IN_CHAIN /
 * DEPTH_ZERO_SELF_SIGNED_CERT), valid at `now`, and, with CRLs configured, not revoked
 * (CERT_REVOKED) with a current CRL. With one defect the certFlags are a direct connection's;
 * with several, the first in this order decides (OpenSSL reports the last one it met).
 */
export function verifyForwardedChain(leaf: X509Certificate, sent: readonly X509Certificate[], material: TrustMaterial, now: number): ForwardedChainResult {
  const chain: X509Certificate[] = [leaf];
  const inChain = new Set<string>([leaf.fingerprint256]);
  let cur = leaf;
  const fail = (verifyError: string): ForwardedChainResult => ({ chain: chain.map((c) => c.raw), verifyError });
  while (!(cur.issuer === cur.subject && likelyIssued(cur, cur))) {
    if (chain.length > MAX_DEPTH) return fail('CERT_CHAIN_TOO_LONG');
    const from = cur;
    const next = [...material.anchors, ...sent].find((c) => !inChain.has(c.fingerprint256) && likelyIssued(from, c));
    if (!next) break;
    inChain.add(next.fingerprint256);
    chain.push(next);
    // A certificate that names its issuer, but the issuer's key does not verify its signature: a forgery.
    if (!signedBy(from, next)) return fail('CERT_SIGNATURE_FAILURE');
    cur = next;
  }
  if (chain.length === 1 && !(leaf.issuer === leaf.subject && likelyIssued(leaf, leaf))) {
    for (const c of sent) if (!inChain.has(c.fingerprint256)) chain.push(c);
  } else {
    // Issuers must be CAs allowed to sign certificates, each within its pathLenConstraint.
    for (let i = 1; i < chain.length; i++) {
      const ca = chain[i] as X509Certificate;
      const extras = extrasOf(ca);
      if (!extras.certSign) return fail('KEYUSAGE_NO_CERTSIGN');
      if (!ca.ca) return fail('INVALID_CA');
      const below = chain.slice(1, i).filter((c) => c.issuer !== c.subject).length;
      if (extras.pathLen !== undefined && below > extras.pathLen) return fail('PATH_LENGTH_EXCEEDED');
    }
  }
  return { chain: chain.map((c) => c.raw), verifyError: verifyParsedUnder(material, chain, now) };
}
