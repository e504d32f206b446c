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

/** One element of a DER buffer: its identifier octet(s) and where its encoding starts and ends. */
interface Element { readonly tagClass: number; readonly constructed: boolean; readonly tagNumber: number; readonly start: number; readonly contentStart: number; readonly end: number }

/**
 * The identifier and length octets of the element at `at` (X.690 8.1.2, 8.1.3: definite lengths
 * only, as DER has), without reading its contents; undefined when they are malformed or run past
 * `limit`.
 */
function elementAt(der: Uint8Array, at: number, limit: number): Element | undefined {
  let i = at;
  if (i >= limit) return undefined;
  const first = der[i++] as number;
  let tagNumber = first & 0x1f;
  if (tagNumber === 0x1f) {
    tagNumber = 0;
    for (let n = 0; ; n++) {
      if (i >= limit || n >= 4) return undefined;
      const b = der[i++] as number;
      tagNumber = tagNumber * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
  }
  if (i >= limit) return undefined;
  let length = der[i++] as number;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4) return undefined;
    length = 0;
    for (let n = 0; n < octets; n++) {
      if (i >= limit) return undefined;
      length = length * 256 + (der[i++] as number);
    }
  }
  const end = i + length;
  if (end > limit) return undefined;
  return { tagClass: first >> 6, constructed: (first & 0x20) !== 0, tagNumber, start: at, contentStart: i, end };
}

/** One element of `der` parsed by asn1js, or undefined. */
function parsed(der: Uint8Array, e: Element): asn1js.AsnType | undefined {
  const r = asn1js.fromBER(der.subarray(e.start, e.end));
  return r.offset === -1 ? undefined : r.result;
}

/**
 * Reads the protocol version and the EMS flag from an OpenSSL session DER.
 * Returns undefined when the DER is not an SSL_SESSION_ASN1 this function understands
 * (garbage, truncated, another encoding version): callers then treat EMS as unknown.
 * Only the members it needs are parsed (asn1js); the others, the peer's certificate among them,
 * are stepped over by their lengths: parsing the whole session cost about 0.5 ms per TLS 1.2
 * connection that asked for a channel binding (docs/performance.md).
 */
export function sessionFacts(der: Uint8Array | undefined): SessionFacts | undefined {
  if (!der || der.length === 0) return undefined;
  const outer = elementAt(der, 0, der.length);
  // SEQUENCE (universal, constructed, 16).
  if (!outer || outer.tagClass !== 0 || !outer.constructed || outer.tagNumber !== 16) return undefined;
  const members: Element[] = [];
  for (let at = outer.contentStart; at < outer.end;) {
    const e = elementAt(der, at, outer.end);
    if (!e) return undefined;
    members.push(e);
    at = e.end;
  }
  const [first, second] = members;
  if (!first || !second || integerOf(parsed(der, first)) !== BigInt(SESSION_ASN1_VERSION)) return undefined;
  const version = integerOf(parsed(der, second));
  if (version === undefined || version < 0n || version > 0xffffn) return undefined;
  let flags = 0n;
  for (const member of members.slice(2)) {
    if (member.tagClass !== 2 || member.tagNumber !== FLAGS_TAG) continue;
    const block = member.constructed ? parsed(der, member) : undefined;
    const inner = block instanceof asn1js.Constructed ? block.valueBlock.value[0] : undefined;
    const value = integerOf(inner);
    if (value === undefined) return undefined;
    flags = value;
  }
  return Object.freeze({ protocolVersion: Number(version), extendedMasterSecret: (flags & SSL_SESS_FLAG_EXTMS) !== 0n });
}
