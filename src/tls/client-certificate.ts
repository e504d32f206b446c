// The trust decision on a client certificate, as pure functions: the chain verdict
// (certFlags), then revocation in the configured mode and fail mode, then the mapper — on an
// authorized chain only — give one `authorized` answer with its reason. The connection
// (src/server/connection.ts) runs them once per handshake and every API reads the result.
import { X509Certificate } from 'node:crypto';
import { CertStatus } from '../status.js';
import type { CompiledMapper } from './mapper.js';
import type { HandshakeRecord } from './peer-chain.js';
import { certFlagsFor } from './verdict.js';

/**
 * Why a connection's certificate is or is not authorized:
 * - `authorized`: the chain verified, revocation (when checked) said good or was soft-failed,
 *   and the mapper (when configured) did not deny it.
 * - `no-certificate`: the client sent none.
 * - `untrusted`: the chain did not verify (certFlags has the CERT_E_* value).
 * - `revoked`: revocation checking found it revoked (certFlags CERT_E_REVOKED).
 * - `revocation-unknown`: revocation could not be told and the fail mode is hard.
 * - `revocation-pending`: the check has not finished; only seen outside a request
 *   (requests wait for it).
 * - `denied-by-mapper`: the mapper refused it (certDeniedByMapper).
 */
export type TrustReason = 'authorized' | 'no-certificate' | 'untrusted' | 'revoked' | 'revocation-unknown' | 'revocation-pending' | 'denied-by-mapper';

/** The outcome of a client-certificate revocation check. */
export interface RevocationSummary {
  /** 0, CERT_E_REVOKED, CRYPT_E_REVOCATION_OFFLINE or CRYPT_E_NO_REVOCATION_CHECK. */
  readonly status: number;
  /** What decided: 'ocsp', 'crl', 'none' (nothing available) or 'skipped'. */
  readonly source: string;
  readonly reason: string | null;
}

/** What a revocation checker answers (src/ocsp/revocation.ts RevocationResult fits). */
export interface RevocationOutcome {
  /** What goes into certFlags: 0 (good, or undecided under soft fail), CERT_E_REVOKED, or the CRYPT_E_* status under hard fail. */
  readonly certFlags: number;
  readonly revocationStatus: number;
  readonly source: string;
  readonly reason: string | null;
}

/** The one decision on a connection's client certificate (per handshake). */
export interface TrustDecision {
  /** True only when the certificate may be trusted: see `reason`. */
  readonly authorized: boolean;
  readonly reason: TrustReason;
  /** CERT_E_* / CRYPT_E_* value, 0 when the chain verified and revocation passed (HTTP_SSL_CLIENT_CERT_INFO.CertFlags). */
  readonly certFlags: number;
  /** The mapped identity (HTTP.sys's Token); null unless the chain is authorized and a mapping matched. */
  readonly identity: string | null;
  /** HTTP_SSL_CLIENT_CERT_INFO.CertDeniedByMapper. */
  readonly deniedByMapper: boolean;
  /** Why the mapper refused, or null. */
  readonly mapperReason: string | null;
  /** The revocation check (when the server runs one and it finished), else null. */
  readonly revocation: RevocationSummary | null;
}

/** The decision for a connection without a client certificate. */
export const NO_CERTIFICATE: TrustDecision = Object.freeze({
  authorized: false, reason: 'no-certificate', certFlags: 0, identity: null, deniedByMapper: false, mapperReason: null, revocation: null,
});

/** The client certificate of a connection, with HTTP.sys's verdict and the mapper's answer. */
export interface ClientCertificate extends TrustDecision {
  /** The leaf certificate, DER (HTTP_SSL_CLIENT_CERT_INFO.pCertEncoded). */
  readonly der: Buffer;
  /** Leaf first, then the issuers as captured at the handshake. */
  readonly chain: readonly Buffer[];
  readonly subject: string;
  readonly issuer: string;
  /** Serial number, lowercase hex. */
  readonly serialNumber: string;
  /** SHA-1 thumbprint, lowercase hex. */
  readonly sha1: string;
  /** SHA-256 fingerprint, lowercase hex. */
  readonly sha256: string;
  readonly validFrom: Date;
  readonly validTo: Date;
  /** OpenSSL's verify error code behind the chain's certFlags, or null. */
  readonly verifyError: string | null;
  /** The handshake this view belongs to. */
  readonly handshake: number;
  /** Parsed leaf. */
  readonly x509: X509Certificate;
  /**
   * True for a certificate a trusted proxy forwarded in RFC 9440 headers (`trustedProxies`): the
   * decision is certbound's own, for that request only; `handshake` is 0 and `verifyError` the
   * OpenSSL code certbound's chain check gave. Absent for a connection's own certificate.
   */
  readonly forwarded?: true;
}

