// Every exception certbound throws is declared here once, with a stable code, an HTTP
// status (for errors that reach a client) and a message template, as fastify's FST_ERR_*.
// Windows-shaped APIs do not throw: they return the values in src/status.ts.

export interface ErrorSpec {
  /** HTTP status when this error answers a request. */
  readonly statusCode: number;
  /** Message template; `%s` is replaced by the arguments in order. */
  readonly message: string;
}

export const ERRORS = Object.freeze({
  CB_ERR_INVALID_OPTION: { statusCode: 500, message: 'Invalid option %s: %s' },
  CB_ERR_INVALID_ARGUMENT: { statusCode: 500, message: 'Invalid argument %s: %s' },
  CB_ERR_CONFIG_FILE: { statusCode: 500, message: 'Cannot read config file %s: %s' },
  CB_ERR_PEM_MISSING: { statusCode: 500, message: 'Cannot read %s file %s: %s' },
  CB_ERR_PEM_INVALID: { statusCode: 500, message: 'The %s file %s holds no valid %s' },
  CB_ERR_KEY_MISMATCH: { statusCode: 500, message: 'The key in %s does not match the certificate in %s' },
  CB_ERR_TLS_CONTEXT: { statusCode: 500, message: 'Node\'s TLS layer refused %s: %s' },
  CB_ERR_PFX_INVALID: { statusCode: 500, message: 'Cannot use the PKCS#12 bundle %s: %s' },
  CB_ERR_PASSPHRASE_FILE: { statusCode: 500, message: 'Cannot read the passphrase file %s: %s' },
  CB_ERR_LISTEN: { statusCode: 500, message: 'Cannot listen on %s:%s: %s' },
  CB_ERR_RELOAD: { statusCode: 500, message: 'Reload refused, the certificates in use stay in place: %s' },
  CB_ERR_CLIENT_CERT_REQUIRED: { statusCode: 403, message: 'A client certificate is required' },
  CB_ERR_CLIENT_CERT_UNTRUSTED: { statusCode: 403, message: 'The client certificate did not verify (%s)' },
  CB_ERR_CLIENT_CERT_DENIED: { statusCode: 403, message: 'The client certificate is not mapped to an identity' },
  CB_ERR_TLS_REQUIRED: { statusCode: 403, message: 'This route needs a client certificate, and the request did not come over TLS' },
  CB_ERR_ROUTE_UNGUARDED: { statusCode: 500, message: 'Route %s has certbound options but certbound did not see it registered (declare it after app.register(certbound)); refused rather than served unchecked' },
  CB_ERR_IDENTITY_CHANGED: { statusCode: 403, message: 'The client certificate changed in a handshake the server did not start' },
  CB_ERR_NEGOTIATE_TLS13: { statusCode: 403, message: 'This route needs a client certificate, and TLS 1.3 cannot ask for one after the handshake (Node has no post-handshake authentication): connect with TLS 1.2, or present a certificate at the handshake' },
  CB_ERR_NEGOTIATE_LIMIT: { statusCode: 403, message: 'This connection has already renegotiated once; open a new connection to present a client certificate' },
  CB_ERR_BODY_TOO_LARGE: { statusCode: 413, message: 'The request body is larger than the route allows (%s bytes); an on-demand route reads it before asking for a certificate' },
  CB_ERR_NEGOTIATE_BODY: { statusCode: 500, message: 'A client certificate can only be negotiated once the request body has been read (use the route option, which negotiates in preHandler)' },
  CB_ERR_CONNECTION_EXPIRED: { statusCode: 503, message: 'This connection is past its maximum lifetime (%s ms) and is closing: send the request on a new connection' },
  CB_ERR_CHANNEL_BINDING: { statusCode: 403, message: 'No valid channel binding for this connection (%s): %s' },
  CB_ERR_UPSTREAM_UNAVAILABLE: { statusCode: 502, message: 'The upstream could not be reached or broke off its answer (%s)' },
  CB_ERR_UPSTREAM_TIMEOUT: { statusCode: 504, message: 'The upstream did not answer in time (%s)' },
  CB_ERR_FORWARDED_CERT_INVALID: { statusCode: 400, message: 'A trusted proxy forwarded a malformed RFC 9440 header (%s)' },
  CB_ERR_FORWARDED_CERT_TOO_LARGE: { statusCode: 400, message: 'A trusted proxy forwarded an RFC 9440 header over certbound\'s bound (%s)' },
  CB_ERR_DEV_PKI: { statusCode: 500, message: 'Cannot use the dev PKI directory %s: %s' },
  CB_ERR_OCSP_CACHE: { statusCode: 500, message: 'Cannot use the OCSP cache directory %s: %s' },
  CB_ERR_OCSP_CHAIN: { statusCode: 500, message: 'OCSP stapling needs the certificate chain, leaf first, then its issuer (%s)' },
  CB_ERR_OCSP_CLOSED: { statusCode: 500, message: 'The OCSP stapler is closed' },
  CB_ERR_PRIVATE_DIR: { statusCode: 500, message: 'Cannot use %s as a private directory (mode 0700, owned by this user): %s' },
  CB_ERR_FLEET_SECRET: { statusCode: 500, message: 'Cannot use the fleet secret %s: %s' },
  CB_ERR_FLEET_UNAVAILABLE: { statusCode: 500, message: 'The fleet\'s Redis %s is unavailable (%s): this machine serves with its own ticket keys, staples and revocation cache until it is back' },
  CB_ERR_FLEET_TICKETS: { statusCode: 500, message: 'The fleet\'s session-ticket keys in Redis cannot be used (%s): %s' },
  CB_ERR_SECRET_FILE: { statusCode: 500, message: 'Cannot use the secret file %s: %s' },
  CB_ERR_SECRET_FILE_MODE: { statusCode: 500, message: 'The secret file %s is mode %s: group or others can access it (chmod 600 it)' },
  CB_ERR_STORE_DIR_UNSAFE: { statusCode: 500, message: 'The store directory %s %s: whoever can write it can add certificates and keys to the store (chmod go-w it; it should belong to this user or root)' },
  CB_ERR_JOB_FILE_INVALID: { statusCode: 500, message: 'Job file %s is not a valid job (%s); %s' },
  CB_ERR_JOB_FILE_UNSAFE: { statusCode: 500, message: 'Job file %s names a path outside its place (%s); %s' },
  CB_ERR_INTERNAL: { statusCode: 500, message: 'Unexpected error (a bug in certbound: please report it with this line): %s' },
} as const satisfies Record<string, ErrorSpec>);

export type ErrorCode = keyof typeof ERRORS;

/** The one error class: `code` is stable, `statusCode` is the HTTP status it maps to. */
export class CertboundError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  constructor(code: ErrorCode, args: readonly (string | number)[] = [], options?: { cause?: unknown }) {
    const spec: ErrorSpec = ERRORS[code];
    let i = 0;
    super(spec.message.replace(/%s/g, () => String(args[i++] ?? '')), options);
    this.name = 'CertboundError';
    this.code = code;
    this.statusCode = spec.statusCode;
  }
}

/** True when `err` is a CertboundError with the given code (or any code). */
export function isCertboundError(err: unknown, code?: ErrorCode): err is CertboundError {
  return err instanceof CertboundError && (code === undefined || err.code === code);
}
