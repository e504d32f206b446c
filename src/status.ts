// The Windows status values that certbound's Windows-shaped APIs return, one table.
// Values are from the Windows SDK (winerror.h; bitsmsg.h for BG_*, winhttp.h for WinHTTP);
// each line says what the value means here. They are *returned* by the APIs, never thrown:
// exceptions are for programming errors (src/errors.ts).

/**
 * Every status value, once. The per-API tables below (Win32, HResult, CertStatus,
 * BitsHResult, OcspHandleStatus) pick their names from here, so a value two APIs return
 * (ERROR_INVALID_PARAMETER, CRYPT_E_REVOCATION_OFFLINE) has one definition. Two names share a
 * value only where winerror.h has two spaces for it: NO_ERROR (Win32) and S_OK (HRESULT) are 0.
 */
export const WinStatus = Object.freeze({
  // Win32 error codes (winerror.h): HttpReceiveClientCertificate, the OCSP handle functions.
  /** NO_ERROR 0: the operation completed successfully. */
  NO_ERROR: 0,
  /** ERROR_NOT_SUPPORTED 50: the request is not supported (IIS answers this for on-demand certificates on TLS 1.3). */
  ERROR_NOT_SUPPORTED: 50,
  /** ERROR_INVALID_PARAMETER 87: a bad argument (unknown queue, closed connection or handle, freed context, unknown flag bits, a chain without its issuer). */
  ERROR_INVALID_PARAMETER: 87,
  /** ERROR_INSUFFICIENT_BUFFER 122: the buffer is smaller than the fixed part of the structure; nothing was written. */
  ERROR_INSUFFICIENT_BUFFER: 122,
  /** ERROR_MORE_DATA 234: the fixed part fits but not the variable part; only the size member is filled. */
  ERROR_MORE_DATA: 234,
  /** ERROR_OPERATION_ABORTED 995: the operation was cancelled (the connection closed while a call was pending). */
  ERROR_OPERATION_ABORTED: 995,
  /** ERROR_IO_PENDING 997: overlapped I/O is in progress; the call completes later. */
  ERROR_IO_PENDING: 997,
  /** ERROR_NOT_FOUND 1168: element not found: no client certificate (or channel binding token) on the connection. */
  ERROR_NOT_FOUND: 1168,
  /** ERROR_TIMEOUT 1460: the timeout period expired (a negotiation that the client never answered). */
  ERROR_TIMEOUT: 1460,

  // HRESULT successes (severity bit clear).
  /** S_OK 0: success. */
  S_OK: 0,
  /** S_FALSE 1: success, nothing to do (RemoveClientCertificate on a job without a certificate). */
  S_FALSE: 1,
  /** BG_S_PARTIAL_COMPLETE 0x00200017 (bitsmsg.h): Complete kept only the files that had fully transferred. */
  BG_S_PARTIAL_COMPLETE: 0x00200017,

  // HRESULT failures, FACILITY_NULL.
  /** E_NOTIMPL 0x80004001: the StoreLocation is not in BG_CERT_STORE_LOCATION (seeds 001/002). */
  E_NOTIMPL: 0x80004001,
  /** E_FAIL 0x80004005: unspecified failure (negotiateClientCertificate). */
  E_FAIL: 0x80004005,

  // HRESULT failures, FACILITY_WIN32: HRESULT_FROM_WIN32 of a Win32 code (or a WinHTTP one).
  /** HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND 2) 0x80070002: no store matches StoreName. */
  E_FILE_NOT_FOUND: 0x80070002,
  /** E_ACCESSDENIED 0x80070005: no permission on the store location (EACCES/EPERM), or the caller is not the job owner. */
  E_ACCESSDENIED: 0x80070005,
  /** HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED 50) 0x80070032: no renegotiation on TLS 1.3 or HTTP/2 (IIS answers this). */
  E_NOT_SUPPORTED: 0x80070032,
  /** HRESULT_FROM_WIN32(ERROR_INVALID_PASSWORD 86) 0x80070056: what PFXImportCertStore answers for a wrong PKCS#12 password. */
  E_INVALID_PASSWORD: 0x80070056,
  /** E_INVALIDARG 0x80070057: an argument is malformed where the seeds name no specific error (empty subject name, bad URL). */
  E_INVALIDARG: 0x80070057,
  /** HRESULT_FROM_WIN32(ERROR_OPERATION_ABORTED 995) 0x800703E3: the connection closed during the negotiation. */
  E_ABORTED: 0x800703e3,
  /** HRESULT_FROM_WIN32(ERROR_TIMEOUT 1460) 0x800705B4: the client never answered the negotiation. */
  E_TIMEOUT: 0x800705b4,
  /** HRESULT_FROM_WIN32(RPC_X_NULL_REF_POINTER 1780) 0x800706F4: StoreName or the hash is null. */
  RPC_X_NULL_REF_POINTER: 0x800706f4,
  /** HRESULT_FROM_WIN32(RPC_X_BAD_STUB_DATA 1783) 0x800706F7: the hash is not 20 bytes; GetClientCertificate without a certificate. */
  RPC_X_BAD_STUB_DATA: 0x800706f7,
  /** HRESULT_FROM_WIN32(ERROR_WINHTTP_TIMEOUT 12002) 0x80072EE2: the server did not answer in time. */
  ERROR_WINHTTP_TIMEOUT: 0x80072ee2,
  /** HRESULT_FROM_WIN32(ERROR_WINHTTP_NAME_NOT_RESOLVED 12007) 0x80072EE7: DNS lookup failed. */
  ERROR_WINHTTP_NAME_NOT_RESOLVED: 0x80072ee7,
  /** HRESULT_FROM_WIN32(ERROR_WINHTTP_CANNOT_CONNECT 12029) 0x80072EFD: TCP connect refused or unreachable. */
  ERROR_WINHTTP_CANNOT_CONNECT: 0x80072efd,
  /** HRESULT_FROM_WIN32(ERROR_WINHTTP_CONNECTION_ERROR 12030) 0x80072EFE: the connection was reset or closed mid-transfer. */
  ERROR_WINHTTP_CONNECTION_ERROR: 0x80072efe,
  /** HRESULT_FROM_WIN32(ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED 12044) 0x80072F0C: the server asked for a client certificate the job does not have. */
  ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED: 0x80072f0c,
  /** HRESULT_FROM_WIN32(ERROR_WINHTTP_SECURE_FAILURE 12175) 0x80072F8F: the server certificate did not verify, or the TLS handshake failed. */
  ERROR_WINHTTP_SECURE_FAILURE: 0x80072f8f,

  // HRESULT failures, FACILITY_SECURITY (CryptoAPI).
  /** NTE_BAD_ALGID 0x80090008: a PKCS#12 encryption scheme pkijs does not implement. */
  NTE_BAD_ALGID: 0x80090008,
  /** NTE_NO_KEY 0x8009000D: the certificate is in the store but its private key is not (certbound's addition). */
  NTE_NO_KEY: 0x8009000d,
  /** CRYPT_E_NOT_FOUND 0x80092004: no certificate (with its private key) matches the hash or subject. */
  CRYPT_E_NOT_FOUND: 0x80092004,
  /** CRYPT_E_NO_REVOCATION_CHECK 0x80092012: no revocation data (no CRL for a CA). */
  CRYPT_E_NO_REVOCATION_CHECK: 0x80092012,
  /** CRYPT_E_REVOCATION_OFFLINE 0x80092013: revocation server offline or CRL expired (CertFlags); no time-valid OCSP response to hand out (the OCSP handle: none yet, refused, unknown, revoked, or valid for < SrvOcspRespMinValiditySeconds). */
  CRYPT_E_REVOCATION_OFFLINE: 0x80092013,
  /** CRYPT_E_NOT_IN_REVOCATION_DATABASE 0x80092014: the end certificate has no OCSP URL in its AIA. */
  CRYPT_E_NOT_IN_REVOCATION_DATABASE: 0x80092014,
  /** TRUST_E_CERT_SIGNATURE 0x80096004: a signature in the chain did not verify. */
  TRUST_E_CERT_SIGNATURE: 0x80096004,
  /** CRYPT_E_ASN1_BADTAG 0x8009310B: a store file that does not parse. */
  CRYPT_E_ASN1_BADTAG: 0x8009310b,

  // HRESULT failures, FACILITY_CERT: the chain verdicts HTTP.sys puts in CertFlags.
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

  // HRESULT failures, BITS (bitsmsg.h).
  /** BG_E_NOT_FOUND 0x80200001: no job with this id. */
  BG_E_NOT_FOUND: 0x80200001,
  /** BG_E_INVALID_STATE 0x80200002: the job state does not allow the call (CANCELLED or ACKNOWLEDGED). */
  BG_E_INVALID_STATE: 0x80200002,
  /** BG_E_EMPTY 0x80200003: Resume on a job with no files. */
  BG_E_EMPTY: 0x80200003,
  /** BG_E_MISSING_FILE_SIZE 0x80200011: reserved for servers without Content-Length (certbound accepts them; see docs). */
  BG_E_MISSING_FILE_SIZE: 0x80200011,
  /** BG_E_INVALID_SERVER_RESPONSE 0x8020001B: a 206 whose Content-Range does not match what was asked. */
  BG_E_INVALID_SERVER_RESPONSE: 0x8020001b,
  /** BG_E_LOCAL_FILE_CHANGED 0x8020001D: the partial local file shrank or vanished between attempts. */
  BG_E_LOCAL_FILE_CHANGED: 0x8020001d,
  /** BG_E_STRING_TOO_LONG 0x80200021: StoreName (or SubjectName) is 256 characters or more (over 256 with the terminator). */
  BG_E_STRING_TOO_LONG: 0x80200021,
  /** BG_E_NO_PROGRESS 0x80200024: transient errors lasted longer than the no-progress timeout. */
  BG_E_NO_PROGRESS: 0x80200024,
} as const);
export type WinStatusName = keyof typeof WinStatus;

