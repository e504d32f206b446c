// The option schema of the library and the plugin: createServer's and the plugin's options as
// JSON Schema, validated with ajv (fastify's validator) up front, so that an unknown key or value
// stops start-up with CB_ERR_INVALID_OPTION instead of being ignored (an ignored security option
// fails open); the same schema generates the options table of the README. The CLI's flags and
// config keys have their own schema (src/server/config.ts) and map onto these options. The
// `is.*` checks below serve the smaller option objects elsewhere (client job files, retry policy).
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { CertboundError } from '../errors.js';
import { DEFAULTS, TIMER_MAX_MS, TIMER_MAX_SECONDS } from '../defaults.js';
import { CHANNEL_BINDING_TYPES } from '../cbt/binding.js';
import { CLIENT_AUTH_MODES } from '../tls/client-auth.js';
import { CertCheckMode } from '../ocsp/revocation.js';

/** Checks one value; throws CB_ERR_INVALID_OPTION naming `path`. */
export type Check = (value: unknown, path: string) => void;

function bad(path: string, why: string): never {
  throw new CertboundError('CB_ERR_INVALID_OPTION', [path, why]);
}

const show = (v: unknown): string => (typeof v === 'function' ? 'a function' : typeof v === 'bigint' ? `${v}n` : Buffer.isBuffer(v) ? 'a Buffer' : JSON.stringify(v) ?? String(v));

