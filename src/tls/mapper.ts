// Certificate mapping, as IIS does it: one-to-one (a certificate's thumbprint → an identity),
// many-to-one (rules on subject, issuer and subjectAltName, with wildcards, allow or deny), and
// a custom function. The result fills HTTP_SSL_CLIENT_CERT_INFO's Token (our `identity`) and
// CertDeniedByMapper. What names the issuer is decided on the verified chain, never on the
// issuer *name* the leaf carries: anyone can make a CA with any name.
import { X509Certificate } from 'node:crypto';
import { CertboundError } from '../errors.js';
import { canonicalIp, parseSubjectAltNames, type SubjectAltNames } from './subject-alt-name.js';

/** What a mapper sees of a client certificate. */
export interface MapperInput {
  /** SHA-1 thumbprint, lowercase hex without separators. */
  readonly sha1: string;
  readonly sha256: string;
  /** Subject as Node prints it (`O=...\nCN=...`). */
  readonly subject: string;
  /** The issuer name written in the leaf, as Node prints it. Issuer rules do not read it. */
  readonly issuer: string;
  readonly serialNumber: string;
  /** The CERT_E_* verdict (0 when the chain verified). */
  readonly certFlags: number;
  /** The leaf, DER. */
  readonly der: Buffer;
  /**
   * The chain as it verified, DER: the leaf (equal to `der`) first, then its issuer, and so
   * on up. Issuer rules and `issuerThumbprint` are decided on it; without it (or when
   * `certFlags` is not 0) they cannot be told, so an allow mapping that has them does not
   * match and a deny mapping that has them denies.
   */
  readonly chain?: readonly Buffer[];
}

/** A mapper's answer: an identity, a refusal (with a reason), or no opinion (`null`). */
export type MapperResult = { identity: string } | { denied: true; reason: string } | null;

/** A custom mapper. It must be synchronous and must not throw (a throw is a refusal). */
export type CertificateMapperFn = (cert: MapperInput) => MapperResult;

export interface OneToOneMapping {
  /** SHA-1 thumbprint (hex; colons, spaces and case are ignored). */
  thumbprint: string;
  identity: string;
  /** Default: true. A disabled mapping is skipped (but still validated). */
  enabled?: boolean;
}

/** Distinguished names a rule can read: the leaf's subject, or its verified issuer's subject. */
export type NameField = 'subject' | 'issuer';

/** subjectAltName entry types a rule can read (see {@link SubjectAltNames}). */
export type SanAttribute = 'URI' | 'email' | 'DNS' | 'IP' | 'UPN';

interface RuleMatch {
  /** Value to match, whole; `*` matches any run of characters (also none). */
  match: string;
  /** Default: false (IIS matches case-insensitively unless told otherwise). */
  caseSensitive?: boolean;
}

/** A rule on a distinguished name. */
export interface NameRule extends RuleMatch {
  /**
   * `subject`: the leaf's subject. `issuer`: the subject of the certificate that issued the
   * leaf in the verified chain (`MapperInput.chain[1]`), which must have issued and signed
   * the leaf; not the issuer name the leaf carries.
   */
  field: NameField;
  /** Attribute short name as Node prints it: CN, O, OU, C, ST, L, emailAddress, … */
  attribute: string;
}

/** A rule on the leaf's subjectAltName: matches when any entry of that type matches. */
export interface SanRule extends RuleMatch {
  field: 'san';
  /**
   * `URI`, `email` (rfc822Name), `DNS`, `IP` (IPv4 dotted, IPv6 in RFC 5952 form such as
   * `2001:db8::1`; a `match` without `*` may be written in any IP form) or `UPN` (Microsoft
   * user principal name).
   */
  attribute: SanAttribute;
}

export type ManyToOneRule = NameRule | SanRule;

export interface ManyToOneMapping {
  /** Names the mapping in `MappingOutcome.by`; unique among the mappings. */
  name: string;
  /**
   * All rules must match (IIS: the criteria of one mapping are ANDed). May be empty when
   * `issuerThumbprint` is given.
   */
  rules: ManyToOneRule[];
  /**
   * SHA-1 thumbprint of a CA (hex; colons, spaces and case ignored): the mapping only
   * matches when that certificate is above the leaf in the verified chain, linked to it by
   * signatures. The way to name a CA: its name can be copied, its key cannot.
   */
  issuerThumbprint?: string;
  /** The identity for a match; omitted together with `deny: true`. */
  identity?: string;
  /** A matching certificate is refused (IIS "Deny access"). Default: false. */
  deny?: boolean;
  /** Default: true. A disabled mapping is skipped (but still validated). */
  enabled?: boolean;
}