/** The entries of WinStatus named by `names`, in that order (an API's view of the one table). */
function pick<const K extends WinStatusName>(...names: K[]): Readonly<Pick<typeof WinStatus, K>> {
  const out: Partial<Record<K, number>> = {};
  for (const name of names) out[name] = WinStatus[name];
  return Object.freeze(out) as Readonly<Pick<typeof WinStatus, K>>;
}

/** Win32 error codes as returned by HttpReceiveClientCertificate. */
export const Win32 = pick(
  'NO_ERROR', 'ERROR_INVALID_PARAMETER', 'ERROR_INSUFFICIENT_BUFFER', 'ERROR_MORE_DATA', 'ERROR_NOT_SUPPORTED',
  'ERROR_IO_PENDING', 'ERROR_NOT_FOUND', 'ERROR_OPERATION_ABORTED', 'ERROR_TIMEOUT',
);
export type Win32Status = (typeof Win32)[keyof typeof Win32];

/** COM HRESULTs returned by the IIS-shaped negotiateClientCertificate. */
export const HResult = pick('S_OK', 'E_FAIL', 'E_NOT_SUPPORTED', 'E_TIMEOUT', 'E_ABORTED');

/**
 * Certificate trust HRESULTs, as HTTP.sys puts them in HTTP_SSL_CLIENT_CERT_INFO.CertFlags;
 * 0 (named OK here: S_OK) means the chain verified.
 * https://learn.microsoft.com/windows/win32/api/http/ns-http-http_ssl_client_cert_info
 */