/**
 * The facts of a handshake's leaf that do not depend on revocation or mapping. Strings only:
 * a parsed certificate from the live connection holds the issuer chain Node copied with it
 * (native X509 copies), which an idle connection would otherwise keep (docs/performance.md).
 */
export interface CertificateFacts {
  readonly record: HandshakeRecord;
  readonly subject: string;
  readonly issuer: string;
  /** Serial number, lowercase hex. */
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly validTo: string;
  readonly sha1: string;
  readonly sha256: string;
  /** The chain's verdict alone (OpenSSL's result and the clientAuth usage). */
  readonly chainFlags: number;
}

const hex = (fingerprint: string): string => fingerprint.replace(/:/g, '').toLowerCase();

/** The leaf facts of a handshake record, or null when the client sent no certificate. */
export function certificateFacts(record: HandshakeRecord, parsed?: X509Certificate): CertificateFacts | null {
  const leaf = record.chain[0];
  if (!leaf) return null;
  const x509 = parsed && parsed.raw.equals(leaf) ? parsed : new X509Certificate(leaf);
  return {
    record,
    subject: x509.subject,
    issuer: x509.issuer,
    serialNumber: x509.serialNumber.toLowerCase(),
    validFrom: x509.validFrom,
    validTo: x509.validTo,
    sha1: hex(x509.fingerprint),
    sha256: hex(x509.fingerprint256),
    chainFlags: certFlagsFor(record.verifyError, x509.keyUsage),
  };
}

/** The parsed leaf of a view, made when first read (most requests never read it). */
const parsedLeaves = new WeakMap<object, X509Certificate>();
function parsedLeaf(this: ClientCertificate): X509Certificate {
  let x = parsedLeaves.get(this);
  if (!x) {
    x = new X509Certificate(this.der);
    parsedLeaves.set(this, x);
  }
  return x;
}

/**
 * The decision, in order: a chain that did not verify is the first defect (HTTP.sys reports
 * it before revocation); then revocation — `pending` while a configured check runs,
 * `undefined` when none is configured; then the mapper, on an authorized chain only, so that
 * a forged certificate can never carry an identity.
 */
export function decideTrust(facts: CertificateFacts, revocation: RevocationOutcome | 'pending' | undefined, mapper: CompiledMapper): TrustDecision {
  if (facts.chainFlags !== 0) {
    return Object.freeze({ authorized: false, reason: 'untrusted', certFlags: facts.chainFlags, identity: null, deniedByMapper: false, mapperReason: null, revocation: null });
  }
  if (revocation === 'pending') {
    return Object.freeze({ authorized: false, reason: 'revocation-pending', certFlags: CertStatus.CRYPT_E_NO_REVOCATION_CHECK, identity: null, deniedByMapper: false, mapperReason: null, revocation: null });
  }
  const summary: RevocationSummary | null = revocation ? Object.freeze({ status: revocation.revocationStatus, source: revocation.source, reason: revocation.reason }) : null;
  if (revocation && revocation.certFlags !== 0) {
    const reason: TrustReason = revocation.certFlags === CertStatus.CERT_E_REVOKED ? 'revoked' : 'revocation-unknown';
    return Object.freeze({ authorized: false, reason, certFlags: revocation.certFlags, identity: null, deniedByMapper: false, mapperReason: null, revocation: summary });
  }
  const mapped = mapper({ sha1: facts.sha1, sha256: facts.sha256, subject: facts.subject, issuer: facts.issuer, serialNumber: facts.serialNumber, certFlags: 0, der: facts.record.chain[0] as Buffer, chain: facts.record.chain });
  return Object.freeze({
    authorized: !mapped.deniedByMapper,
    reason: mapped.deniedByMapper ? 'denied-by-mapper' : 'authorized',
    certFlags: 0,
    identity: mapped.deniedByMapper ? null : mapped.identity,
    deniedByMapper: mapped.deniedByMapper,
    mapperReason: mapped.reason,
    revocation: summary,
  });
}

/** The frozen view every API hands out: the certificate's facts and its decision. */
export function certificateView(facts: CertificateFacts, decision: TrustDecision): ClientCertificate {
  const r = facts.record;
  const view = {
    der: r.chain[0] as Buffer,
    chain: r.chain,
    subject: facts.subject,
    issuer: facts.issuer,
    serialNumber: facts.serialNumber,
    sha1: facts.sha1,
    sha256: facts.sha256,
    validFrom: new Date(facts.validFrom),
    validTo: new Date(facts.validTo),
    verifyError: r.verifyError,
    handshake: r.sequence,
    ...decision,
  };
  // `x509`, an enumerable getter like the other members' values: parsed from `der` when read.
  Object.defineProperty(view, 'x509', { get: parsedLeaf, enumerable: true });
  return Object.freeze(view) as ClientCertificate;
}