export interface MapperConfig {
  oneToOne?: OneToOneMapping[];
  manyToOne?: ManyToOneMapping[];
  custom?: CertificateMapperFn;
  /**
   * Whether a certificate that no mapping matches is denied. Default: true when any
   * mapping is configured (IIS refuses an unmapped certificate once mapping is on).
   */
  denyUnmapped?: boolean;
}

/** The outcome stored per handshake: `identity` (Token) and `deniedByMapper`. */
export interface MappingOutcome {
  readonly identity: string | null;
  readonly deniedByMapper: boolean;
  readonly reason: string | null;
  /** Which mapping decided: 'one-to-one', 'many-to-one:<name>', 'custom', 'unmapped' or 'none'. */
  readonly by: string;
}

const NO_MAPPING: MappingOutcome = Object.freeze({ identity: null, deniedByMapper: false, reason: null, by: 'none' });

export function normalizeThumbprint(value: string): string {
  return value.replace(/[\s:]/g, '').toLowerCase();
}

/** Parses Node's multi-line DN (`O=a\nCN=b`) into attribute → values. */
export function parseDistinguishedName(dn: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of dn.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const list = out.get(key) ?? [];
    list.push(line.slice(eq + 1));
    out.set(key, list);
  }
  return out;
}

/**
 * Whole-value match with `*` as any run of characters, in O(value × pattern) steps. No
 * RegExp: values come from client certificates, and `*a*a*a*b` against a long value would
 * backtrack for seconds.
 */