export const CertStatus = Object.freeze({
  /** The chain verified (no error): S_OK. */
  OK: WinStatus.S_OK,
  ...pick(
    'CERT_E_EXPIRED', 'CERT_E_VALIDITYPERIODNESTING', 'CERT_E_ROLE', 'CERT_E_PATHLENCONST', 'CERT_E_CRITICAL', 'CERT_E_PURPOSE',
    'CERT_E_MALFORMED', 'CERT_E_UNTRUSTEDROOT', 'CERT_E_CHAINING', 'TRUST_E_FAIL', 'CERT_E_REVOKED', 'CERT_E_REVOCATION_FAILURE',
    'CERT_E_WRONG_USAGE', 'CERT_E_UNTRUSTEDCA', 'TRUST_E_CERT_SIGNATURE', 'CRYPT_E_NO_REVOCATION_CHECK', 'CRYPT_E_REVOCATION_OFFLINE',
  ),
});
export type CertStatusValue = (typeof CertStatus)[keyof typeof CertStatus];

/**
 * The HRESULTs the client's BITS-shaped APIs return (stores, selection, jobs), as named by
 * hresultName. The store and selection results E_INVALID_PASSWORD, NTE_BAD_ALGID,
 * CRYPT_E_ASN1_BADTAG and NTE_NO_KEY are in WinStatus but not in this view.
 */
