// How a failed transfer attempt is reported: the HRESULT (WinHTTP / BITS values, as BITS puts
// them in the job's error) and whether BITS would retry it (TRANSIENT_ERROR) or stop (ERROR).
import { HResult, hresultFromHttpStatus, hresultFromWin32 } from './hresult.js';

export interface TransferFailure {
  readonly hr: number;
  /** True: retried after the retry delay (TRANSIENT_ERROR). False: the job goes to ERROR. */
  readonly transient: boolean;
  readonly message: string;
}

/** What the attempt knew when it failed. */
export interface FailureContext {
  /** The job has a client certificate. */
  readonly hasCertificate: boolean;
  /** The server sent a CertificateRequest (seen through the shared signature algorithms). */
  readonly certificateRequested: boolean;
  /** Response headers had arrived when the attempt failed. Default: false. */
  readonly responseStarted?: boolean;
}

/** Server-certificate verification failures (Node's codes from OpenSSL's X509_V_ERR_*). */
const VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE', 'CERT_REVOKED', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA',
  'INVALID_PURPOSE', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
]);

/** HRESULT_FROM_WIN32(ERROR_DISK_FULL 112). */
const E_DISK_FULL = hresultFromWin32(112);

/** Classifies a socket, TLS or file-system error of one attempt. */
export function classifyError(err: unknown, ctx: FailureContext): TransferFailure {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = e?.code ?? '';
  const message = e?.message ?? String(err);
  // TLS 1.3: the server's certificate_required alert (116) arrives after our handshake is done.
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') return { hr: HResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED, transient: false, message };
  // TLS 1.2: handshake_failure (40) after a CertificateRequest we could not answer.
  if (!ctx.hasCertificate && ctx.certificateRequested) return { hr: HResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED, transient: false, message };
  if (VERIFY_CODES.has(code)) return { hr: HResult.ERROR_WINHTTP_SECURE_FAILURE, transient: false, message };
  // A Node server (requestCert + rejectUnauthorized) rejects a client certificate with a TCP
  // reset, not an alert: a reset right after it asked for our certificate, before any answer,
  // is a refusal of that certificate. Retrying would not change it.
  if (ctx.hasCertificate && ctx.certificateRequested && !ctx.responseStarted && (code === 'ECONNRESET' || code === 'EPIPE')) {
    return { hr: HResult.ERROR_WINHTTP_SECURE_FAILURE, transient: false, message: `the server closed the connection after asking for the client certificate (it rejected it?): ${message}` };
  }
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return { hr: HResult.ERROR_WINHTTP_CANNOT_CONNECT, transient: true, message };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { hr: HResult.ERROR_WINHTTP_NAME_NOT_RESOLVED, transient: true, message };
    case 'ETIMEDOUT':
    case 'CB_TIMEOUT':
      return { hr: HResult.ERROR_WINHTTP_TIMEOUT, transient: true, message };
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
    case 'ERR_STREAM_PREMATURE_CLOSE':
    case 'CB_PREMATURE_END':
      return { hr: HResult.ERROR_WINHTTP_CONNECTION_ERROR, transient: true, message };
    // ELOOP, EISDIR: the partial file is a symbolic link (opened with O_NOFOLLOW) or a directory.
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
    case 'ELOOP':
    case 'EISDIR':
      return { hr: HResult.E_ACCESSDENIED, transient: false, message };
    case 'ENOSPC':
      return { hr: E_DISK_FULL, transient: false, message };
  }
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO' || /SSL routines/.test(message)) {
    return { hr: HResult.ERROR_WINHTTP_SECURE_FAILURE, transient: false, message };
  }
  return { hr: HResult.ERROR_WINHTTP_CONNECTION_ERROR, transient: true, message };
}

/** HTTP statuses BITS retries: the server may be back later. */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** Classifies an HTTP status that ends an attempt (BG_E_HTTP_ERROR_<status>). */
export function classifyStatus(status: number): TransferFailure {
  return { hr: hresultFromHttpStatus(status), transient: TRANSIENT_STATUS.has(status), message: `HTTP ${status}` };
}