export const is = {
  boolean: ((v, p) => { if (typeof v !== 'boolean') bad(p, `expected true or false, got ${show(v)}`); }) as Check,
  function: ((v, p) => { if (typeof v !== 'function') bad(p, `expected a function, got ${show(v)}`); }) as Check,
  nonNegativeInteger: ((v, p) => { if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(p, `expected an integer >= 0, got ${show(v)}`); }) as Check,
  nonNegativeNumber: ((v, p) => { if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(p, `expected a finite number >= 0, got ${show(v)}`); }) as Check,
  string: ((v, p) => { if (typeof v !== 'string') bad(p, `expected a string, got ${show(v)}`); }) as Check,
  /** A string `re` matches entirely; `what` names it in the message ("a 40-digit hex thumbprint"). */
  matching: (re: RegExp, what: string): Check => (v, p) => {
    if (typeof v !== 'string' || !re.test(v)) bad(p, `expected ${what}, got ${show(v)}`);
  },
  /** A list whose every item passes `check` (each named `path[i]`). */
  arrayOf: (check: Check): Check => (v, p) => {
    if (!Array.isArray(v)) bad(p, `expected a list, got ${show(v)}`);
    v.forEach((x, i) => check(x, `${p}[${i}]`));
  },
  /** Any object (its own code validates it further). */
  object: ((v, p) => { if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(p, `expected an object, got ${show(v)}`); }) as Check,
  oneOf: (values: readonly unknown[]): Check => (v, p) => {
    if (!values.includes(v)) bad(p, `${show(v)} is not one of ${values.map(show).join(', ')}`);
  },
  either: (...checks: Check[]): Check => (v, p) => {
    const errors: string[] = [];
    for (const c of checks) {
      try {
        c(v, p);
        return;
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    bad(p, errors.map((m) => m.replace(/^Invalid option [^:]*: /, '')).join('; or '));
  },
  /** An object checked against `schema`; the keys in `required` must be present. */
  shape: (schema: Schema, required: readonly string[] = []): Check => (v, p) => {
    if (v === undefined || v === null) bad(p, `expected an object, got ${show(v)}`);
    validateOptions(schema, v, p, required);
  },
};

/** key → check; every key not listed is an error. */
export type Schema = Readonly<Record<string, Check>>;

/**
 * Validates `options` against `schema`: unknown keys, bad values and absent `required` keys
 * throw CB_ERR_INVALID_OPTION with the key's path. `undefined` values count as absent.
 */
export function validateOptions(schema: Schema, options: unknown, path: string, required: readonly string[] = []): void {
  if (options === undefined && required.length === 0) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) bad(path, `expected an object, got ${show(options)}`);
  for (const key of required) {
    if ((options as Record<string, unknown>)[key] === undefined) bad(path ? `${path}.${key}` : key, 'required, missing');
  }
  for (const [key, value] of Object.entries(options)) {
    const check = Object.hasOwn(schema, key) ? schema[key] : undefined;
    const where = path ? `${path}.${key}` : key;
    if (!check) bad(where, `unknown option (known: ${Object.keys(schema).join(', ')})`);
    if (value !== undefined) check(value, where);
  }
}


/**
 * A JSON Schema (draft-07) of one option, with three keywords of certbound's for what JSON cannot
 * say: `pem: true` (a string or a Buffer), `isFunction: true`, and `instanceOf: 'Name'` (an
 * instance of the class given under that name to compileOptions). `description` and `default`
 * (the value from src/defaults.ts, for the docs) are annotations: ajv does not fill defaults in.
 */
export interface OptionSchema {
  readonly description?: string;
  readonly default?: unknown;
  readonly type?: string | readonly string[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly items?: OptionSchema;
  readonly minLength?: number;
  readonly pattern?: string;
  readonly required?: readonly string[];
  readonly properties?: Readonly<Record<string, OptionSchema>>;
  readonly additionalProperties?: boolean;
  readonly anyOf?: readonly OptionSchema[];
  readonly pem?: true;
  readonly isFunction?: true;
  readonly instanceOf?: string;
}

/** Every combination of DefaultCertCheckMode's bits (0x1, 0x2, 0x4, 0x10000): the values certCheckMode takes. */
const CHECK_MODE_VALUES: readonly number[] = Object.values(CertCheckMode)
  .reduce<number[]>((sets, bit) => [...sets, ...sets.map((s) => s | bit)], [0])
  .filter((v, i, all) => all.indexOf(v) === i)
  .sort((a, b) => a - b);

/** RevocationOptions (src/ocsp/revocation.ts). */
export const REVOCATION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    certCheckMode: { type: 'integer', enum: CHECK_MODE_VALUES },
    revocationFreshnessTimeSeconds: { type: 'integer', minimum: 0 },
    urlRetrievalTimeoutMs: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
    failMode: { enum: ['soft', 'hard'] },
    crls: { type: 'array', items: { pem: true } },
    fetchCrlDistributionPoints: { type: 'boolean' },
    ocsp: { type: 'boolean' },
    now: { isFunction: true },
    fetcher: { isFunction: true },
    crlFetcher: { isFunction: true },
    logger: { type: 'object' },
    // A Fleet (src/fleet/fleet.ts): createServer's `fleet` option passes its own.
    fleet: { type: 'object' },
  },
} as const satisfies OptionSchema;

/** ServerOcspOptions (src/ocsp/server-stapling.ts): a misspelt key (`cachDir`) would silently turn persistence off. */
export const OCSP_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    cacheDir: { type: 'string', minLength: 1 },
    storage: { type: 'object' },
    async: { type: 'boolean' },
    maxConcurrentRetrievals: { type: 'integer', exclusiveMinimum: 0 },
    settings: {
      type: 'object',
      additionalProperties: false,
      properties: {
        SrvOcspRespMinValiditySeconds: { type: 'number', minimum: 0, maximum: TIMER_MAX_SECONDS },
        SrvOcspRespUrlRetrievalTimeoutMilliseconds: { type: 'number', minimum: 0, maximum: TIMER_MAX_MS },
        SrvOcspRespMaxBeforeNextUpdateSeconds: { type: 'number', minimum: 0, maximum: TIMER_MAX_SECONDS },
        SrvOcspRespMinBeforeNextUpdateSeconds: { type: 'number', minimum: 0, maximum: TIMER_MAX_SECONDS },
        SrvOcspRespMinAfterNextUpdateSeconds: { type: 'number', minimum: 0, maximum: TIMER_MAX_SECONDS },
      },
    },
    retry: { type: 'object' },
    skewMs: { type: 'integer', minimum: 0 },
    now: { isFunction: true },
    timers: { type: 'object' },
    fetcher: { isFunction: true },
    method: { enum: ['auto', 'GET', 'POST'] },
    url: { type: 'string', pattern: '^https?://' },
    issuer: { pem: true },
    // A Fleet (src/fleet/fleet.ts): createServer's `fleet` option passes its own.
    fleet: { type: 'object' },
  },
} as const satisfies OptionSchema;

