// The four client-certificate modes at handshake, and the TLS options each one needs.

/**
 * - `none`: the server does not ask for a certificate.
 * - `optional`: asks; a client may send none; a certificate that is sent must verify
 *   (requests on a connection with a bad one get 403 CB_ERR_CLIENT_CERT_UNTRUSTED).
 * - `require`: a trusted certificate is required; OpenSSL refuses the handshake otherwise.
 * - `accept-untrusted`: asks and lets every certificate in; the application decides from
 *   `certFlags` (the CERT_E_* verdict), as HTTP.sys hands it over.
 */
export const CLIENT_AUTH_MODES = ['none', 'optional', 'require', 'accept-untrusted'] as const;
export type ClientAuthMode = (typeof CLIENT_AUTH_MODES)[number];

export function isClientAuthMode(value: unknown): value is ClientAuthMode {
  return typeof value === 'string' && (CLIENT_AUTH_MODES as readonly string[]).includes(value);
}

/** The `tls.createServer` options that implement a mode. */
export function tlsOptionsForMode(mode: ClientAuthMode): { requestCert: boolean; rejectUnauthorized: boolean } {
  switch (mode) {
    case 'none': return { requestCert: false, rejectUnauthorized: false };
    case 'optional': return { requestCert: true, rejectUnauthorized: false };
    case 'require': return { requestCert: true, rejectUnauthorized: true };
    case 'accept-untrusted': return { requestCert: true, rejectUnauthorized: false };
  }
}
