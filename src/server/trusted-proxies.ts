// Which peers may hand certbound a client certificate in RFC 9440 headers: the `trustedProxies`
// option. An entry is an address or CIDR (IPv4 or IPv6; an IPv4-mapped IPv6 peer such as
// ::ffff:127.0.0.1 matches IPv4 entries), or an mTLS identity of the proxy on its own, authorized
// TLS connection: `sha256:<hex>` / `sha1:<hex>` (its certificate's thumbprint) or
// `identity:<name>` (what the mapper made of it). Matching uses node:net's BlockList.
import { BlockList, isIP } from 'node:net';
import { CertboundError } from '../errors.js';
import type { ClientCertificate } from '../tls/client-certificate.js';

/** One entry, as the option, the `--trusted-proxy` flag and the config key give it. */
export type TrustedProxyEntry = string;

/** The compiled list: what a peer must be for its headers to be read. */
export interface TrustedProxies {
  /** The entries as given (for logs and docs). */
  readonly entries: readonly string[];
  /** True when `address` (a socket's remoteAddress) is in an address or CIDR entry. */
  matchesAddress(address: string | undefined): boolean;
  /** True when some entry names an mTLS identity (the connection's decision is then needed). */
  readonly byIdentity: boolean;
  /**
   * True when the proxy's own connection certificate is named by an identity entry. Only an
   * authorized certificate counts (verified chain, revocation passed, not denied by the mapper).
   */
  matchesCertificate(cert: Pick<ClientCertificate, 'authorized' | 'sha1' | 'sha256' | 'identity'> | null): boolean;
}

const bad = (i: number, why: string): never => {
  throw new CertboundError('CB_ERR_INVALID_OPTION', [`trustedProxies[${i}]`, why]);
};

/** An address without brackets, zone or IPv4-mapped prefix: `::ffff:10.0.0.1` → `10.0.0.1`. */
export function normalizeAddress(address: string): string {
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(a);
  if (mapped && isIP(mapped[1] as string) === 4) return mapped[1] as string;
  return a;
}

/**
 * Compiles the entries; a bad one stops start-up with CB_ERR_INVALID_OPTION naming it. Accepted:
 * `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`, `::ffff:10.0.0.0/104` (mapped: taken as IPv4
 * 10.0.0.0/8), `sha256:` + 64 hex digits, `sha1:` + 40 hex digits (colons allowed), `identity:NAME`.
 */
export function compileTrustedProxies(entries: readonly TrustedProxyEntry[] | undefined): TrustedProxies | undefined {
  if (entries === undefined || entries.length === 0) return undefined;
  const list = new BlockList();
  const sha1 = new Set<string>();
  const sha256 = new Set<string>();
  const identities = new Set<string>();
  let addresses = 0;
  entries.forEach((raw, i) => {
    if (typeof raw !== 'string' || raw.trim() === '') bad(i, `expected an address, a CIDR, sha256:HEX, sha1:HEX or identity:NAME, got ${JSON.stringify(raw)}`);
    const entry = raw.trim();
    const kind = /^(sha256|sha1|identity):(.*)$/i.exec(entry);
    if (kind) {
      const what = (kind[1] as string).toLowerCase();
      const value = kind[2] as string;
      if (what === 'identity') {
        if (value === '') bad(i, 'identity: needs the mapped identity after the colon');
        identities.add(value);
        return;
      }
      const hex = value.replace(/:/g, '').toLowerCase();
      const digits = what === 'sha256' ? 64 : 40;
      if (!new RegExp(`^[0-9a-f]{${digits}}$`).test(hex)) bad(i, `${what}: needs ${digits} hex digits, got ${JSON.stringify(value)}`);
      (what === 'sha256' ? sha256 : sha1).add(hex);
      return;
    }
    const slash = entry.indexOf('/');
    const given = (slash === -1 ? entry : entry.slice(0, slash)).replace(/^\[(.*)\]$/, '$1');
    const address = normalizeAddress(given);
    const family = isIP(address);
    if (family === 0) bad(i, `${JSON.stringify(entry)} is not an IP address or CIDR (nor sha256:, sha1:, identity:)`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (slash === -1) {
      list.addAddress(address, type);
    } else {
      const text = entry.slice(slash + 1);
      if (!/^\d{1,3}$/.test(text)) bad(i, `${JSON.stringify(entry)}: the prefix length must be a number`);
      let prefix = Number(text);
      // An IPv4-mapped IPv6 network (::ffff:a.b.c.d/n, n >= 96) is the IPv4 network /n-96.
      if (address !== given) {
        if (prefix < 96) bad(i, `${JSON.stringify(entry)}: an IPv4-mapped prefix must be /96 or longer`);
        prefix -= 96;
      }
      const max = family === 4 ? 32 : 128;
      if (prefix > max) bad(i, `${JSON.stringify(entry)}: the prefix length is over ${max}`);
      list.addSubnet(address, prefix, type);
    }
    addresses += 1;
  });
  const byIdentity = sha1.size + sha256.size + identities.size > 0;
  return Object.freeze({
    entries: Object.freeze([...entries]),
    byIdentity,
    matchesAddress(address: string | undefined): boolean {
      if (addresses === 0 || !address) return false;
      const a = normalizeAddress(address);
      const family = isIP(a);
      if (family === 0) return false;
      try {
        return list.check(a, family === 4 ? 'ipv4' : 'ipv6');
      } catch {
        // An address BlockList cannot read (an IPv6 zone id, say) is not a trusted one.
        return false;
      }
    },
    matchesCertificate(cert: Pick<ClientCertificate, 'authorized' | 'sha1' | 'sha256' | 'identity'> | null): boolean {
      if (!byIdentity || !cert || !cert.authorized) return false;
      return sha1.has(cert.sha1) || sha256.has(cert.sha256) || (cert.identity !== null && identities.has(cert.identity));
    },
  });
}