/** FleetOptions (src/fleet/fleet.ts). */
export const FLEET_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    url: { type: 'string', pattern: '^rediss?://' },
    secretFile: { type: 'string', minLength: 1 },
    secret: { pem: true },
    ca: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }] },
    cert: { pem: true },
    key: { pem: true },
    username: { type: 'string', minLength: 1 },
    password: { type: 'string', minLength: 1 },
    passwordFile: { type: 'string', minLength: 1 },
    namespace: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    lockTtlMs: { type: 'integer', minimum: 1000, maximum: TIMER_MAX_MS },
    commandTimeoutMs: { type: 'integer', minimum: 1, maximum: TIMER_MAX_MS },
    connectWaitMs: { type: 'integer', minimum: 0, maximum: TIMER_MAX_MS },
    resyncMs: { type: 'integer', minimum: 1000, maximum: TIMER_MAX_MS },
    healthCheckMs: { type: 'integer', minimum: 100, maximum: TIMER_MAX_MS },
    logState: { type: 'boolean' },
    tickets: {
      anyOf: [{ type: 'boolean' }, {
        type: 'object',
        additionalProperties: false,
        properties: {
          rotationMs: { type: 'integer', minimum: 1000, maximum: TIMER_MAX_MS },
          ticketLifetimeSeconds: { type: 'integer', minimum: 1, maximum: TIMER_MAX_SECONDS },
        },
      }],
    },
    machine: { type: 'string', minLength: 1 },
    now: { isFunction: true },
    logger: { type: 'object' },
  },
} as const satisfies OptionSchema;

/** ServerChannelBindingConfig (src/cbt/server-bindings.ts). */
export const CHANNEL_BINDING_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { enum: CHANNEL_BINDING_TYPES },
    form: { enum: ['raw', 'application-data'] },
    renegotiationDisabled: { type: 'boolean' },
    tls12ExporterContext: { enum: ['empty', 'none'] },
  },
} as const satisfies OptionSchema;

/** The options the plugin and createServer share. */
export const SHARED_OPTION_PROPERTIES = {
  clientAuth: { enum: CLIENT_AUTH_MODES, default: DEFAULTS.clientAuth, description: 'Client-certificate mode at handshake; decides what is refused at request level (docs/client-auth-modes.md). For the plugin: the mode the TLS server was built with.' },
  mapper: { anyOf: [{ isFunction: true }, { type: 'object' }], description: 'Certificate mapper: its config (validated by compileMapper) or a function (docs/client-auth-modes.md#the-certificate-mapper).' },
  rejectDeniedByMapper: { type: 'boolean', default: true, description: 'Refuse (403 CB_ERR_CLIENT_CERT_DENIED) a certificate the mapper denied, in optional and require modes.' },
  negotiationTimeout: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS, default: DEFAULTS.negotiationTimeoutMs, description: 'Time limit (ms) of an on-demand negotiation.' },
  maxConnectionLifetime: { type: 'integer', minimum: 0, maximum: TIMER_MAX_MS, default: DEFAULTS.maxConnectionLifetimeMs, description: 'Maximum lifetime (ms) of a connection: then HTTP/1.1 answers the request in flight with Connection: close (an idle connection closes), HTTP/2 gets GOAWAY, so that reloads and revocations reach long-lived clients; a request after it gets 503 CB_ERR_CONNECTION_EXPIRED, and a response still unfinished after a grace (30 s, or the lifetime if shorter) is cut. 0: none. For the plugin: on the app\'s TLS server.' },
  channelBinding: { ...CHANNEL_BINDING_SCHEMA, description: 'Channel bindings: the token of receiveClientCertificate flags 0x1, TLS 1.2 exporter (docs/channel-binding.md).' },
  revocation: { anyOf: [{ instanceOf: 'RevocationChecker' }, REVOCATION_SCHEMA], description: 'Revocation checks of client certificates (OCSP, then CRLs): a RevocationChecker or its options (docs/ocsp.md). Off when absent.' },
  trustedProxies: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'Proxies whose RFC 9440 Client-Cert / Client-Cert-Chain headers are read: addresses or CIDRs (IPv4, IPv6; IPv4-mapped peers match IPv4 entries), or the proxy\'s mTLS identity on an authorized connection (sha256:HEX, sha1:HEX, identity:NAME). certbound decides on each forwarded certificate itself, per request, against ca, the mapper and revocation; from other peers the headers are removed and logged (docs/front.md#behind-a-front).' },
} as const satisfies Record<string, OptionSchema>;

