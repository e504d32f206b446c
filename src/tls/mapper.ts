// Certificate mapping, as IIS does it: one-to-one (a certificate's thumbprint → an identity),
// many-to-one (rules on subject/issuer fields, with wildcards, allow or deny), and a custom
// function. The result fills HTTP_SSL_CLIENT_CERT_INFO's Token (our `identity`) and
// CertDeniedByMapper.

/** What a mapper sees of a client certificate. */
export interface MapperInput {
  /** SHA-1 thumbprint, lowercase hex without separators. */
  readonly sha1: string;
  readonly sha256: string;
  /** Subject as Node prints it (`O=...\nCN=...`). */
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  /** The CERT_E_* verdict (0 when the chain verified). */
  readonly certFlags: number;
  readonly der: Buffer;
  /** The chain as verified (DER, leaf first, then its issuers), when the server knows it. */
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
  /** Default: true. A disabled mapping is skipped. */
  enabled?: boolean;
}

export type NameField = 'subject' | 'issuer';

export interface ManyToOneRule {
  field: NameField;
  /** Attribute short name as Node prints it: CN, O, OU, C, ST, L, emailAddress, … */
  attribute: string;
  /** Value to match; `*` matches any run of characters. */
  match: string;
  /** Default: false (IIS matches case-insensitively unless told otherwise). */
  caseSensitive?: boolean;
}

export interface ManyToOneMapping {
  name: string;
  /** All rules must match (IIS: the criteria of one mapping are ANDed). */
  rules: ManyToOneRule[];
  /** The identity for a match; omitted together with `deny: true`. */
  identity?: string;
  /** A matching certificate is refused (IIS "Deny access"). Default: false. */
  deny?: boolean;
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

function wildcard(pattern: string, caseSensitive: boolean): RegExp {
  const body = pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}$`, caseSensitive ? '' : 'i');
}

/** A compiled mapper: validate once, then map cheaply per handshake. */
export type CompiledMapper = (cert: MapperInput) => MappingOutcome;

/** Compiles a mapper configuration (or a bare function). Throws TypeError on a bad config. */
export function compileMapper(config: MapperConfig | CertificateMapperFn | undefined): CompiledMapper {
  if (config === undefined) return () => NO_MAPPING;
  const cfg: MapperConfig = typeof config === 'function' ? { custom: config, denyUnmapped: false } : config;
  const oneToOne = new Map<string, string>();
  for (const m of cfg.oneToOne ?? []) {
    const tp = normalizeThumbprint(m.thumbprint);
    if (!/^[0-9a-f]{40}$/.test(tp)) throw new TypeError(`mapper.oneToOne: thumbprint ${m.thumbprint} is not 20 bytes of hex`);
    if (typeof m.identity !== 'string' || m.identity === '') throw new TypeError(`mapper.oneToOne: mapping for ${m.thumbprint} has no identity`);
    if (m.enabled !== false) oneToOne.set(tp, m.identity);
  }
  const manyToOne = (cfg.manyToOne ?? []).filter((m) => m.enabled !== false).map((m) => {
    if (!m.deny && !m.identity) throw new TypeError(`mapper.manyToOne: mapping ${m.name} needs an identity or deny: true`);
    if (!Array.isArray(m.rules) || m.rules.length === 0) throw new TypeError(`mapper.manyToOne: mapping ${m.name} has no rules`);
    const rules = m.rules.map((r) => {
      if (r.field !== 'subject' && r.field !== 'issuer') throw new TypeError(`mapper.manyToOne: rule field must be subject or issuer, not ${String(r.field)}`);
      return { field: r.field, attribute: r.attribute, re: wildcard(r.match, r.caseSensitive ?? false) };
    });
    return { name: m.name, identity: m.identity ?? null, deny: m.deny ?? false, rules };
  });
  const anyConfigured = oneToOne.size > 0 || manyToOne.length > 0 || cfg.custom !== undefined;
  const denyUnmapped = cfg.denyUnmapped ?? anyConfigured;

  return (cert) => {
    if (cfg.custom) {
      let r: MapperResult;
      try {
        r = cfg.custom(cert);
      } catch (err) {
        return { identity: null, deniedByMapper: true, reason: `custom mapper threw: ${(err as Error).message}`, by: 'custom' };
      }
      if (r && 'identity' in r) return { identity: r.identity, deniedByMapper: false, reason: null, by: 'custom' };
      if (r && 'denied' in r) return { identity: null, deniedByMapper: true, reason: r.reason, by: 'custom' };
    }
    const one = oneToOne.get(cert.sha1);
    if (one !== undefined) return { identity: one, deniedByMapper: false, reason: null, by: 'one-to-one' };
    if (manyToOne.length > 0) {
      const names = { subject: parseDistinguishedName(cert.subject), issuer: parseDistinguishedName(cert.issuer) };
      for (const m of manyToOne) {
        const hit = m.rules.every((r) => (names[r.field].get(r.attribute) ?? []).some((v) => r.re.test(v)));
        if (!hit) continue;
        if (m.deny) return { identity: null, deniedByMapper: true, reason: `denied by mapping ${m.name}`, by: `many-to-one:${m.name}` };
        return { identity: m.identity, deniedByMapper: false, reason: null, by: `many-to-one:${m.name}` };
      }
    }
    if (denyUnmapped) return { identity: null, deniedByMapper: true, reason: 'no mapping matches the certificate', by: 'unmapped' };
    return NO_MAPPING;
  };
}
