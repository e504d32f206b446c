// Maps OpenSSL's verification result (Node's `authorizationError` code) to the CERT_E_*
// value HTTP.sys puts in HTTP_SSL_CLIENT_CERT_INFO.CertFlags. Values: winerror.h; see
// src/status.ts. The mapping follows what CertGetCertificateChain reports for the same
// defect (CERT_TRUST_IS_NOT_TIME_VALID → CERT_E_EXPIRED, CERT_TRUST_IS_UNTRUSTED_ROOT →
// CERT_E_UNTRUSTEDROOT, CERT_TRUST_IS_REVOKED → CERT_E_REVOKED, …).
import { CertStatus } from '../status.js';

const TABLE: Readonly<Record<string, number>> = Object.freeze({
  CERT_HAS_EXPIRED: CertStatus.CERT_E_EXPIRED,
  CERT_NOT_YET_VALID: CertStatus.CERT_E_EXPIRED,
  ERROR_IN_CERT_NOT_BEFORE_FIELD: CertStatus.CERT_E_EXPIRED,
  ERROR_IN_CERT_NOT_AFTER_FIELD: CertStatus.CERT_E_EXPIRED,
  // A self-signed certificate, or a chain ending in a root we do not trust.
  DEPTH_ZERO_SELF_SIGNED_CERT: CertStatus.CERT_E_UNTRUSTEDROOT,
  SELF_SIGNED_CERT_IN_CHAIN: CertStatus.CERT_E_UNTRUSTEDROOT,
  CERT_UNTRUSTED: CertStatus.CERT_E_UNTRUSTEDROOT,
  // The issuing CA is not among the trusted ones (and the client did not send it).
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: CertStatus.CERT_E_UNTRUSTEDCA,
  UNABLE_TO_GET_ISSUER_CERT: CertStatus.CERT_E_UNTRUSTEDCA,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: CertStatus.CERT_E_UNTRUSTEDCA,
  CERT_REJECTED: CertStatus.CERT_E_UNTRUSTEDCA,
  INVALID_PURPOSE: CertStatus.CERT_E_WRONG_USAGE,
  CERT_REVOKED: CertStatus.CERT_E_REVOKED,
  UNABLE_TO_GET_CRL: CertStatus.CRYPT_E_NO_REVOCATION_CHECK,
  UNABLE_TO_GET_CRL_ISSUER: CertStatus.CRYPT_E_NO_REVOCATION_CHECK,
  CRL_HAS_EXPIRED: CertStatus.CRYPT_E_REVOCATION_OFFLINE,
  CRL_NOT_YET_VALID: CertStatus.CRYPT_E_REVOCATION_OFFLINE,
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: CertStatus.CERT_E_REVOCATION_FAILURE,
  CRL_SIGNATURE_FAILURE: CertStatus.CERT_E_REVOCATION_FAILURE,
  CERT_SIGNATURE_FAILURE: CertStatus.TRUST_E_CERT_SIGNATURE,
  UNABLE_TO_DECRYPT_CERT_SIGNATURE: CertStatus.TRUST_E_CERT_SIGNATURE,
  UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: CertStatus.TRUST_E_CERT_SIGNATURE,
  INVALID_CA: CertStatus.CERT_E_ROLE,
  PATH_LENGTH_EXCEEDED: CertStatus.CERT_E_PATHLENCONST,
  INVALID_EXTENSION: CertStatus.CERT_E_CRITICAL,
  UNHANDLED_CRITICAL_EXTENSION: CertStatus.CERT_E_CRITICAL,
  CERT_CHAIN_TOO_LONG: CertStatus.CERT_E_CHAINING,
});

/** The OpenSSL verify-error code → CERT_E_* table (read-only, for docs and tests). */
export const VERIFY_ERROR_TO_CERT_STATUS = TABLE;

/** id-kp-clientAuth and anyExtendedKeyUsage (RFC 5280 4.2.1.12). */
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';

/**
 * CertFlags for a client certificate: 0 when OpenSSL verified the chain and the leaf may be
 * used for client authentication; otherwise the CERT_E_* value of the first defect.
 * `verifyError` is Node's `authorizationError` code (null when verified); `eku` is the
 * leaf's extended key usage (`X509Certificate.keyUsage`, undefined when it has none).
 */
export function certFlagsFor(verifyError: string | null, eku: readonly string[] | undefined): number {
  // Own keys only: an unknown code such as 'toString' must not pick up Object.prototype.
  if (verifyError) return Object.hasOwn(TABLE, verifyError) ? (TABLE[verifyError] ?? CertStatus.TRUST_E_FAIL) : CertStatus.TRUST_E_FAIL;
  if (eku && eku.length > 0 && !eku.includes(CLIENT_AUTH) && !eku.includes(ANY_EKU)) return CertStatus.CERT_E_WRONG_USAGE;
  return CertStatus.OK;
}