/** The plugin's options (CertboundPluginOptions). */
export const PLUGIN_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...SHARED_OPTION_PROPERTIES,
    registry: { instanceOf: 'ConnectionRegistry', description: 'Use an existing connection registry (then mapper and revocation belong to it).' },
    queue: { instanceOf: 'RequestQueue', description: 'Use an existing request queue.' },
    ca: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }], description: 'createServer: trusted client CAs and intermediates (PEM, one or a list), needed by optional and require; with trustedProxies, also what forwarded certificates are verified against. Plugin: the CAs forwarded certificates are verified against (default: the ca of the app\'s TLS server).' },
    fleet: { instanceOf: 'Fleet', description: 'Fleet mode (docs/fleet.md): a Fleet (createFleet) the plugin starts, whose ticket keys it installs on the app\'s TLS server at every rotation and which it hands to the revocation checker and the ocsp stapler it builds; build the TLS server with sessionIdContext: fleetSessionIdContext(namespace, mode). You close it.' },
    logBindings: { type: 'boolean', default: true, description: 'Put connectionId and the thumbprint on every log line of a request (the plugin wraps the app\'s child-logger factory).' },
    ocsp: {
      type: 'object',
      additionalProperties: false,
      required: ['cert'],
      properties: {
        ...OCSP_SCHEMA.properties,
        cert: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }] },
        ca: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }] },
      },
      description: 'OCSP stapling on the app\'s TLS server: the server certificate(s) to staple and the stapler\'s options; adds app.ocspStaple() (read it with ocspStapleOf(app)), closed in onClose (docs/ocsp.md). Off when absent.',
    },
  },
} as const satisfies OptionSchema;

