// The subjectAltName entries that name mTLS clients (URI such as SPIFFE IDs, email, DNS, IP,
// Microsoft UPN), read from the DER with pkijs. Never from Node's printed `subjectAltName`
// string: its quoting of commas and colons inside values is ambiguous.
import { isIP, SocketAddress } from 'node:net';
import * as asn1js from 'asn1js';
import { pkijs } from './pkijs-engine.js';
import { OID } from './cert-builder.js';

/** The subjectAltName entries of a certificate, by type, in certificate order. */
export interface SubjectAltNames {
  /** uniformResourceIdentifier entries, e.g. `spiffe://example.org/ns/x`. */
  readonly uri: readonly string[];
  /** rfc822Name entries. */
  readonly email: readonly string[];
  /** dNSName entries, as written (no case folding). */
  readonly dns: readonly string[];
  /** iPAddress entries in the form of {@link canonicalIp}. */
  readonly ip: readonly string[];
  /** otherName entries of type UPN (1.3.6.1.4.1.311.20.2.3), a UTF8String. */
  readonly upn: readonly string[];
}

const NONE: SubjectAltNames = Object.freeze({ uri: [], email: [], dns: [], ip: [], upn: [] });

/**
 * The canonical text of an IP address, or null when `text` is not one: IPv4 as a dotted
 * quad (`10.1.2.3`), IPv6 as RFC 5952 writes it and Node's `net.SocketAddress` prints it
 * (lowercase, no leading zeros, the longest run of zero groups as `::`). An IPv4-mapped
 * IPv6 address (`::ffff:10.0.0.1`) is the IPv4 address it maps, so that a rule written for
 * one form cannot be dodged with the other. A zone (`%eth0`) is not an address of a certificate.
 */
export function canonicalIp(text: string): string | null {
  const family = isIP(text);
  if (family === 4) return text;
  if (family !== 6 || text.includes('%')) return null;
  const v6 = new SocketAddress({ address: text, family: 'ipv6' }).address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(v6);
  return mapped ? (mapped[1] as string) : v6;
}

/** Control characters (a NUL among them) make a name unreadable: C-string and display tricks. */
function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function ipText(bytes: Uint8Array): string | null {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) return null;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return canonicalIp(groups.join(':'));
}

/** The UPN of an otherName ([0] { type-id, [0] EXPLICIT value }), undefined for another type-id, null when malformed. */
function upnOf(otherName: unknown): string | undefined | null {
  if (!(otherName instanceof asn1js.Constructed)) return null;
  const [typeId, wrapped] = otherName.valueBlock.value;
  if (!(typeId instanceof asn1js.ObjectIdentifier)) return null;
  if (typeId.valueBlock.toString() !== OID.userPrincipalName) return undefined;
  if (!(wrapped instanceof asn1js.Constructed)) return null;
  const [value] = wrapped.valueBlock.value;
  return value instanceof asn1js.Utf8String && wrapped.valueBlock.value.length === 1 ? value.valueBlock.value : null;
}

/**
 * Reads the subjectAltName of a DER certificate. A certificate without the extension has
 * no entries. Returns null when the names cannot be told: the certificate or the extension
 * does not parse, the extension appears twice (RFC 5280 4.2), or an entry of a type read
 * here is malformed (an IP address of another length, a UPN that is not a UTF8String).
 * Entries of other types (directoryName, registeredID, other otherNames) are ignored.
 */
export function parseSubjectAltNames(der: Uint8Array): SubjectAltNames | null {
  let extensions: pkijs.Extension[];
  try {
    extensions = pkijs.Certificate.fromBER(der).extensions ?? [];
  } catch {
    return null;
  }
  const found = extensions.filter((e) => e.extnID === OID.subjectAltName);
  if (found.length === 0) return NONE;
  if (found.length > 1 || !found[0]) return null;
  let names: pkijs.GeneralName[];
  try {
    names = pkijs.GeneralNames.fromBER(found[0].extnValue.valueBlock.valueHexView).names;
  } catch {
    return null;
  }
  const out = { uri: [] as string[], email: [] as string[], dns: [] as string[], ip: [] as string[], upn: [] as string[] };
  for (const name of names) {
    switch (name.type) {
      case 0: {
        const upn = upnOf(name.value);
        if (upn === null || (upn !== undefined && hasControl(upn))) return null;
        if (upn !== undefined) out.upn.push(upn);
        break;
      }
      case 1:
      case 2:
      case 6: {
        if (typeof name.value !== 'string' || hasControl(name.value)) return null;
        // A DNS name with its root dot (`host.example.`) is the same name as without.
        if (name.type === 2) out.dns.push(name.value.endsWith('.') ? name.value.slice(0, -1) : name.value);
        else (name.type === 1 ? out.email : out.uri).push(name.value);
        break;
      }
      case 7: {
        const ip = name.value instanceof asn1js.OctetString ? ipText(name.value.valueBlock.valueHexView) : null;
        if (ip === null) return null;
        out.ip.push(ip);
        break;
      }
      default:
        break;
    }
  }
  return Object.freeze({
    uri: Object.freeze(out.uri),
    email: Object.freeze(out.email),
    dns: Object.freeze(out.dns),
    ip: Object.freeze(out.ip),
    upn: Object.freeze(out.upn),
  });
}