export const BitsHResult = pick(
  'S_OK', 'S_FALSE', 'E_NOTIMPL', 'E_ACCESSDENIED', 'E_INVALIDARG', 'E_FILE_NOT_FOUND', 'RPC_X_NULL_REF_POINTER', 'RPC_X_BAD_STUB_DATA',
  'CRYPT_E_NOT_FOUND', 'BG_E_NOT_FOUND', 'BG_E_INVALID_STATE', 'BG_E_EMPTY', 'BG_E_MISSING_FILE_SIZE', 'BG_E_INVALID_SERVER_RESPONSE',
  'BG_E_LOCAL_FILE_CHANGED', 'BG_E_STRING_TOO_LONG', 'BG_E_NO_PROGRESS', 'BG_S_PARTIAL_COMPLETE', 'ERROR_WINHTTP_TIMEOUT',
  'ERROR_WINHTTP_NAME_NOT_RESOLVED', 'ERROR_WINHTTP_CANNOT_CONNECT', 'ERROR_WINHTTP_CONNECTION_ERROR',
  'ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED', 'ERROR_WINHTTP_SECURE_FAILURE',
);
export type BitsHResultValue = (typeof BitsHResult)[keyof typeof BitsHResult];

/**
 * What the server OCSP response handle functions return (CertOpenServerOcspResponse family).
 * https://learn.microsoft.com/windows/win32/api/wincrypt/nf-wincrypt-certopenserverocspresponse
 * https://learn.microsoft.com/windows/win32/api/wincrypt/nf-wincrypt-certgetserverocspresponsecontext
 */
export const OcspHandleStatus = pick('NO_ERROR', 'ERROR_INVALID_PARAMETER', 'CRYPT_E_REVOCATION_OFFLINE', 'CRYPT_E_NOT_IN_REVOCATION_DATABASE');
export type OcspHandleStatusValue = (typeof OcspHandleStatus)[keyof typeof OcspHandleStatus];

function nameIn(table: Readonly<Record<string, number>>, value: number): string | undefined {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return undefined;
}

/** The symbolic name of a CertFlags value, e.g. 'CERT_E_EXPIRED', or undefined. */
export function certStatusName(value: number): string | undefined {
  return nameIn(CertStatus, value);
}

/** The name of a Win32 status, e.g. 'ERROR_MORE_DATA'. */
export function win32StatusName(value: number): string | undefined {
  return nameIn(Win32, value);
}

/** The name of a BITS-side HRESULT (BitsHResult), e.g. 'CRYPT_E_NOT_FOUND' or 'BG_E_HTTP_ERROR_404'. */
export function hresultName(hr: number): string | undefined {
  const v = hr >>> 0;
  const name = nameIn(BitsHResult, v);
  if (name !== undefined) return name;
  if (((v & 0xffff0000) >>> 0) === 0x80190000) return `BG_E_HTTP_ERROR_${v & 0xffff}`;
  return undefined;
}

/** Lowercase 0x-prefixed 8-digit hex of a 32-bit status, as Windows prints HRESULTs. */
export function hresultHex(value: number): string {
  return '0x' + (value >>> 0).toString(16).padStart(8, '0');
}

/** HRESULT_FROM_WIN32: a Win32 error code in the FACILITY_WIN32 (7) failure space. */
export function hresultFromWin32(code: number): number {
  return code <= 0 ? code >>> 0 : ((code & 0xffff) | (7 << 16) | 0x80000000) >>> 0;
}

/** BG_E_HTTP_ERROR_<status>: BITS reports an HTTP status as 0x80190000 | status (bitsmsg.h). */
export function hresultFromHttpStatus(status: number): number {
  return (0x80190000 | (status & 0xffff)) >>> 0;
}

/** True for a success HRESULT (S_OK, S_FALSE, BG_S_*): the severity bit is clear. */
export function succeeded(hr: number): boolean {
  return (hr >>> 0) < 0x80000000;
}