/** createServer's options (CreateServerOptions). */
export const SERVER_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...SHARED_OPTION_PROPERTIES,
    cert: { pem: true, description: 'Server certificate PEM, leaf first, optionally followed by its chain. Required unless certificates is given.' },
    key: { pem: true, description: 'Private key PEM of cert. Required unless certificates is given.' },
    certificates: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          cert: { pem: true },
          key: { pem: true },
          pfx: { instanceOf: 'Buffer' },
          passphrase: { type: 'string' },
          names: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
      },
      description: 'Several server certificates ({cert, key, passphrase?, names?} or {pfx, passphrase?, names?}), chosen by SNI and by what the client can verify (RSA or ECDSA); instead of, or after, cert and key (docs/configuration.md).',
    },
    ca: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }], description: 'Trusted client CAs and intermediates (PEM, one or a list); needed by optional and require, and by trustedProxies.' },
    crl: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }], description: 'CRLs (PEM) of the CAs of the client chains; an entry may hold several.' },
    logger: { anyOf: [{ type: 'boolean' }, { type: 'object' }], default: `pino at ${DEFAULTS.logLevel}`, description: 'A pino logger, pino options, or false for none.' },
    underPressure: { anyOf: [{ const: false }, { type: 'object' }], description: '@fastify/under-pressure options, or false to turn load shedding off.' },
    referenceRoutes: { type: 'boolean', default: false, description: 'Serve the reference routes (GET /, /connection, /whoami).' },
    http2: { type: 'boolean', default: false, description: 'Serve HTTP/2 as well (ALPN h2); on-demand routes answer h2 streams with HTTP_1_1_REQUIRED.' },
    onDemandHosts: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'SNI names (*.domain, *) whose connections are capped at TLS 1.2 and HTTP/1.1, so that on-demand routes can renegotiate.' },
    handshakeTimeout: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS, default: DEFAULTS.handshakeTimeoutMs, description: 'TLS handshake time limit (ms).' },
    tls: { type: 'object', description: 'Extra node:https server options (minVersion, ciphers, …); certbound\'s own keys win.' },
    fastify: { type: 'object', description: 'Extra fastify options.' },
    ocsp: { anyOf: [{ type: 'boolean' }, OCSP_SCHEMA], default: false, description: 'OCSP stapling of the server certificate: true or options (docs/ocsp.md).' },
    stapleSource: { type: 'object', description: 'Staples from elsewhere instead of a local stapler (a cluster worker\'s link to the primary). Not with ocsp.' },
    fleet: { anyOf: [{ instanceOf: 'Fleet' }, FLEET_SCHEMA], description: `Fleet mode on Redis (docs/fleet.md): { url (redis:// or rediss://), secretFile or secret (>= 32 bytes), ca, cert, key (rediss), username, password or passwordFile, namespace (default ${DEFAULTS.fleetNamespace}), lockTtlMs (default max(${DEFAULTS.fleetLockTtlMs}, twice the retrieval timeout)), tickets ({ rotationMs (default ${DEFAULTS.ticketKeyRotationMs}, at least the ticket lifetime) } or false) }, or a Fleet. Shares session-ticket keys, one OCSP retrieval per staple refresh and revocation data; Redis down: degraded, still ready. Off when absent.` },
    metrics: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        // A prom-client Registry (checked by shape where it is used: prom-client loads only when metrics are on).
        registry: { type: 'object' },
        defaultMetrics: { type: 'boolean' },
      },
      description: 'Metrics in Prometheus text format: { host (default 127.0.0.1), port (a plain-HTTP listener for GET /metrics; absent: none), registry (a prom-client Registry), defaultMetrics (default true) } (docs/metrics.md). Off when absent.',
    },
    expiryWarnings: {
      anyOf: [{ const: false }, {
        type: 'object',
        additionalProperties: false,
        properties: {
          certificateDays: { type: 'number', minimum: 0 },
          crlHours: { type: 'number', minimum: 0 },
          intervalMs: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
          now: { isFunction: true },
        },
      }],
      description: `Expiry warnings at listen() and daily: { certificateDays (default ${DEFAULTS.expiryWarningDays}), crlHours (default ${DEFAULTS.crlExpiryWarningHours}) }, or false (docs/metrics.md#expiry-warnings). On by default.`,
    },
    upstream: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', minLength: 1 },
        ca: { anyOf: [{ pem: true }, { type: 'array', items: { pem: true } }] },
        cert: { pem: true },
        key: { pem: true },
        onDemandPaths: { type: 'array', items: { type: 'string', minLength: 1 } },
        requirePaths: { type: 'array', items: { type: 'string', minLength: 1 } },
        connectTimeout: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
        timeout: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
        connections: { type: 'integer', minimum: 1 },
      },
      description: `Proxy every request no route answers to this upstream (docs/front.md): { url (http://host:port or https://host:port), ca, cert, key (https upstream), onDemandPaths, requirePaths (prefixes or globs), connectTimeout (default ${DEFAULTS.upstreamConnectTimeoutMs}), timeout (default ${DEFAULTS.upstreamTimeoutMs}), connections (default ${DEFAULTS.upstreamConnections}) }, with RFC 9440 Client-Cert headers. Off when absent.`,
    },
    crlRefresh: {
      anyOf: [{ type: 'boolean' }, {
        type: 'object',
        additionalProperties: false,
        properties: {
          leadMs: { type: 'integer', minimum: 0, maximum: TIMER_MAX_MS },
          retryMinMs: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
          retryMaxMs: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
          timeoutMs: { type: 'integer', exclusiveMinimum: 0, maximum: TIMER_MAX_MS },
          maxBytes: { type: 'integer', exclusiveMinimum: 0 },
          dir: { type: 'string', minLength: 1 },
          now: { isFunction: true },
        },
      }],
      default: false,
      description: `Fetch each loaded crl again from its distribution point before its nextUpdate and put it in force when it passes every check: true or { leadMs (default ${DEFAULTS.crlRefreshLeadMs}), retryMinMs, retryMaxMs, timeoutMs, maxBytes, dir (keeps fetched CRLs) } (docs/deployment.md#crl-refresh).`,
    },
  },
} as const satisfies OptionSchema;

