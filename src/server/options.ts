// The option schema of the library and the plugin: one table per options object, checked up
// front so that an unknown key or value stops start-up with CB_ERR_INVALID_OPTION instead of
// being ignored (an ignored security option fails open). The CLI's flags and config keys have
// their own schema (src/server/config.ts) and map onto these options.
import { CertboundError } from '../errors.js';
import { CHANNEL_BINDING_TYPES } from '../cbt/binding.js';
import { CLIENT_AUTH_MODES } from '../tls/client-auth.js';
import { CertCheckMode } from '../ocsp/revocation.js';

/** Checks one value; throws CB_ERR_INVALID_OPTION naming `path`. */
export type Check = (value: unknown, path: string) => void;

function bad(path: string, why: string): never {
  throw new CertboundError('CB_ERR_INVALID_OPTION', [path, why]);
}

const show = (v: unknown): string => (typeof v === 'function' ? 'a function' : typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v));

export const is = {
  boolean: ((v, p) => { if (typeof v !== 'boolean') bad(p, `expected true or false, got ${show(v)}`); }) as Check,
  function: ((v, p) => { if (typeof v !== 'function') bad(p, `expected a function, got ${show(v)}`); }) as Check,
  positiveInteger: ((v, p) => { if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) bad(p, `expected a positive integer, got ${show(v)}`); }) as Check,
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
  pem: ((v, p) => { if (typeof v !== 'string' && !Buffer.isBuffer(v)) bad(p, `expected PEM text (string or Buffer), got ${show(v)}`); }) as Check,
  pemList: ((v, p) => {
    const list = Array.isArray(v) ? v : [v];
    list.forEach((x, i) => { if (typeof x !== 'string' && !Buffer.isBuffer(x)) bad(Array.isArray(v) ? `${p}[${i}]` : p, `expected PEM text (string or Buffer), got ${show(x)}`); });
  }) as Check,
  stringList: ((v, p) => {
    if (!Array.isArray(v)) bad(p, `expected a list of strings, got ${show(v)}`);
    v.forEach((x, i) => { if (typeof x !== 'string' || x === '') bad(`${p}[${i}]`, `expected a non-empty string, got ${show(x)}`); });
  }) as Check,
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
  instanceOf: (cls: abstract new (...args: never[]) => unknown, name: string): Check => (v, p) => {
    if (!(v instanceof cls)) bad(p, `expected a ${name}`);
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

const KNOWN_CHECK_MODE_BITS = Object.values(CertCheckMode).reduce<number>((a, b) => a | b, 0);

/** RevocationOptions (src/ocsp/revocation.ts). */
export const REVOCATION_OPTIONS: Schema = Object.freeze({
  certCheckMode: (v, p) => {
    is.nonNegativeInteger(v, p);
    if (((v as number) & ~KNOWN_CHECK_MODE_BITS) !== 0) bad(p, `${show(v)} has bits that are not DefaultCertCheckMode values (0, 0x1, 0x2, 0x4, 0x10000)`);
  },
  revocationFreshnessTimeSeconds: is.nonNegativeInteger,
  urlRetrievalTimeoutMs: is.positiveInteger,
  failMode: is.oneOf(['soft', 'hard']),
  crls: is.pemList,
  fetchCrlDistributionPoints: is.boolean,
  ocsp: is.boolean,
  now: is.function,
  fetcher: is.function,
  crlFetcher: is.function,
  logger: is.object,
});

/** ServerOcspOptions (src/ocsp/server-stapling.ts): a misspelt key (`cachDir`) would silently turn persistence off. */
export const OCSP_OPTIONS: Schema = Object.freeze({
  cacheDir: is.string,
  storage: is.object,
  async: is.boolean,
  maxConcurrentRetrievals: is.positiveInteger,
  settings: is.shape(Object.freeze({
    SrvOcspRespMinValiditySeconds: is.nonNegativeNumber,
    SrvOcspRespUrlRetrievalTimeoutMilliseconds: is.nonNegativeNumber,
    SrvOcspRespMaxBeforeNextUpdateSeconds: is.nonNegativeNumber,
    SrvOcspRespMinBeforeNextUpdateSeconds: is.nonNegativeNumber,
    SrvOcspRespMinAfterNextUpdateSeconds: is.nonNegativeNumber,
  })),
  retry: is.object,
  skewMs: is.nonNegativeInteger,
  now: is.function,
  timers: is.object,
  fetcher: is.function,
  method: is.oneOf(['auto', 'GET', 'POST']),
  url: is.string,
  issuer: is.pem,
});

/** ServerChannelBindingConfig (src/cbt/server-bindings.ts). */
export const CHANNEL_BINDING_OPTIONS: Schema = Object.freeze({
  type: is.oneOf(CHANNEL_BINDING_TYPES),
  form: is.oneOf(['raw', 'application-data']),
  renegotiationDisabled: is.boolean,
  tls12ExporterContext: is.oneOf(['empty', 'none']),
});

/** The options the plugin and createServer share. */
export const SHARED_OPTIONS: Schema = Object.freeze({
  clientAuth: is.oneOf(CLIENT_AUTH_MODES),
  mapper: is.either(is.function, is.object),
  rejectDeniedByMapper: is.boolean,
  negotiationTimeout: is.positiveInteger,
  channelBinding: is.shape(CHANNEL_BINDING_OPTIONS),
});