function wildcardMatch(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let star = -1;
  let resume = 0;
  while (v < value.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = v;
    } else if (p < pattern.length && pattern[p] === value[v]) {
      p++;
      v++;
    } else if (star >= 0) {
      p = star + 1;
      v = ++resume;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/** A rule's or mapping's answer: true, false, or why it cannot be told. */
type Answer = boolean | { readonly unknown: string };

/** The verified links above the leaf. */
interface Issuers {
  /** chain[1], chain[2], … as far as each issued and signed the one below it. */
  readonly linked: readonly X509Certificate[];
  /** Why the chain stops being usable here, or null when every certificate of it linked. */
  readonly why: string | null;
}

/** What the mappings can read of one input, each part computed on first use and once. */
class Evidence {
  readonly cert: MapperInput;
  #subject: Map<string, string[]> | undefined;
  #issuerName: Map<string, string[]> | undefined;
  #issuers: Issuers | undefined;
  #san: SubjectAltNames | null | undefined;
  #sha1: string[] | undefined;

  constructor(cert: MapperInput) {
    this.cert = cert;
  }

  subject(): Map<string, string[]> {
    return (this.#subject ??= parseDistinguishedName(this.cert.subject));
  }

  /** The subject of the verified issuer, or why there is none. */
  issuerName(): Map<string, string[]> | { unknown: string } {
    if (this.#issuerName) return this.#issuerName;
    const { linked, why } = this.issuers();
    const issuer = linked[0];
    if (!issuer) return { unknown: `the issuer cannot be told: ${why ?? 'the chain holds only the certificate'}` };
    return (this.#issuerName = parseDistinguishedName(issuer.subject));
  }

  /** SHA-1 thumbprints of the verified certificates above the leaf. */
  issuerThumbprints(): readonly string[] {
    return (this.#sha1 ??= this.issuers().linked.map((c) => normalizeThumbprint(c.fingerprint)));
  }

  issuers(): Issuers {
    return (this.#issuers ??= linkChain(this.cert));
  }

  san(): SubjectAltNames | null {
    if (this.#san === undefined) this.#san = parseSubjectAltNames(this.cert.der);
    return this.#san;
  }
}

/**
 * Walks the chain up from the leaf while each certificate issued the one below it (names and
 * key identifiers as OpenSSL's X509_check_issued) and its key verifies that one's signature.
 * Nothing is trusted when the chain did not verify (certFlags ≠ 0) or does not start with
 * the leaf.
 */
function linkChain(cert: MapperInput): Issuers {
  const chain = cert.chain;
  if (!chain || chain.length === 0) return { linked: [], why: 'no chain was given' };
  if (cert.certFlags !== 0) return { linked: [], why: `the chain did not verify (certFlags 0x${(cert.certFlags >>> 0).toString(16)})` };
  const [leafDer, ...above] = chain;
  if (!leafDer || !leafDer.equals(cert.der)) return { linked: [], why: 'chain[0] is not the certificate' };
  const linked: X509Certificate[] = [];
  let below: X509Certificate;
  try {
    below = new X509Certificate(leafDer);
  } catch {
    return { linked, why: 'the certificate does not parse' };
  }
  for (const [i, der] of above.entries()) {
    let issuer: X509Certificate;
    let ok: boolean;
    try {
      issuer = new X509Certificate(der);
      ok = below.checkIssued(issuer) && below.verify(issuer.publicKey);
    } catch {
      return { linked, why: `chain[${i + 1}] does not parse` };
    }
    if (!ok) return { linked, why: `chain[${i + 1}] did not issue chain[${i}]` };
    linked.push(issuer);
    below = issuer;
  }
  return { linked, why: null };
}

const SAN_LISTS: Readonly<Record<SanAttribute, keyof SubjectAltNames>> = Object.freeze({ URI: 'uri', email: 'email', DNS: 'dns', IP: 'ip', UPN: 'upn' });

/** A compiled rule, with its cost rank: cheap rules run first so that a false one saves the rest. */
interface CompiledRule {
  readonly cost: number;
  readonly test: (ev: Evidence) => Answer;
}

interface CompiledManyToOne {
  readonly name: string;
  readonly identity: string | null;
  readonly deny: boolean;
  readonly rules: readonly CompiledRule[];
}

function evaluate(m: CompiledManyToOne, ev: Evidence): Answer {
  let unknown: { unknown: string } | null = null;
  for (const rule of m.rules) {
    const a = rule.test(ev);
    if (a === false) return false;
    if (a !== true) unknown ??= a;
  }
  return unknown ?? true;
}

// ---- validation: every problem is CB_ERR_INVALID_OPTION with the key that holds it ----

function fail(key: string, why: string): never {
  throw new CertboundError('CB_ERR_INVALID_OPTION', [key, why]);
}

function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}

function record(value: unknown, key: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(key, `must be an object, not ${shown(value)}`);
  for (const k of Object.keys(value)) {
    if (!allowed.includes(k)) fail(`${key}.${k}`, `unknown key (allowed: ${allowed.join(', ')})`);
  }
  return value as Record<string, unknown>;
}

function optionalBoolean(obj: Record<string, unknown>, name: string, key: string): boolean | undefined {
  const v = obj[name];
  if (v !== undefined && typeof v !== 'boolean') fail(`${key}.${name}`, `must be true or false, not ${shown(v)}`);
  return v;
}

function text(obj: Record<string, unknown>, name: string, key: string): string {
  const v = obj[name];
  if (typeof v !== 'string' || v === '') fail(`${key}.${name}`, `must be a non-empty string, not ${shown(v)}`);
  return v;
}

function optionalArray(obj: Record<string, unknown>, name: string, key: string): unknown[] | undefined {
  const v = obj[name];
  if (v !== undefined && !Array.isArray(v)) fail(`${key}.${name}`, `must be an array, not ${shown(v)}`);
  return v;
}

function thumbprint(obj: Record<string, unknown>, name: string, key: string): string {
  const v = obj[name];
  if (typeof v !== 'string') fail(`${key}.${name}`, `must be a SHA-1 thumbprint in hex, not ${shown(v)}`);
  const tp = normalizeThumbprint(v);
  if (!/^[0-9a-f]{40}$/.test(tp)) fail(`${key}.${name}`, `${shown(v)} is not a SHA-1 thumbprint (20 bytes of hex)`);
  return tp;
}

const MAPPER_KEYS = ['oneToOne', 'manyToOne', 'custom', 'denyUnmapped'] as const satisfies readonly (keyof MapperConfig)[];
const ONE_TO_ONE_KEYS = ['thumbprint', 'identity', 'enabled'] as const satisfies readonly (keyof OneToOneMapping)[];
const MANY_TO_ONE_KEYS = ['name', 'rules', 'issuerThumbprint', 'identity', 'deny', 'enabled'] as const satisfies readonly (keyof ManyToOneMapping)[];
const RULE_KEYS = ['field', 'attribute', 'match', 'caseSensitive'] as const satisfies readonly (keyof ManyToOneRule)[];
const FIELDS = ['subject', 'issuer', 'san'] as const satisfies readonly ManyToOneRule['field'][];

function compileRule(value: unknown, key: string): CompiledRule {
  const r = record(value, key, RULE_KEYS);
  const field = r.field;
  if (!FIELDS.includes(field as (typeof FIELDS)[number])) fail(`${key}.field`, `must be one of ${FIELDS.join(', ')}, not ${shown(field)}`);
  const attribute = text(r, 'attribute', key);
  if (typeof r.match !== 'string' || r.match === '') fail(`${key}.match`, `must be a non-empty string, not ${shown(r.match)}`);
  const caseSensitive = optionalBoolean(r, 'caseSensitive', key) ?? false;
  let match = r.match;
  if (field === 'san') {
    if (!Object.hasOwn(SAN_LISTS, attribute)) fail(`${key}.attribute`, `must be one of ${Object.keys(SAN_LISTS).join(', ')} for field san, not ${shown(attribute)}`);
    if (attribute === 'IP' && !match.includes('*')) match = canonicalIp(match) ?? fail(`${key}.match`, `${shown(match)} is not an IPv4 or IPv6 address (use * for a pattern)`);
  }
  const pattern = caseSensitive ? match : match.toLowerCase();
  const matches = (values: readonly string[]) => values.some((v) => wildcardMatch(pattern, caseSensitive ? v : v.toLowerCase()));
  if (field === 'subject') return { cost: 0, test: (ev) => matches(ev.subject().get(attribute) ?? []) };
  if (field === 'san') {
    const list = SAN_LISTS[attribute as SanAttribute];
    return {
      cost: 1,
      test: (ev) => {
        const san = ev.san();
        return san ? matches(san[list]) : { unknown: 'the subjectAltName cannot be read' };
      },
    };
  }
  return {
    cost: 2,
    test: (ev) => {
      const name = ev.issuerName();
      return name instanceof Map ? matches(name.get(attribute) ?? []) : name;
    },
  };
}

function pinRule(pin: string): CompiledRule {
  return {
    cost: 2,
    test: (ev) => {
      if (ev.issuerThumbprints().includes(pin)) return true;
      const { linked, why } = ev.issuers();
      if (why === null && linked.length > 0) return false;
      return { unknown: `the issuer cannot be told: ${why ?? 'the chain holds only the certificate'}` };
    },
  };
}

function compileManyToOne(value: unknown, key: string, names: Set<string>): CompiledManyToOne & { enabled: boolean } {
  const m = record(value, key, MANY_TO_ONE_KEYS);
  const name = text(m, 'name', key);
  if (names.has(name)) fail(`${key}.name`, `${shown(name)} names another mapping too`);
  names.add(name);
  const enabled = optionalBoolean(m, 'enabled', key) ?? true;
  const deny = optionalBoolean(m, 'deny', key) ?? false;
  const identity = m.identity === undefined ? null : text(m, 'identity', key);
  if (deny && identity !== null) fail(`${key}.identity`, 'a deny mapping has no identity');
  if (!deny && identity === null) fail(`${key}.identity`, 'needed unless deny: true');
  const pin = m.issuerThumbprint === undefined ? null : thumbprint(m, 'issuerThumbprint', key);
  const ruleValues = optionalArray(m, 'rules', key) ?? fail(`${key}.rules`, 'missing');
  if (ruleValues.length === 0 && pin === null) fail(`${key}.rules`, 'needs at least one rule (or an issuerThumbprint)');
  const rules = ruleValues.map((r, i) => compileRule(r, `${key}.rules[${i}]`));
  if (pin !== null) rules.push(pinRule(pin));
  rules.sort((a, b) => a.cost - b.cost);
  return { name, identity, deny, rules, enabled };
}

/** A compiled mapper: validate once, then map cheaply per handshake. */
export type CompiledMapper = (cert: MapperInput) => MappingOutcome;

/**
 * Compiles a mapper configuration (or a bare function). A configuration that cannot work
 * (unknown key, wrong type, bad thumbprint, a rule on an unknown field, …), disabled
 * mappings included, throws CertboundError CB_ERR_INVALID_OPTION naming the key
 * (`mapper.manyToOne[0].rules[1].field`).
 */
export function compileMapper(config: MapperConfig | CertificateMapperFn | undefined): CompiledMapper {
  if (config === undefined) return () => NO_MAPPING;
  const cfg = typeof config === 'function' ? { custom: config, denyUnmapped: false } : record(config, 'mapper', MAPPER_KEYS);
  const custom = cfg.custom;
  if (custom !== undefined && typeof custom !== 'function') fail('mapper.custom', `must be a function, not ${shown(custom)}`);
  const explicitDeny = optionalBoolean(cfg, 'denyUnmapped', 'mapper');

  const oneToOne = new Map<string, string>();
  for (const [i, value] of (optionalArray(cfg, 'oneToOne', 'mapper') ?? []).entries()) {
    const key = `mapper.oneToOne[${i}]`;
    const m = record(value, key, ONE_TO_ONE_KEYS);
    const tp = thumbprint(m, 'thumbprint', key);
    const identity = text(m, 'identity', key);
    if (optionalBoolean(m, 'enabled', key) === false) continue;
    if (oneToOne.has(tp)) fail(`${key}.thumbprint`, 'another enabled mapping has the same thumbprint');
    oneToOne.set(tp, identity);
  }
  const names = new Set<string>();
  const manyToOne = (optionalArray(cfg, 'manyToOne', 'mapper') ?? [])
    .map((value, i) => compileManyToOne(value, `mapper.manyToOne[${i}]`, names))
    .filter((m) => m.enabled);
  const mapperFn = custom as CertificateMapperFn | undefined;
  const anyConfigured = oneToOne.size > 0 || manyToOne.length > 0 || mapperFn !== undefined;
  const denyUnmapped = explicitDeny ?? anyConfigured;

  return (cert) => {
    if (mapperFn) {
      let r: MapperResult;
      try {
        r = mapperFn(cert);
      } catch (err) {
        return { identity: null, deniedByMapper: true, reason: `custom mapper threw: ${(err as Error).message}`, by: 'custom' };
      }
      // Only the documented answers count; anything else (a Promise from an async function, an
      // identity that is not a non-empty string) is a refusal, never "no opinion".
      if (r !== null && r !== undefined) {
        if (typeof r === 'object' && 'identity' in r && typeof r.identity === 'string' && r.identity !== '') return { identity: r.identity, deniedByMapper: false, reason: null, by: 'custom' };
        if (typeof r === 'object' && 'denied' in r && r.denied === true) return { identity: null, deniedByMapper: true, reason: typeof r.reason === 'string' ? r.reason : 'denied by the custom mapper', by: 'custom' };
        return { identity: null, deniedByMapper: true, reason: 'custom mapper returned an invalid answer (it must be synchronous and return { identity: string }, { denied: true, reason } or null)', by: 'custom' };
      }
    }
    const one = oneToOne.get(cert.sha1);
    if (one !== undefined) return { identity: one, deniedByMapper: false, reason: null, by: 'one-to-one' };
    const ev = new Evidence(cert);
    for (const m of manyToOne) {
      const a = evaluate(m, ev);
      const by = `many-to-one:${m.name}`;
      // What cannot be told never grants an identity, and never escapes a deny mapping.
      if (m.deny && a !== false) return { identity: null, deniedByMapper: true, reason: a === true ? `denied by mapping ${m.name}` : `denied by mapping ${m.name}: ${a.unknown}`, by };
      if (!m.deny && a === true) return { identity: m.identity, deniedByMapper: false, reason: null, by };
    }
    if (denyUnmapped) return { identity: null, deniedByMapper: true, reason: 'no mapping matches the certificate', by: 'unmapped' };
    return NO_MAPPING;
  };
}