/** What a schema accepts, in words (messages and the docs table). */
export function describeSchema(s: OptionSchema): string {
  if (s.anyOf) return s.anyOf.map(describeSchema).join(' or ');
  if (s.pem) return 'PEM (string or Buffer)';
  if (s.isFunction) return 'a function';
  if (s.instanceOf) return `a ${s.instanceOf}`;
  if (s.const !== undefined) return show(s.const);
  if (s.enum) return s.enum.map(show).join(', ');
  if (s.type === 'integer' || s.type === 'number') {
    const what = s.type === 'integer' ? 'an integer' : 'a number';
    const low = s.exclusiveMinimum !== undefined ? ` > ${s.exclusiveMinimum}` : s.minimum !== undefined ? ` >= ${s.minimum}` : '';
    return `${what}${low}${s.maximum !== undefined ? `${low ? ' and' : ''} <= ${s.maximum}` : ''}`;
  }
  if (s.type === 'boolean') return 'true or false';
  if (s.type === 'string') return s.pattern === '^https?://' ? 'an http:// or https:// URL' : s.minLength ? 'a non-empty string' : 'a string';
  if (s.type === 'array') return s.items ? `a list, each ${describeSchema(s.items)}` : 'a list';
  if (s.type === 'object') return 'an object';
  return 'anything';
}

const pointer = (instancePath: string): string => instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~')).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('');

/** One readable [path, why] out of ajv's errors: the deepest ones (the most specific), branches of an anyOf joined with "or". */
function explain(errors: readonly ErrorObject[], data: unknown, root: string): [string, string] {
  const named = (e: ErrorObject) => (e.keyword === 'additionalProperties' ? `${e.instancePath}/${String((e.params as { additionalProperty: string }).additionalProperty)}` : e.instancePath);
  const own = errors.filter((e) => e.keyword !== 'anyOf');
  const depth = (e: ErrorObject) => named(e).split('/').length;
  const deepest = Math.max(...own.map(depth));
  const chosen = own.filter((e) => depth(e) === deepest);
  const first = chosen[0] as ErrorObject;
  const path = `${root}${pointer(named(first))}`.replace(/^\./, '');
  const value = first.instancePath.split('/').slice(1).reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], data);
  if (first.keyword === 'additionalProperties') {
    const known = Object.keys((first.parentSchema as OptionSchema).properties ?? {});
    return [path, `unknown option (known: ${known.join(', ')})`];
  }
  // The branches that failed at this place, said once each.
  const whys = [...new Set(chosen.filter((e) => e.instancePath === first.instancePath).map((e) => describeSchema(e.parentSchema as OptionSchema)))];
  const expected = whys.join(' or ');
  return [path, first.keyword === 'enum' ? `${show(value)} is not one of ${expected}` : `expected ${expected}, got ${show(value)}`];
}

/** Abstract classes allowed as `instanceOf` targets. */
export type OptionClass = abstract new (...args: never[]) => unknown;

