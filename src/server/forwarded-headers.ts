// Reads RFC 9440's `Client-Cert` (an sf-item: a byte sequence, the leaf's DER) and
// `Client-Cert-Chain` (an sf-list of byte sequences: the issuers, leaf excluded) with the
// `structured-headers` parser (RFC 8941/9651), and names certbound's own verdict headers (a
// front's claim, never read as a verdict). Every defect is a ForwardedHeaderError with a stable
// reason; the plugin answers it with 400 (CB_ERR_FORWARDED_CERT_INVALID / _TOO_LARGE).
import { X509Certificate } from 'node:crypto';
import { parseItem, parseList } from 'structured-headers';
import { DEFAULTS } from '../defaults.js';
import type { ErrorCode } from '../errors.js';

/** RFC 9440 section 2.2. */
export const CLIENT_CERT_HEADER = 'client-cert';
/** RFC 9440 section 2.3. */
export const CLIENT_CERT_CHAIN_HEADER = 'client-cert-chain';
/** What certbound's front adds beside them (docs/front.md): a front's claims, never a verdict here. */
export const CERTBOUND_VERDICT_HEADERS = ['certbound-client-cert-flags', 'certbound-client-identity', 'certbound-connection-id'] as const;
/** Every header that carries a client certificate or a verdict about one: stripped from peers that are not trusted proxies. */
export const FORWARDED_CERT_HEADERS: readonly string[] = Object.freeze([CLIENT_CERT_HEADER, CLIENT_CERT_CHAIN_HEADER, ...CERTBOUND_VERDICT_HEADERS]);
const CERT_HEADER_SET: ReadonlySet<string> = new Set(FORWARDED_CERT_HEADERS);

/** Whether a header name is one of FORWARDED_CERT_HEADERS, any case, with `_` read as `-` (`Client_Cert`, `certbound_client_identity`). */
export function isForwardedCertHeader(name: string): boolean {
  const n = name.toLowerCase();
  return CERT_HEADER_SET.has(n.includes('_') ? n.replace(/_/g, '-') : n);
}

/**
 * Why a header was refused (the `reason` field of the 400 body):
 * - `duplicate`: the header came on more than one field line;
 * - `syntax`: not a structured field of its type (bad base64 included);
 * - `not-a-byte-sequence`: an item or list member that is not `:base64:`, or an inner list;
 * - `parameters`: parameters on the item or a member (RFC 9440 defines none);
 * - `not-a-certificate`: the bytes are not one DER X.509 certificate;
 * - `chain-without-certificate`: Client-Cert-Chain without Client-Cert;
 * - `too-large`: a value longer than DEFAULTS.forwardedCertHeaderMaxBytes;
 * - `too-many-certificates`: a chain of more than DEFAULTS.forwardedChainMaxCertificates.
 */
export type ForwardedHeaderReason = 'duplicate' | 'syntax' | 'not-a-byte-sequence' | 'parameters' | 'not-a-certificate' | 'chain-without-certificate' | 'too-large' | 'too-many-certificates';

export class ForwardedHeaderError extends Error {
  readonly header: string;
  readonly reason: ForwardedHeaderReason;
  constructor(header: string, reason: ForwardedHeaderReason, detail: string) {
    super(`${header}: ${detail}`);
    this.name = 'ForwardedHeaderError';
    this.header = header;
    this.reason = reason;
  }

  /** The CB_ERR code a request gets for it. */
  get code(): ErrorCode {
    return this.reason === 'too-large' || this.reason === 'too-many-certificates' ? 'CB_ERR_FORWARDED_CERT_TOO_LARGE' : 'CB_ERR_FORWARDED_CERT_INVALID';
  }
}

/** The certificate a proxy forwarded: the leaf and the issuers it sent, parsed. */
export interface ForwardedCertificate {
  readonly leaf: X509Certificate;
  readonly issuers: readonly X509Certificate[];
}

export interface ForwardedHeaderLimits {
  readonly maxBytes: number;
  readonly maxCertificates: number;
}

const LIMITS: ForwardedHeaderLimits = { maxBytes: DEFAULTS.forwardedCertHeaderMaxBytes, maxCertificates: DEFAULTS.forwardedChainMaxCertificates };

/** The field lines of `name` (lowercase) in Node's rawHeaders (name, value, name, value, …). */
function fieldLines(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if ((rawHeaders[i] as string).toLowerCase() === name) out.push(rawHeaders[i + 1] as string);
  return out;
}

