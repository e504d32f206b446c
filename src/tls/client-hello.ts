// A strict, bounded reader of the TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2), for
// deciding a connection's TLS policy from its SNI before TLS starts (Node's SNICallback
// cannot change maxVersion). It never throws: every input is 'incomplete', 'ok' or
// 'invalid' with a reason, and it reads no more than MAX_CLIENT_HELLO_BYTES.

/** What the policy needs of a ClientHello. */
export interface ClientHelloInfo {
  /** SNI host_name (lowercase), or null when the client sent none. */
  readonly serverName: string | null;
  /** ALPN protocols offered, in order. */
  readonly alpn: readonly string[];
  /** supported_versions (TLS 1.3 clients), else [legacy_version]. 0x0304 = TLS 1.3. */
  readonly versions: readonly number[];
  /** cipher_suites in the client's order (IANA values). */
  readonly cipherSuites: readonly number[];
}

export type ClientHelloParse =
  | { readonly status: 'incomplete' }
  | { readonly status: 'ok'; readonly hello: ClientHelloInfo }
  | { readonly status: 'invalid'; readonly reason: string };

/** Bytes read at most before giving up: a ClientHello is ≤ 64 KiB plus record headers. */
export const MAX_CLIENT_HELLO_BYTES = 70_000;
const MAX_RECORD = 16_384 + 256;
const MAX_HANDSHAKE = 65_536;

const invalid = (reason: string): ClientHelloParse => ({ status: 'invalid', reason });
const INCOMPLETE: ClientHelloParse = Object.freeze({ status: 'incomplete' });

/** Reassembles the handshake message from the TLS records at the start of `buf`. */
function handshakeBytes(buf: Buffer): Buffer | ClientHelloParse {
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  for (;;) {
    if (buf.length < off + 5) return buf.length >= MAX_CLIENT_HELLO_BYTES ? invalid('too long') : INCOMPLETE;
    if (buf[off] !== 22) return invalid(off === 0 ? 'not a TLS handshake record' : 'ClientHello interrupted by another record type');
    // OpenSSL checks the record's major version only (a 0x0305 record version is served).
    if (buf[off + 1] !== 3) return invalid('bad record version');
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > MAX_RECORD) return invalid('bad record length');
    if (buf.length < off + 5 + len) return off + 5 + len > MAX_CLIENT_HELLO_BYTES ? invalid('too long') : INCOMPLETE;
    const frag = buf.subarray(off + 5, off + 5 + len);
    parts.push(frag);
    have += frag.length;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const head = Buffer.concat(parts);
      if (head[0] !== 1) return invalid('not a ClientHello');
      need = 4 + head.readUIntBE(1, 3);
      if (need - 4 > MAX_HANDSHAKE) return invalid('ClientHello too long');
    }
    if (need >= 0 && have >= need) {
      if (have > need) return invalid('data after the ClientHello in its record');
      return Buffer.concat(parts);
    }
  }
}

