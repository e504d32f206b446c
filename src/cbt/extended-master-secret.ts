// Extended master secret (RFC 7627) detection. Node reports no EMS flag, but the session it
// serialises (`tlsSocket.getSession()`, OpenSSL's i2d_SSL_SESSION) carries OpenSSL's session
// flags, where SSL_SESS_FLAG_EXTMS (0x1) records that EMS was negotiated. The layout is
// OpenSSL's SSL_SESSION_ASN1 (ssl/ssl_asn1.c): SEQUENCE { version INTEGER (1), ssl_version
// INTEGER, cipher, session_id, master_key OCTET STRINGs, ..., flags [13] EXPLICIT INTEGER
// OPTIONAL (omitted when 0), ... }. The DER holds the master secret: it is parsed in memory
// here and never logged or kept.
import * as asn1js from 'asn1js';

/** OpenSSL's SSL_SESSION_ASN1 encoding version (ssl_local.h SSL_SESSION_ASN1_VERSION). */
const SESSION_ASN1_VERSION = 1;
/** Context tag of the `flags` member of SSL_SESSION_ASN1. */
const FLAGS_TAG = 13;
/** SSL_SESS_FLAG_EXTMS: the session's master secret is an extended master secret. */
const SSL_SESS_FLAG_EXTMS = 0x1n;

export interface SessionFacts {
  /** The TLS version of the session, e.g. 0x0303 for TLS 1.2, 0x0304 for TLS 1.3. */
  readonly protocolVersion: number;
  /** True when the SSL_SESS_FLAG_EXTMS bit is set. */
  readonly extendedMasterSecret: boolean;
}

function integerOf(block: asn1js.AsnType | undefined): bigint | undefined {
  return block instanceof asn1js.Integer ? block.toBigInt() : undefined;
}

/**
 * Reads the protocol version and the EMS flag from an OpenSSL session DER.
 * Returns undefined when the DER is not an SSL_SESSION_ASN1 this function understands
 * (garbage, truncated, another encoding version): callers then treat EMS as unknown.
 */
export function sessionFacts(der: Uint8Array | undefined): SessionFacts | undefined {
  if (!der || der.length === 0) return undefined;
  const parsed = asn1js.fromBER(der);
  if (parsed.offset === -1 || !(parsed.result instanceof asn1js.Sequence)) return undefined;
  const members = parsed.result.valueBlock.value;
  if (integerOf(members[0]) !== BigInt(SESSION_ASN1_VERSION)) return undefined;
  const version = integerOf(members[1]);
  if (version === undefined || version < 0n || version > 0xffffn) return undefined;
  let flags = 0n;
  for (const member of members.slice(2)) {
    const id = member.idBlock;
    if (id.tagClass !== 3 || id.tagNumber !== FLAGS_TAG) continue;
    const inner = member instanceof asn1js.Constructed ? member.valueBlock.value[0] : undefined;
    const value = integerOf(inner);
    if (value === undefined) return undefined;
    flags = value;
  }
  return Object.freeze({ protocolVersion: Number(version), extendedMasterSecret: (flags & SSL_SESS_FLAG_EXTMS) !== 0n });
}