function oneLine(rawHeaders: readonly string[], name: string, limits: ForwardedHeaderLimits): string | undefined {
  const lines = fieldLines(rawHeaders, name);
  if (lines.length > 1) throw new ForwardedHeaderError(name, 'duplicate', `came on ${lines.length} field lines; RFC 9440 values are sent once`);
  const value = lines[0];
  if (value !== undefined && Buffer.byteLength(value, 'latin1') > limits.maxBytes) throw new ForwardedHeaderError(name, 'too-large', `more than ${limits.maxBytes} bytes`);
  return value;
}

/** The DER of a byte-sequence item without parameters; `where` names it in errors. */
function byteSequence(header: string, value: unknown, params: Map<string, unknown>, where: string): Buffer {
  if (Array.isArray(value)) throw new ForwardedHeaderError(header, 'not-a-byte-sequence', `${where} is an inner list, not a byte sequence`);
  if (!(value instanceof ArrayBuffer)) throw new ForwardedHeaderError(header, 'not-a-byte-sequence', `${where} is not a byte sequence (:base64:)`);
  if (params.size > 0) throw new ForwardedHeaderError(header, 'parameters', `${where} has parameters (${[...params.keys()].join(', ')}); RFC 9440 defines none`);
  return Buffer.from(value);
}

function certificate(header: string, der: Buffer, where: string): X509Certificate {
  let x: X509Certificate;
  try {
    x = new X509Certificate(der);
  } catch {
    throw new ForwardedHeaderError(header, 'not-a-certificate', `${where} is not a DER X.509 certificate`);
  }
  // One certificate, nothing after it (X509Certificate would read a PEM text or stop early).
  if (!x.raw.equals(der)) throw new ForwardedHeaderError(header, 'not-a-certificate', `${where} is not exactly one DER X.509 certificate`);
  return x;
}

/**
 * The forwarded certificate of a request (rawHeaders: Node's list), or null when it has no
 * `Client-Cert`. Throws ForwardedHeaderError on any defect: a value certbound cannot read exactly
 * is refused, never skipped.
 */
export function readForwardedCertificate(rawHeaders: readonly string[], limits: ForwardedHeaderLimits = LIMITS): ForwardedCertificate | null {
  const certValue = oneLine(rawHeaders, CLIENT_CERT_HEADER, limits);
  const chainValue = oneLine(rawHeaders, CLIENT_CERT_CHAIN_HEADER, limits);
  if (certValue === undefined) {
    if (chainValue !== undefined) throw new ForwardedHeaderError(CLIENT_CERT_CHAIN_HEADER, 'chain-without-certificate', 'sent without Client-Cert (RFC 9440 section 2.3)');
    return null;
  }
  // A proxy sends the same few clients' certificates again and again: parsing (a DER parse costs
  // tens of microseconds, pkijs's more) is done once per distinct pair of values.
  const key = chainValue === undefined ? certValue : `${certValue}\n${chainValue}`;
  const known = parsed.get(key);
  if (known) return known;
  const result = parseValues(certValue, chainValue, limits);
  if (parsed.size >= MAX_PARSED) parsed.clear();
  parsed.set(key, result);
  return result;
}

/** Parsed values by their header text (bounded: cleared when full). Only well-formed ones are kept. */
const parsed = new Map<string, ForwardedCertificate>();
const MAX_PARSED = 512;

function parseValues(certValue: string, chainValue: string | undefined, limits: ForwardedHeaderLimits): ForwardedCertificate {
  let item;
  try {
    item = parseItem(certValue);
  } catch (err) {
    throw new ForwardedHeaderError(CLIENT_CERT_HEADER, 'syntax', `not a structured-field item (${(err as Error).message})`);
  }
  const leaf = certificate(CLIENT_CERT_HEADER, byteSequence(CLIENT_CERT_HEADER, item[0], item[1], 'the value'), 'the value');
  const issuers: X509Certificate[] = [];
  if (chainValue !== undefined) {
    let list;
    try {
      list = parseList(chainValue);
    } catch (err) {
      throw new ForwardedHeaderError(CLIENT_CERT_CHAIN_HEADER, 'syntax', `not a structured-field list (${(err as Error).message})`);
    }
    if (list.length > limits.maxCertificates) throw new ForwardedHeaderError(CLIENT_CERT_CHAIN_HEADER, 'too-many-certificates', `more than ${limits.maxCertificates} certificates`);
    list.forEach((member, i) => {
      const where = `member ${i}`;
      issuers.push(certificate(CLIENT_CERT_CHAIN_HEADER, byteSequence(CLIENT_CERT_CHAIN_HEADER, member[0], member[1] as Map<string, unknown>, where), where));
    });
  }
  return Object.freeze({ leaf, issuers: Object.freeze(issuers) });
}
