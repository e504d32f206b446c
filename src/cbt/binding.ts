// A channel binding is a value that names one TLS channel (RFC 5056, RFC 5929, RFC 9266).
// A binding that is undefined for a connection is reported with a stable reason code and a
// message, never as a made-up value: callers must be able to tell "absent" from "wrong".

/** The channel binding types certbound computes (RFC 5929 section 3 and 4, RFC 9266 section 2). */
export const CHANNEL_BINDING_TYPES = Object.freeze(['tls-unique', 'tls-server-end-point', 'tls-exporter'] as const);
export type ChannelBindingType = (typeof CHANNEL_BINDING_TYPES)[number];

/** True when `type` names one of the three channel binding types. */
export function isChannelBindingType(type: unknown): type is ChannelBindingType {
  return typeof type === 'string' && (CHANNEL_BINDING_TYPES as readonly string[]).includes(type);
}

/**
 * Why a binding is undefined for a connection. Stable codes: match on them, not on messages.
 * - `no-handshake`: the socket has not completed a handshake (or is closed).
 * - `tls13`: tls-unique is not defined for TLS 1.3 (RFC 8446 section C.5, RFC 9266 section 3).
 * - `no-extended-master-secret`: TLS 1.2 without RFC 7627 extended master secret; tls-unique
 *   and tls-exporter are not unique then (triple handshake, RFC 7627 section 1, RFC 9266 section 4.2).
 * - `session-unknown`: the session could not be read, so extended master secret cannot be confirmed.
 * - `renegotiation-possible`: TLS 1.2 tls-exporter where renegotiation is not disabled (RFC 9266 section 4.2).
 * - `no-certificate`: there is no server certificate (e.g. a PSK handshake).
 * - `no-single-hash`: the certificate's signature algorithm has no single hash (Ed25519, Ed448,
 *   RSA-PSS whose MGF1 hash differs from its message hash) (RFC 5929 section 4.1).
 * - `unknown-signature-algorithm`: a signature algorithm certbound cannot map to a hash.
 * - `malformed-certificate`: the certificate DER could not be parsed.
 * - `unsupported-protocol`: a protocol version other than TLS 1.0 to 1.3.
 */
export type UnavailableReason =
  | 'no-handshake'
  | 'tls13'
  | 'no-extended-master-secret'
  | 'session-unknown'
  | 'renegotiation-possible'
  | 'no-certificate'
  | 'no-single-hash'
  | 'unknown-signature-algorithm'
  | 'malformed-certificate'
  | 'unsupported-protocol';

/** A binding value, or undefined with the reason. */
export type BindingResult =
  | { readonly value: Buffer; readonly reason?: undefined; readonly message?: undefined }
  | { readonly value: undefined; readonly reason: UnavailableReason; readonly message: string };

/** All three bindings of one connection, as seen by one side at one moment. */
export type ChannelBindings = Readonly<Record<ChannelBindingType, BindingResult>>;

export function available(value: Buffer): BindingResult {
  return Object.freeze({ value });
}

export function unavailable(reason: UnavailableReason, message: string): BindingResult {
  return Object.freeze({ value: undefined, reason, message });
}

/**
 * The application-data form of a binding: the ASCII type name, a colon, then the raw value
 * (RFC 5056 section 2.1, RFC 5929 sections 3.1/4.1). This is what GSS-API puts in the
 * `application_data` of its channel bindings (and what SSPI's endpoint bindings carry); SASL
 * SCRAM (RFC 5802 section 6) and most application protocols use the raw value instead.
 */
export function applicationData(type: ChannelBindingType, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${type}:`, 'ascii'), value]);
}

/** The token form handed out: `raw` value or `application-data` (`<type>:` + value). */
export type TokenForm = 'raw' | 'application-data';

/** The binding value in the given form. */
export function tokenBytes(type: ChannelBindingType, value: Buffer, form: TokenForm): Buffer {
  return form === 'raw' ? value : applicationData(type, value);
}

/** Lowercase hex of a binding value, or null when undefined (the /connection JSON shape). */
export function bindingHex(result: BindingResult): string | null {
  return result.value === undefined ? null : result.value.toString('hex');
}
