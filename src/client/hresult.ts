// The HRESULT values that the client's BITS-shaped APIs return (stores, selection, jobs).
// Values are from the Windows SDK (winerror.h, bitsmsg.h, winhttp.h); each line says what it
// means here. They are RETURNED, never thrown: exceptions are for programming errors.

/** HRESULT_FROM_WIN32: a Win32 error code in the FACILITY_WIN32 (7) failure space. */
export function hresultFromWin32(code: number): number {
  return code <= 0 ? code >>> 0 : ((code & 0xffff) | (7 << 16) | 0x80000000) >>> 0;
}

/** True for a success HRESULT (S_OK, S_FALSE, BG_S_*): the severity bit is clear. */
export function succeeded(hr: number): boolean {
  return (hr >>> 0) < 0x80000000;
}

export const HResult = Object.freeze({
  /** Success. */
  S_OK: 0,
  /** Success, nothing to do (RemoveClientCertificate on a job without a certificate). */
  S_FALSE: 1,
  /** E_NOTIMPL 0x80004001: the StoreLocation is not in BG_CERT_STORE_LOCATION (seeds 001/002). */
  E_NOTIMPL: 0x80004001,
  /** E_ACCESSDENIED 0x80070005: no permission on the store location (EACCES/EPERM), or the caller is not the job owner. */
  E_ACCESSDENIED: 0x80070005,
  /** E_INVALIDARG 0x80070057: an argument is malformed where the seeds name no specific error (empty subject name, bad URL). */
  E_INVALIDARG: 0x80070057,
  /** HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND) 0x80070002: no store matches StoreName. */
  E_FILE_NOT_FOUND: 0x80070002,
  /** HRESULT_FROM_WIN32(RPC_X_NULL_REF_POINTER 1780) 0x800706F4: StoreName or the hash is null. */
  RPC_X_NULL_REF_POINTER: 0x800706f4,
  /** HRESULT_FROM_WIN32(RPC_X_BAD_STUB_DATA 1783) 0x800706F7: the hash is not 20 bytes; GetClientCertificate without a certificate. */
  RPC_X_BAD_STUB_DATA: 0x800706f7,
  /** CRYPT_E_NOT_FOUND 0x80092004: no certificate (with its private key) matches the hash or subject. */
  CRYPT_E_NOT_FOUND: 0x80092004,
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
  /** BG_S_PARTIAL_COMPLETE 0x00200017: Complete kept only the files that had fully transferred. */
  BG_S_PARTIAL_COMPLETE: 0x00200017,
  /** ERROR_WINHTTP_TIMEOUT (12002) 0x80072EE2: the server did not answer in time. */
  ERROR_WINHTTP_TIMEOUT: 0x80072ee2,
  /** ERROR_WINHTTP_NAME_NOT_RESOLVED (12007) 0x80072EE7: DNS lookup failed. */
  ERROR_WINHTTP_NAME_NOT_RESOLVED: 0x80072ee7,
  /** ERROR_WINHTTP_CANNOT_CONNECT (12029) 0x80072EFD: TCP connect refused or unreachable. */
  ERROR_WINHTTP_CANNOT_CONNECT: 0x80072efd,
  /** ERROR_WINHTTP_CONNECTION_ERROR (12030) 0x80072EFE: the connection was reset or closed mid-transfer. */
  ERROR_WINHTTP_CONNECTION_ERROR: 0x80072efe,
  /** ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED (12044) 0x80072F0C: the server asked for a client certificate the job does not have. */
  ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED: 0x80072f0c,
  /** ERROR_WINHTTP_SECURE_FAILURE (12175) 0x80072F8F: the server certificate did not verify, or the TLS handshake failed. */
  ERROR_WINHTTP_SECURE_FAILURE: 0x80072f8f,
} as const);
export type HResultValue = (typeof HResult)[keyof typeof HResult];

/** BG_E_HTTP_ERROR_<status>: BITS reports an HTTP status as 0x80190000 | status (bitsmsg.h). */
export function hresultFromHttpStatus(status: number): number {
  return (0x80190000 | (status & 0xffff)) >>> 0;
}

/** The symbolic name of an HRESULT this module knows, e.g. 'CRYPT_E_NOT_FOUND' or 'BG_E_HTTP_ERROR_404'. */
export function hresultName(hr: number): string | undefined {
  const v = hr >>> 0;
  for (const [name, value] of Object.entries(HResult)) if (value === v) return name;
  if (((v & 0xffff0000) >>> 0) === 0x80190000) return `BG_E_HTTP_ERROR_${v & 0xffff}`;
  return undefined;
}