/** A bounds-checked cursor: every read fails cleanly past the end. */
class Reader {
  off = 0;
  constructor(readonly b: Buffer, readonly end = b.length) {}
  left(): number { return this.end - this.off; }
  u8(): number | null { return this.off + 1 <= this.end ? this.b[this.off++] ?? null : null; }
  u16(): number | null {
    if (this.off + 2 > this.end) return null;
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  bytes(n: number): Buffer | null {
    if (n < 0 || this.off + n > this.end) return null;
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  sub(n: number): Reader | null {
    if (n < 0 || this.off + n > this.end) return null;
    const r = new Reader(this.b, this.off + n);
    r.off = this.off;
    this.off += n;
    return r;
  }
}

/**
 * The longest host_name OpenSSL accepts (TLSEXT_MAXLEN_host_name). OpenSSL takes any
 * host_name of 1–255 bytes without a NUL byte (ssl/statem/extensions_srvr.c,
 * tls_parse_ctos_server_name): internal names such as `my_host.internal` included. The reader
 * accepts the same set, so that a name the server would serve is never closed before TLS.
 */
const MAX_HOST_NAME = 255;

function parseServerName(r: Reader): string | null | ClientHelloParse {
  const listLen = r.u16();
  if (listLen === null || listLen !== r.left() || listLen < 3) return invalid('bad server_name list');
  let name: string | null = null;
  while (r.left() > 0) {
    const type = r.u8();
    const len = r.u16();
    if (type === null || len === null) return invalid('truncated server_name entry');
    const value = r.bytes(len);
    if (!value) return invalid('bad server_name length');
    if (type !== 0) continue; // only host_name is defined (RFC 6066 3)
    // OpenSSL takes an empty host_name as no name at all: so does the policy (no SNI).
    if (len === 0) continue;
    if (name !== null) return invalid('two host_name entries');
    if (len > MAX_HOST_NAME || value.includes(0)) return invalid('server_name is not a host name OpenSSL accepts');
    const text = value.toString('latin1').toLowerCase();
    name = text;
  }
  return name;
}

function parseAlpn(r: Reader): string[] | ClientHelloParse {
  const listLen = r.u16();
  if (listLen === null || listLen !== r.left() || listLen < 2) return invalid('bad ALPN list');
  const out: string[] = [];
  while (r.left() > 0) {
    const len = r.u8();
    if (!len) return invalid('empty ALPN protocol');
    const p = r.bytes(len);
    if (!p) return invalid('truncated ALPN protocol');
    out.push(p.toString('latin1'));
  }
  return out;
}

function parseVersions(r: Reader): number[] | ClientHelloParse {
  const len = r.u8();
  if (len === null || len !== r.left() || len < 2 || len % 2 !== 0) return invalid('bad supported_versions');
  const out: number[] = [];
  while (r.left() > 0) out.push(r.u16() ?? 0);
  return out;
}

/** Parses the ClientHello at the start of `buf` (the first bytes a client sends). */
export function parseClientHello(buf: Buffer): ClientHelloParse {
  const hs = handshakeBytes(buf);
  if (!Buffer.isBuffer(hs)) return hs;
  const r = new Reader(hs);
  r.off = 4;
  const legacyVersion = r.u16();
  if (legacyVersion === null || legacyVersion >> 8 !== 3) return invalid('bad legacy_version');
  if (!r.bytes(32)) return invalid('truncated random');
  const sidLen = r.u8();
  if (sidLen === null || sidLen > 32 || !r.bytes(sidLen)) return invalid('bad session_id');
  const csLen = r.u16();
  const cs = csLen === null ? null : r.bytes(csLen);
  if (csLen === null || csLen < 2 || csLen % 2 !== 0 || !cs) return invalid('bad cipher_suites');
  const cipherSuites = Object.freeze(Array.from({ length: csLen / 2 }, (_, i) => cs.readUInt16BE(i * 2)));
  const compLen = r.u8();
  if (!compLen || !r.bytes(compLen)) return invalid('bad compression_methods');
  let serverName: string | null = null;
  let alpn: string[] = [];
  let versions: number[] = [legacyVersion];
  if (r.left() === 0) return { status: 'ok', hello: Object.freeze({ serverName, alpn, versions, cipherSuites }) };
  const extLen = r.u16();
  if (extLen === null || extLen !== r.left()) return invalid('bad extensions length');
  const seen = new Set<number>();
  while (r.left() > 0) {
    const type = r.u16();
    const len = r.u16();
    if (type === null || len === null) return invalid('truncated extension header');
    const body = r.sub(len);
    if (!body) return invalid('truncated extension');
    if (seen.has(type)) return invalid(`duplicate extension ${type}`);
    seen.add(type);
    if (type === 0) {
      const v = parseServerName(body);
      if (v !== null && typeof v === 'object') return v;
      serverName = v;
    } else if (type === 16) {
      const v = parseAlpn(body);
      if (!Array.isArray(v)) return v;
      alpn = v;
    } else if (type === 43) {
      const v = parseVersions(body);
      if (!Array.isArray(v)) return v;
      versions = v;
    }
  }
  return { status: 'ok', hello: Object.freeze({ serverName, alpn: Object.freeze(alpn), versions: Object.freeze(versions), cipherSuites }) };
}
