// The Windows status values that certbound's Windows-shaped APIs return, one table.
// Values are from the Windows SDK (winerror.h); each line names its meaning. They are
// *returned* by the APIs, never thrown: exceptions are for programming errors (src/errors.ts).

/** Win32 error codes (winerror.h), as returned by HttpReceiveClientCertificate. */
export const Win32 = Object.freeze({
  /** The operation completed successfully. */
  NO_ERROR: 0,
  /** The parameter is incorrect (unknown queue, unknown or closed connection, unknown flag bits). */
  ERROR_INVALID_PARAMETER: 87,
  /** The buffer is smaller than the fixed part of the structure; nothing was written. */
  ERROR_INSUFFICIENT_BUFFER: 122,
  /** The fixed part fits but not the variable part; only the size member is filled. */
  ERROR_MORE_DATA: 234,
  /** The request is not supported (IIS answers this for on-demand certificates on TLS 1.3). */
  ERROR_NOT_SUPPORTED: 50,
  /** Overlapped I/O operation is in progress: the call completes later. */
  ERROR_IO_PENDING: 997,
  /** Element not found: no client certificate (or channel binding token) on the connection. */
  ERROR_NOT_FOUND: 1168,
  /** The operation was cancelled (the connection closed while a call was pending). */
  ERROR_OPERATION_ABORTED: 995,
  /** The timeout period expired (a negotiation that the client never answered). */
  ERROR_TIMEOUT: 1460,
} as const);
export type Win32Status = (typeof Win32)[keyof typeof Win32];

/** COM HRESULTs returned by the IIS-shaped negotiateClientCertificate (winerror.h). */
export const HResult = Object.freeze({
  S_OK: 0,
  /** Unspecified failure. */
  E_FAIL: 0x80004005,
  /** HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED): no renegotiation on TLS 1.3 or HTTP/2 (IIS answers this). */
  E_NOT_SUPPORTED: 0x80070032,
  /** HRESULT_FROM_WIN32(ERROR_TIMEOUT). */
  E_TIMEOUT: 0x800705b4,
  /** HRESULT_FROM_WIN32(ERROR_OPERATION_ABORTED): the connection closed during the negotiation. */
  E_ABORTED: 0x800703e3,
} as const);

/**
 * Certificate trust HRESULTs (winerror.h), as HTTP.sys puts them in
 * HTTP_SSL_CLIENT_CERT_INFO.CertFlags; 0 means the chain verified.
 * https://learn.microsoft.com/windows/win32/api/http/ns-http-http_ssl_client_cert_info
 */
export const CertStatus = Object.freeze({
  /** The chain verified (no error). */
  OK: 0,
  /** CERT_E_EXPIRED 0x800B0101: outside its validity period (expired or not yet valid). */
  CERT_E_EXPIRED: 0x800b0101,
  /** CERT_E_VALIDITYPERIODNESTING 0x800B0102: validity periods of the chain do not nest. */
  CERT_E_VALIDITYPERIODNESTING: 0x800b0102,
  /** CERT_E_ROLE 0x800B0103: an end-entity certificate is used as a CA or vice versa. */
  CERT_E_ROLE: 0x800b0103,
  /** CERT_E_PATHLENCONST 0x800B0104: a path length constraint was violated. */
  CERT_E_PATHLENCONST: 0x800b0104,
  /** CERT_E_CRITICAL 0x800B0105: an unknown critical extension. */
  CERT_E_CRITICAL: 0x800b0105,
  /** CERT_E_PURPOSE 0x800B0106: used for a purpose other than the one its CA allows. */
  CERT_E_PURPOSE: 0x800b0106,
  /** CERT_E_MALFORMED 0x800B0108: a required field is empty or invalid. */
  CERT_E_MALFORMED: 0x800b0108,
  /** CERT_E_UNTRUSTEDROOT 0x800B0109: the chain ends in a root that is not trusted. */
  CERT_E_UNTRUSTEDROOT: 0x800b0109,
  /** CERT_E_CHAINING 0x800B010A: the chain could not be built to a trusted root. */
  CERT_E_CHAINING: 0x800b010a,
  /** TRUST_E_FAIL 0x800B010B: generic trust failure. */
  TRUST_E_FAIL: 0x800b010b,
  /** CERT_E_REVOKED 0x800B010C: explicitly revoked by its issuer (on a loaded CRL). */
  CERT_E_REVOKED: 0x800b010c,
  /** CERT_E_REVOCATION_FAILURE 0x800B010E: revocation could not be checked. */
  CERT_E_REVOCATION_FAILURE: 0x800b010e,
  /** CERT_E_WRONG_USAGE 0x800B0110: not valid for the requested usage (no clientAuth EKU). */
  CERT_E_WRONG_USAGE: 0x800b0110,
  /** CERT_E_UNTRUSTEDCA 0x800B0112: an issuing CA of the chain is not trusted. */
  CERT_E_UNTRUSTEDCA: 0x800b0112,
  /** TRUST_E_CERT_SIGNATURE 0x80096004: a signature in the chain did not verify. */
  TRUST_E_CERT_SIGNATURE: 0x80096004,
  /** CRYPT_E_NO_REVOCATION_CHECK 0x80092012: no revocation data (no CRL for a CA). */
  CRYPT_E_NO_REVOCATION_CHECK: 0x80092012,
  /** CRYPT_E_REVOCATION_OFFLINE 0x80092013: revocation server offline or CRL expired. */
  CRYPT_E_REVOCATION_OFFLINE: 0x80092013,
} as const);
export type CertStatusValue = (typeof CertStatus)[keyof typeof CertStatus];

/** The symbolic name of a CertFlags value, e.g. 'CERT_E_EXPIRED', or undefined. */
export function certStatusName(value: number): string | undefined {
  for (const [name, v] of Object.entries(CertStatus)) if (v === value) return name;
  return undefined;
}

/** The name of a Win32 status, e.g. 'ERROR_MORE_DATA'. */
export function win32StatusName(value: number): string | undefined {
  for (const [name, v] of Object.entries(Win32)) if (v === value) return name;
  return undefined;
}

/** Lowercase 0x-prefixed 8-digit hex of a 32-bit status, as Windows prints HRESULTs. */
export function hresultHex(value: number): string {
  return '0x' + (value >>> 0).toString(16).padStart(8, '0');
}