/** The classes `instanceOf` keywords name, from every compileOptions call (one name, one class). */
const optionClasses = new Map<string, OptionClass>();
let ajvInstance: Ajv | undefined;

/**
 * Ajv settings for the option schemas. `validateSchema: false` and `code.optimize: false` cut the
 * compile of both schemas from about 300 ms to 90 ms of every process's start-up (each cluster
 * worker validates its options too); the schemas are checked against the JSON Schema meta-schema
 * by test/options-schema.test.ts instead, and a validator runs once per server, where the
 * optimizer's gain does not show. Exported for that test.
 */
export const OPTION_AJV_SETTINGS = { allErrors: false, strict: true, verbose: true, validateSchema: false, code: { optimize: false } } as const;

/** Registers certbound's keywords (pem, isFunction, instanceOf) on an Ajv instance. */
export function addOptionKeywords(ajv: Ajv): Ajv {
  ajv.addKeyword({ keyword: 'pem', schemaType: 'boolean', validate: (_s: boolean, v: unknown) => typeof v === 'string' || Buffer.isBuffer(v) });
  ajv.addKeyword({ keyword: 'isFunction', schemaType: 'boolean', validate: (_s: boolean, v: unknown) => typeof v === 'function' });
  ajv.addKeyword({
    keyword: 'instanceOf',
    schemaType: 'string',
    validate: (name: string, v: unknown) => {
      const cls = optionClasses.get(name);
      if (!cls) throw new CertboundError('CB_ERR_INTERNAL', [`option schema names an unknown class ${name}`]);
      return v instanceof cls;
    },
  });
  return ajv;
}

/** One Ajv instance for every option schema of the process. */
function sharedAjv(): Ajv {
  return (ajvInstance ??= addOptionKeywords(new Ajv(OPTION_AJV_SETTINGS)));
}

/**
 * Compiles a schema into a validator that throws CB_ERR_INVALID_OPTION naming the option
 * (`path.key`) and why. `undefined` values count as absent. `classes` gives the classes the
 * schema's `instanceOf` keywords name.
 */
export function compileOptions(schema: OptionSchema, classes: Readonly<Record<string, OptionClass>> = {}): (options: unknown, path: string) => void {
  for (const [name, cls] of Object.entries(classes)) {
    const known = optionClasses.get(name);
    if (known && known !== cls) throw new CertboundError('CB_ERR_INTERNAL', [`two option schemas name different classes ${name}`]);
    optionClasses.set(name, cls);
  }
  // Compiled on first use, so that importing certbound does not pay for it.
  let validate: ValidateFunction | undefined;
  return (options, path) => {
    if (options === undefined) return;
    if (typeof options !== 'object' || options === null || Array.isArray(options)) bad(path, `expected an object, got ${show(options)}`);
    validate ??= sharedAjv().compile(schema as object);
    if (!validate(options)) throw new CertboundError('CB_ERR_INVALID_OPTION', explain(validate.errors ?? [], options, path));
  };
}

/** The options table of the README: every option of createServer and the plugin, from the schemas. */
export function optionsReferenceMarkdown(): string {
  const server: Readonly<Record<string, OptionSchema>> = SERVER_SCHEMA.properties;
  const plugin: Readonly<Record<string, OptionSchema>> = PLUGIN_SCHEMA.properties;
  const keys = [...new Set([...Object.keys(plugin), ...Object.keys(server)])];
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = keys.map((k) => {
    const s = (plugin[k] ?? server[k]) as OptionSchema;
    const where = k in plugin && k in server ? 'both' : k in plugin ? 'plugin' : 'createServer';
    const def = s.default === undefined ? '' : typeof s.default === 'string' && !/^[a-z-]+$/.test(s.default) ? s.default : `\`${JSON.stringify(s.default)}\``;
    return `| \`${k}\` | ${where} | ${cell(describeSchema(s))} | ${cell(def)} | ${cell(s.description ?? '')} |`;
  });
  return ['| option | for | accepts | default | meaning |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}
