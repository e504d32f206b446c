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
import { issuedBy } from './peer-chain.js';
import { verifyUnder, type TrustMaterial } from './trust-material.js';

/** OpenSSL's default verify depth is 100; a forwarded chain is bounded far lower by its header (DEFAULTS.forwardedChainMaxCertificates). */
const MAX_DEPTH = 16;
const OID_BASIC_CONSTRAINTS = '2.5.29.19';

/** The issuers' pathLenConstraint (undefined when absent), read with pkijs. */
function pathLenOf(cert: X509Certificate): number | undefined {
  const parsed = pkijs.Certificate.fromBER(cert.raw);
  const ext = parsed.extensions?.find((e) => e.extnID === OID_BASIC_CONSTRAINTS);
  const bc = ext?.parsedValue;
  if (!(bc instanceof pkijs.BasicConstraints) || bc.pathLenConstraint === undefined) return undefined;
  const v = bc.pathLenConstraint;
  return typeof v === 'number' ? v : v.valueBlock.valueDec;
}

export interface ForwardedChainResult {
  /** The chain as it was built, leaf first: the links that verify, or what the proxy sent after a leaf nothing verifies. */
  readonly chain: readonly Buffer[];
  /** The OpenSSL verify-error code (CERT_HAS_EXPIRED, SELF_SIGNED_CERT_IN_CHAIN, …), null when the chain verifies. */
  readonly verifyError: string | null;
}

/**
 * Builds the chain of `leaf` the way OpenSSL does (trusted anchors first, then the certificates
 * the proxy sent; an issuer is one whose name and key ids match, X509_check_issued) and verifies
 * it: each link's signature (a match whose signature fails is CERT_SIGNATURE_FAILURE, as OpenSSL
 * reports a forged link), every issuer a CA (INVALID_CA) within its pathLenConstraint
 * (PATH_LENGTH_EXCEEDED), then verifyUnder: anchored in `material` (else
 * UNABLE_TO_GET_ISSUER_CERT_LOCALLY / SELF_SIGNED_CERT_IN_CHAIN / DEPTH_ZERO_SELF_SIGNED_CERT),
 * valid at `now`, and, with CRLs configured, not revoked (CERT_REVOKED) with a current CRL.
 * With one defect the code is OpenSSL's; with several, the first in this order.
 */
export function verifyForwardedChain(leaf: X509Certificate, sent: readonly X509Certificate[], material: TrustMaterial, now: number): ForwardedChainResult {
  const chain: X509Certificate[] = [leaf];
  const inChain = new Set<string>([leaf.fingerprint256]);
  let cur = leaf;
  let verifyError: string | null = null;
  while (!cur.checkIssued(cur)) {
    if (chain.length > MAX_DEPTH) return { chain: chain.map((c) => c.raw), verifyError: 'CERT_CHAIN_TOO_LONG' };
    const from = cur;
    const named = (list: readonly X509Certificate[]) => list.filter((c) => !inChain.has(c.fingerprint256) && from.checkIssued(c));
    const candidates = [...named(material.anchors), ...named(sent)];
    if (candidates.length === 0) break;
    const next = candidates.find((c) => issuedBy(from, c));
    if (!next) {
      // A certificate names its issuer, but no issuer's key verifies its signature: a forgery.
      chain.push(candidates[0] as X509Certificate);
      verifyError = 'CERT_SIGNATURE_FAILURE';
      break;
    }
    inChain.add(next.fingerprint256);
    chain.push(next);
    cur = next;
  }
  // A leaf that nothing verifies keeps what the proxy sent after it (for display; nothing trusts it).
  if (chain.length === 1 && !leaf.checkIssued(leaf)) for (const c of sent) if (!inChain.has(c.fingerprint256)) chain.push(c);
  const ders = chain.map((c) => c.raw);
  if (verifyError) return { chain: ders, verifyError };
  // Issuers must be CAs, and each CA's pathLenConstraint bounds the non-self-issued CAs below it.
  for (let i = 1; i < chain.length && issuedBy(chain[i - 1] as X509Certificate, chain[i] as X509Certificate); i++) {
    const ca = chain[i] as X509Certificate;
    if (!ca.ca) return { chain: ders, verifyError: 'INVALID_CA' };
    const pathLen = pathLenOf(ca);
    const below = chain.slice(1, i).filter((c) => !c.checkIssued(c)).length;
    if (pathLen !== undefined && below > pathLen) return { chain: ders, verifyError: 'PATH_LENGTH_EXCEEDED' };
  }
  return { chain: ders, verifyError: verifyUnder(material, ders, null, now) };
}
