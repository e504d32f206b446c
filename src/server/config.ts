// The configuration of `certbound serve`: one schema for the flags, the config file, the
// validation and the generated reference (docs/configuration.md).
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import { readRegularFile } from '../read-file.js';
import { DEFAULTS, TIMER_MAX_MS, TIMER_MAX_SECONDS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import { CLIENT_AUTH_MODES, type ClientAuthMode } from '../tls/client-auth.js';
import type { MapperConfig } from '../tls/mapper.js';
import { checkOcspUrl } from '../ocsp/ocsp-url.js';
import { parseHostPort } from './metrics-listener.js';
import { checkPathPattern, checkUpstreamUrl } from './front-policy.js';
import { checkFleetUrl, checkNamespace, checkRotation } from '../fleet/fleet-rules.js';

type Kind = 'string' | 'integer' | 'string[]' | 'enum' | 'object' | 'object[]' | 'boolean' | 'host:port';

export interface SettingSpec {
  readonly key: keyof ServeConfig;
  /** Command-line flag (without `--`), or null for config-file-only keys. */
  readonly flag: string | null;
  readonly kind: Kind;
  readonly values?: readonly string[];
  readonly default?: unknown;
  readonly min?: number;
  readonly max?: number;
  readonly description: string;
}

export interface ServeConfig {
  host: string;
  port: number;
  cert?: string;
  key?: string;
  ca?: string[];
  crl?: string[];
  clientAuth: ClientAuthMode;
  devPkiDir: string;
  logLevel: string;
  maxEventLoopDelay: number;
  handshakeTimeout: number;
  mapper?: MapperConfig;
  onDemandHosts?: string[];
  /** Proxies whose RFC 9440 Client-Cert headers are read (addresses, CIDRs, sha256:/sha1:/identity:). */
  trustedProxies?: string[];
  negotiationTimeout: number;
  /** Maximum connection lifetime (ms); 0: none. */
  maxConnectionLifetime: number;
  /** Worker processes (node:cluster); 1 serves in this process. Default: the number of cores. */
  workers?: number;
  ticketKeyRotation: number;
  clientRevocation: 'off' | 'check' | 'cached-only';
  revocationFailMode: 'soft' | 'hard';
  /** Metrics listener, `host:port` (or a port on 127.0.0.1); absent: no metrics. */
  metrics?: string;
  expiryWarningDays: number;
  crlExpiryWarningHours: number;
  /** Reload the TLS files when they change (as SIGHUP does). */
  watchCerts: boolean;
  /** Fetch each --crl again from its distribution point before its nextUpdate (kept in `<stateDir>/crl`). */
  crlRefresh: boolean;
  config?: string;
  /** OCSP stapling of the server certificates. */
  ocsp: 'on' | 'off';
  /** Where persisted staples live (`<stateDir>/ocsp`). */
  stateDir: string;
  /** Responder URL instead of the certificates' AIA. */
  ocspUrl?: string;
  /** First line: the passphrase of --key or --pfx. */
  keyPassphraseFile?: string;
  /** PKCS#12 server bundle (instead of --cert/--key). */
  pfx?: string;
  /** More server certificates (config file only). */
  certificates?: ServeCertificate[];
  /** The front: the upstream every request no route answers goes to (docs/front.md). */
  upstream?: string;
  upstreamCa?: string[];
  upstreamCert?: string;
  upstreamKey?: string;
  onDemandPaths?: string[];
  requirePaths?: string[];
  upstreamConnectTimeout: number;
  upstreamTimeout: number;
  upstreamConnections: number;
  // The seed's five settings of CertOpenServerOcspResponse, under their names.
  SrvOcspRespMinValiditySeconds?: number;
  SrvOcspRespUrlRetrievalTimeoutMilliseconds?: number;
  SrvOcspRespMaxBeforeNextUpdateSeconds?: number;
  SrvOcspRespMinBeforeNextUpdateSeconds?: number;
  SrvOcspRespMinAfterNextUpdateSeconds?: number;
  /** Fleet mode: redis:// or rediss:// URL (docs/fleet.md). */
  fleet?: string;
  fleetSecretFile?: string;
  fleetCa?: string[];
  fleetPasswordFile?: string;
  fleetNamespace: string;
  fleetLockTtl?: number;
}

/** One entry of the config file's `certificates` list (paths relative to the working directory). */
export interface ServeCertificate {
  cert?: string;
  key?: string;
  pfx?: string;
  passphraseFile?: string;
  names?: string[];
}

/** The seed's five settings: config keys under their registry names, flags in kebab case. */
export const OCSP_SETTING_KEYS = ['SrvOcspRespMinValiditySeconds', 'SrvOcspRespUrlRetrievalTimeoutMilliseconds', 'SrvOcspRespMaxBeforeNextUpdateSeconds', 'SrvOcspRespMinBeforeNextUpdateSeconds', 'SrvOcspRespMinAfterNextUpdateSeconds'] as const;

export const SERVE_SCHEMA: readonly SettingSpec[] = Object.freeze([
  { key: 'config', flag: 'config', kind: 'string', description: 'Config file with any of these keys: YAML when it ends in .yaml or .yml, JSON otherwise; flags override it.' },
  { key: 'host', flag: 'host', kind: 'string', default: DEFAULTS.host, description: 'Address to listen on.' },
  { key: 'port', flag: 'port', kind: 'integer', default: DEFAULTS.port, min: 0, max: 65535, description: 'TCP port (0 picks a free one).' },
  { key: 'cert', flag: 'cert', kind: 'string', description: 'PEM file with the server certificate, optionally followed by its chain. Without it the embedded dev PKI is used.' },
  { key: 'key', flag: 'key', kind: 'string', description: 'PEM file with the private key of --cert.' },
  { key: 'ca', flag: 'ca', kind: 'string[]', description: 'PEM file(s) with the trusted client CAs and intermediates (repeatable).' },
  { key: 'crl', flag: 'crl', kind: 'string[]', description: 'PEM CRL file(s) of the CAs of the client chains (repeatable; a file may hold several CRLs). Used with the dev PKI too.' },
  { key: 'clientAuth', flag: 'client-auth', kind: 'enum', values: CLIENT_AUTH_MODES, default: DEFAULTS.clientAuth, description: 'Client-certificate mode: none, optional, require, accept-untrusted.' },
  { key: 'devPkiDir', flag: 'dev-pki-dir', kind: 'string', default: DEFAULTS.devPkiDir, description: 'Where the embedded dev PKI is created on first run (used when --cert is not given).' },
  { key: 'logLevel', flag: 'log-level', kind: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: DEFAULTS.logLevel, description: 'pino log level.' },
  { key: 'maxEventLoopDelay', flag: 'max-event-loop-delay', kind: 'integer', default: DEFAULTS.maxEventLoopDelayMs, min: 0, max: TIMER_MAX_MS, description: 'Event-loop delay (ms) above which requests get 503 with Retry-After (0 disables).' },
  { key: 'handshakeTimeout', flag: 'handshake-timeout', kind: 'integer', default: DEFAULTS.handshakeTimeoutMs, min: 1, max: TIMER_MAX_MS, description: 'TLS handshake time limit (ms).' },
  { key: 'onDemandHosts', flag: 'on-demand-host', kind: 'string[]', description: 'Host (SNI name, *.domain, or * for all) whose connections are capped at TLS 1.2 and HTTP/1.1 so that on-demand routes such as /whoami can renegotiate (repeatable).' },
  { key: 'trustedProxies', flag: 'trusted-proxy', kind: 'string[]', description: 'Proxy (address, CIDR, or its mTLS identity sha256:HEX, sha1:HEX, identity:NAME) whose RFC 9440 Client-Cert / Client-Cert-Chain headers are read; certbound verifies each forwarded certificate itself (--ca, --crl, revocation, mapper), per request. From any other peer the headers are removed and logged (repeatable). See docs/front.md#behind-a-front.' },
  { key: 'negotiationTimeout', flag: 'negotiation-timeout', kind: 'integer', default: DEFAULTS.negotiationTimeoutMs, min: 1, max: TIMER_MAX_MS, description: 'Time limit (ms) for a client to answer an on-demand certificate request.' },
  { key: 'maxConnectionLifetime', flag: 'max-connection-lifetime', kind: 'integer', default: DEFAULTS.maxConnectionLifetimeMs, min: 0, max: TIMER_MAX_MS, description: 'Maximum lifetime (ms) of a connection: then HTTP/1.1 answers the request in flight with Connection: close (an idle connection closes) and HTTP/2 gets GOAWAY, so that reloads and revocations reach clients that keep their connection; a request after it gets 503 CB_ERR_CONNECTION_EXPIRED, and a response still unfinished after a grace (30 s, or the lifetime if shorter) is cut. 0 (default): none.' },
  { key: 'workers', flag: 'workers', kind: 'integer', min: 1, max: 256, description: 'Worker processes sharing the port (node:cluster); 1 serves in one process. Default: the number of cores (os.availableParallelism()). See docs/performance.md.' },
  { key: 'clientRevocation', flag: 'client-revocation', kind: 'enum', values: ['off', 'check', 'cached-only'], default: DEFAULTS.clientRevocation, description: 'Revocation check of client certificates after the handshake (OCSP, then CRL distribution points and --crl files); the verdict lands in certFlags. cached-only fetches nothing (HTTP.sys DefaultCertCheckMode 2). See docs/ocsp.md.' },
  { key: 'revocationFailMode', flag: 'revocation-fail-mode', kind: 'enum', values: ['soft', 'hard'], default: DEFAULTS.revocationFailMode, description: 'When revocation cannot be told: hard puts CRYPT_E_REVOCATION_OFFLINE / CRYPT_E_NO_REVOCATION_CHECK in certFlags, soft lets the certificate pass.' },
  { key: 'ticketKeyRotation', flag: 'ticket-key-rotation', kind: 'integer', default: DEFAULTS.ticketKeyRotationMs, min: 1000, max: TIMER_MAX_MS, description: 'With workers: interval (ms) at which the primary rotates the TLS session-ticket keys it shares with them. With --fleet: the fleet\'s rotation interval (one machine rotates for all; at least 300000, the ticket lifetime, since a rotation ends every older ticket).' },
  { key: 'ocsp', flag: 'ocsp', kind: 'enum', values: ['on', 'off'], default: DEFAULTS.ocsp, description: 'OCSP stapling of the server certificates (off: no stapler, no OCSP retrieval; /connection shows state "off"). See docs/ocsp.md.' },
  { key: 'stateDir', flag: 'state-dir', kind: 'string', default: DEFAULTS.stateDir, description: 'Directory (created mode 0700) for state that survives a restart: verified OCSP staples in its ocsp/ subdirectory, so a restart staples while the responder is down. The dev PKI keeps its own (ocsp-cache in --dev-pki-dir). See docs/deployment.md.' },
  { key: 'ocspUrl', flag: 'ocsp-url', kind: 'string', description: 'OCSP responder URL (http:// or https://) to ask instead of the one in the certificates\' AIA; certificates without an AIA URL are stapled too.' },
  { key: 'keyPassphraseFile', flag: 'key-passphrase-file', kind: 'string', description: 'File whose first line is the passphrase of an encrypted --key, or of --pfx.' },
  { key: 'pfx', flag: 'pfx', kind: 'string', description: 'PKCS#12 file (.p12/.pfx) with the server certificate, its chain and key, instead of --cert and --key (passphrase: --key-passphrase-file).' },
  { key: 'certificates', flag: null, kind: 'object[]', description: 'More server certificates, chosen by SNI name and key type: [{cert, key | pfx, passphraseFile, names}] (config file only; names default to the certificate\'s DNS names). --cert/--key (or --pfx) stays the one for clients without SNI; without it the first entry is. See docs/configuration.md#several-server-certificates.' },
  { key: 'SrvOcspRespMinValiditySeconds', flag: 'srv-ocsp-resp-min-validity-seconds', kind: 'integer', min: 0, max: TIMER_MAX_SECONDS, description: 'Seed setting: a staple is served only while valid at least this long (s). Default 600 (wincrypt.h).' },
  { key: 'SrvOcspRespUrlRetrievalTimeoutMilliseconds', flag: 'srv-ocsp-resp-url-retrieval-timeout-milliseconds', kind: 'integer', min: 1, max: TIMER_MAX_MS, description: 'Seed setting: time limit of one OCSP retrieval (ms). Default 15000.' },
  { key: 'SrvOcspRespMaxBeforeNextUpdateSeconds', flag: 'srv-ocsp-resp-max-before-next-update-seconds', kind: 'integer', min: 0, max: TIMER_MAX_SECONDS, description: 'Seed setting: prefetch no earlier than nextUpdate minus this (s). Default 14400.' },
  { key: 'SrvOcspRespMinBeforeNextUpdateSeconds', flag: 'srv-ocsp-resp-min-before-next-update-seconds', kind: 'integer', min: 0, max: TIMER_MAX_SECONDS, description: 'Seed setting: from nextUpdate minus this (s) on, wait until nextUpdate + MinAfter. Default 120.' },
  { key: 'SrvOcspRespMinAfterNextUpdateSeconds', flag: 'srv-ocsp-resp-min-after-next-update-seconds', kind: 'integer', min: 0, max: TIMER_MAX_SECONDS, description: 'Seed setting: how long after nextUpdate (s) the late prefetch happens. Default 60.' },
  { key: 'metrics', flag: 'metrics', kind: 'host:port', description: 'Serve metrics in Prometheus text format on GET http://HOST:PORT/metrics (plain HTTP: keep it on loopback or a private network); with workers the primary serves them, summed over the workers. Off by default. See docs/metrics.md.' },
  { key: 'expiryWarningDays', flag: 'expiry-warning-days', kind: 'integer', default: DEFAULTS.expiryWarningDays, min: 0, description: 'Log a warning, at start-up and once a day, for the server certificate, its chain and the --ca certificates this many days before they expire (expired: an error line).' },
  { key: 'crlExpiryWarningHours', flag: 'crl-expiry-warning-hours', kind: 'integer', default: DEFAULTS.crlExpiryWarningHours, min: 0, description: 'Log a warning this many hours before a --crl file reaches its nextUpdate; past it, an error line (every client certificate it covers fails with CRL_HAS_EXPIRED).' },
  { key: 'watchCerts', flag: 'watch-certs', kind: 'boolean', default: DEFAULTS.watchCerts, description: `Reload the server certificates (with the certificates list and passphrase files), CA and CRL files when they change, as SIGHUP does (after ${DEFAULTS.watchCertsDebounceMs} ms without a change; with workers the primary watches). A bad file keeps the certificates in use and logs one CB_ERR_RELOAD line. See docs/deployment.md.` },
  { key: 'crlRefresh', flag: 'crl-refresh', kind: 'boolean', default: DEFAULTS.crlRefresh, description: `Fetch each --crl again from its distribution point (the CRL's issuing distribution point, else its CA's http CRL distribution point) ${DEFAULTS.crlRefreshLeadMs / 3_600_000} h before its nextUpdate (or at half its validity), check it (signature of its CA, newer, not expired) and put it in force as a reload does; a bad answer changes nothing and is retried. Fetched CRLs are kept in <state-dir>/crl for a restart; the --crl file is never written. With workers the primary fetches. See docs/deployment.md#crl-refresh.` },
  { key: 'upstream', flag: 'upstream', kind: 'string', description: 'Proxy every request that no route of the server answers (/, /connection, /whoami, /healthz, /readyz stay certbound\'s) to this origin, http://host:port or https://host:port, with the client certificate as RFC 9440 Client-Cert / Client-Cert-Chain when it is authorized. See docs/front.md.' },
  { key: 'upstreamCa', flag: 'upstream-ca', kind: 'string[]', description: 'PEM file(s) with the CAs an https --upstream\'s certificate must chain to (repeatable; default: Node\'s root store).' },
  { key: 'upstreamCert', flag: 'upstream-cert', kind: 'string', description: 'PEM file with the client certificate certbound presents to an https --upstream (with --upstream-key).' },
  { key: 'upstreamKey', flag: 'upstream-key', kind: 'string', description: 'PEM file with the private key of --upstream-cert.' },
  { key: 'onDemandPaths', flag: 'on-demand-path', kind: 'string[]', description: 'Path prefix (/admin/) or glob (/api/*/admin, /**/private) of the --upstream whose requests ask for a client certificate by TLS 1.2 renegotiation before they are proxied (repeatable; needs --on-demand-host for TLS 1.3 clients). See docs/front.md#per-path-policy.' },
  { key: 'requirePaths', flag: 'require-path', kind: 'string[]', description: 'Path prefix or glob of the --upstream refused (403) without an authorized client certificate (repeatable); other paths follow --client-auth.' },
  { key: 'upstreamConnectTimeout', flag: 'upstream-connect-timeout', kind: 'integer', default: DEFAULTS.upstreamConnectTimeoutMs, min: 1, max: TIMER_MAX_MS, description: 'Time limit (ms) to open a connection to the --upstream (then 504 CB_ERR_UPSTREAM_TIMEOUT).' },
  { key: 'upstreamTimeout', flag: 'upstream-timeout', kind: 'integer', default: DEFAULTS.upstreamTimeoutMs, min: 1, max: TIMER_MAX_MS, description: 'Time limit (ms) for the --upstream\'s response headers (then 504 CB_ERR_UPSTREAM_TIMEOUT) and for each pause in its response body (then the response is cut).' },
  { key: 'upstreamConnections', flag: 'upstream-connections', kind: 'integer', default: DEFAULTS.upstreamConnections, min: 1, max: 65535, description: 'Most keep-alive connections to the --upstream, per process.' },
  { key: 'fleet', flag: 'fleet', kind: 'string', description: 'Fleet mode: share session-ticket keys, one OCSP retrieval per staple refresh and client-certificate revocation data with the other machines on this Redis, redis://[user@]HOST:PORT[/db] or rediss://… (needs --fleet-secret-file). With it --ticket-key-rotation is the fleet\'s interval (at least the ticket lifetime, 300 s). Redis down: each machine serves on its own state, /readyz says degraded (still 200). See docs/fleet.md.' },
  { key: 'fleetSecretFile', flag: 'fleet-secret-file', kind: 'string', description: 'File (mode 0600, at least 32 bytes, e.g. openssl rand -base64 48) with the fleet secret: the ticket keys are sealed with a key derived from it before they go to Redis; the secret itself never does. The same file on every machine.' },
  { key: 'fleetCa', flag: 'fleet-ca', kind: 'string[]', description: 'PEM file(s) with the CA(s) a rediss:// --fleet server\'s certificate must chain to (repeatable; default: Node\'s root store).' },
  { key: 'fleetPasswordFile', flag: 'fleet-password-file', kind: 'string', description: 'File whose first line is the Redis password (with an ACL user in the --fleet URL, its password), kept out of the command line.' },
  { key: 'fleetNamespace', flag: 'fleet-namespace', kind: 'string', default: DEFAULTS.fleetNamespace, description: 'Prefix of every Redis key of the fleet (letters, digits, . _ -): machines of one fleet share it; several fleets can share one Redis.' },
  { key: 'fleetLockTtl', flag: 'fleet-lock-ttl', kind: 'integer', min: 1000, max: TIMER_MAX_MS, description: `Expiry (ms) of a fleet lock (ticket rotation, one staple or revocation retrieval): a machine that dies holding it is replaced within it. Default: ${DEFAULTS.fleetLockTtlMs}, or twice SrvOcspRespUrlRetrievalTimeoutMilliseconds if longer.` },
  { key: 'mapper', flag: null, kind: 'object', description: 'Certificate mapper: { oneToOne: [{thumbprint, identity}], manyToOne: [{name, rules: [{field: subject | issuer | san, attribute, match}], issuerThumbprint, identity | deny}], denyUnmapped } (config file only). Issuer rules and issuerThumbprint read the verified chain.' },
] satisfies SettingSpec[]);

function bad(key: string, why: string): never {
  throw new CertboundError('CB_ERR_INVALID_OPTION', [key, why]);
}

/** Validates one value against its spec; returns the normalized value. */
function coerce(spec: SettingSpec, value: unknown, from: 'flag' | 'file'): unknown {
  const name = from === 'flag' && spec.flag ? `--${spec.flag}` : spec.key;
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string' || value === '') bad(name, 'expected a non-empty string');
      return value;
    case 'host:port': {
      // A config file may give a bare port as a number.
      const text = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
      if (typeof text !== 'string') bad(name, `expected host:port, got ${JSON.stringify(value)}`);
      parseHostPort(text, name);
      return text;
    }
    case 'string[]': {
      const list = Array.isArray(value) ? value : [value];
      if (!list.every((v) => typeof v === 'string' && v !== '')) bad(name, spec.key === 'onDemandHosts' ? 'expected host name(s) (a name, *.domain or *), not an empty string' : spec.key === 'trustedProxies' ? 'expected address(es), CIDR(s), sha256:HEX, sha1:HEX or identity:NAME' : spec.key.endsWith('Paths') ? 'expected path prefix(es) or glob(s)' : 'expected file path(s)');
      return list;
    }
    case 'integer': {
      const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) bad(name, `expected an integer, got ${JSON.stringify(value)}`);
      if (spec.min !== undefined && n < spec.min) bad(name, `must be >= ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) bad(name, `must be <= ${spec.max}`);
      return n;
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.values?.includes(value)) bad(name, `expected one of ${spec.values?.join(', ')}, got ${JSON.stringify(value)}`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') bad(name, 'expected true or false');
      return value;
    case 'object':
      if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(name, 'expected an object');
      return value;
    case 'object[]':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'object' && v !== null && !Array.isArray(v))) bad(name, 'expected a list of objects');
      return value;
  }
}

/** True when `path` names a YAML config file (by its extension); any other is JSON. */
export function isYamlConfig(path: string): boolean {
  return ['.yaml', '.yml'].includes(extname(path).toLowerCase());
}

/**
 * The value of a config file's text: YAML 1.2 (core schema, one document, unique keys, at most
 * 100 aliases: the yaml package's defaults; no tag it does not know) or JSON. Throws an Error whose message says where
 * the text is wrong ("line 3, column 1: …" for YAML).
 */
function parseConfigText(text: string, yaml: boolean): unknown {
  if (!yaml) {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new Error(`not JSON: ${(err as Error).message}`);
    }
  }
  const doc = parseDocument(text);
  // A warning is an error here: a tag the core schema does not know (`!custom x`) would
  // otherwise quietly become the plain string "x".
  const [first] = [...doc.errors, ...doc.warnings];
  if (first) {
    const at = first.linePos?.[0];
    const what = (first.message.split('\n')[0] ?? first.code).replace(/ at line \d+, column \d+:?$/, '');
    throw new Error(`not YAML: ${at ? `line ${at.line}, column ${at.col}: ` : ''}${what}`);
  }
  try {
    return doc.toJS();
  } catch (err) {
    // An alias to nothing, or more aliases than allowed (a "billion laughs" file).
    throw new Error(`not YAML: ${(err as Error).message}`);
  }
}

/** Reads a JSON or YAML config file (isYamlConfig); unknown keys and bad values are errors. */
export function readConfigFile(path: string): Partial<ServeConfig> {
  const yaml = isYamlConfig(path);
  let text: string;
  try {
    // A regular file within bounds (read-file.ts): a FIFO or /dev/zero is a clear error, not a hang.
    text = readRegularFile(path, DEFAULTS.maxStateFileBytes).toString('utf8');
  } catch (err) {
    throw new CertboundError('CB_ERR_CONFIG_FILE', [path, (err as NodeJS.ErrnoException).code ?? (err as Error).message]);
  }
  let raw: unknown;
  try {
    raw = parseConfigText(text, yaml);
  } catch (err) {
    throw new CertboundError('CB_ERR_CONFIG_FILE', [path, (err as Error).message]);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CertboundError('CB_ERR_CONFIG_FILE', [path, yaml ? 'expected a YAML mapping of keys' : 'expected a JSON object']);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    const spec = SERVE_SCHEMA.find((s) => s.key === k);
    if (!spec || k === 'config') bad(k, `unknown key in ${path}`);
    out[k] = coerce(spec, v, 'file');
  }
  return out as Partial<ServeConfig>;
}

/** Merges defaults, the config file and flags (in that order) into a validated config. */
export function resolveServeConfig(flags: Record<string, unknown>): ServeConfig {
  const fromFlags: Record<string, unknown> = {};
  for (const spec of SERVE_SCHEMA) {
    if (!spec.flag) continue;
    const v = flags[spec.flag];
    if (v !== undefined) fromFlags[spec.key] = coerce(spec, v, 'flag');
  }
  const fromFile = typeof fromFlags.config === 'string' ? readConfigFile(fromFlags.config) : {};
  const out: Record<string, unknown> = {};
  for (const spec of SERVE_SCHEMA) if (spec.default !== undefined) out[spec.key] = spec.default;
  Object.assign(out, fromFile, fromFlags);
  if ((out.cert === undefined) !== (out.key === undefined)) bad(out.cert === undefined ? '--key' : '--cert', '--cert and --key go together');
  if (out.pfx !== undefined && out.cert !== undefined) bad('--pfx', 'holds the certificate and key: not with --cert and --key');
  // A passphrase nothing uses would be an ignored setting: the dev PKI's keys are not encrypted.
  if (out.keyPassphraseFile !== undefined && out.pfx === undefined && out.cert === undefined) bad('--key-passphrase-file', 'is the passphrase of --key or --pfx: give one of them');
  if (out.certificates !== undefined) out.certificates = (out.certificates as unknown[]).map((c, i) => serveCertificate(c, `certificates[${i}]`));
  if (out.ocspUrl !== undefined) checkOcspUrl(out.ocspUrl, '--ocsp-url');
  checkFrontConfig(out, fromFlags);
  checkFleetConfig(out, fromFlags, fromFile);
  return out as unknown as ServeConfig;
}

/** The front's flags: an upstream URL that works, and no upstream setting without --upstream (it would be ignored). */
function checkFrontConfig(out: Record<string, unknown>, fromFlags: Record<string, unknown>): void {
  const name = (key: string) => (key in fromFlags ? `--${SERVE_SCHEMA.find((s) => s.key === key)?.flag ?? key}` : key);
  const given = ['upstreamCa', 'upstreamCert', 'upstreamKey', 'onDemandPaths', 'requirePaths'].filter((k) => out[k] !== undefined);
  if (out.upstream === undefined) {
    if (given[0] !== undefined) bad(name(given[0]), 'needs --upstream');
    return;
  }
  const u = checkUpstreamUrl(out.upstream as string, name('upstream'));
  const tls = given.filter((k) => k.startsWith('upstreamC') || k === 'upstreamKey');
  if (u.protocol === 'http:' && tls[0] !== undefined) bad(name(tls[0]), 'is for an https:// --upstream');
  if ((out.upstreamCert === undefined) !== (out.upstreamKey === undefined)) bad(name(out.upstreamCert === undefined ? 'upstreamKey' : 'upstreamCert'), '--upstream-cert and --upstream-key go together');
  for (const k of ['onDemandPaths', 'requirePaths']) ((out[k] as string[] | undefined) ?? []).forEach((p) => checkPathPattern(p, name(k)));
}

/** The fleet's flags: a URL that parses, a secret file, no fleet setting without --fleet, a rotation no shorter than the ticket lifetime. */
function checkFleetConfig(out: Record<string, unknown>, fromFlags: Record<string, unknown>, fromFile: Record<string, unknown>): void {
  const name = (key: string) => (key in fromFlags ? `--${SERVE_SCHEMA.find((s) => s.key === key)?.flag ?? key}` : key);
  const given = ['fleetSecretFile', 'fleetCa', 'fleetPasswordFile', 'fleetLockTtl'].filter((k) => out[k] !== undefined);
  // The namespace has a default: only one given (flag or file) without --fleet would be ignored.
  if (fromFile.fleetNamespace !== undefined || 'fleetNamespace' in fromFlags) given.push('fleetNamespace');
  if (out.fleet === undefined) {
    if (given[0] !== undefined) bad(name(given[0]), 'needs --fleet');
    return;
  }
  const { url } = checkFleetUrl(out.fleet as string, name('fleet'));
  if (out.fleetSecretFile === undefined) bad(name('fleet'), 'needs --fleet-secret-file (the ticket keys are sealed with it)');
  if (out.fleetCa !== undefined && url.protocol !== 'rediss:') bad(name('fleetCa'), 'is for a rediss:// --fleet');
  checkNamespace(out.fleetNamespace as string, name('fleetNamespace'));
  checkRotation(out.ticketKeyRotation as number, DEFAULTS.ticketLifetimeSeconds, name('ticketKeyRotation'));
}

function serveCertificate(value: unknown, where: string): ServeCertificate {
  const v = value as Record<string, unknown>;
  for (const [k, x] of Object.entries(v)) {
    if (k === 'names') {
      if (!Array.isArray(x) || !x.every((n) => typeof n === 'string' && n !== '')) bad(`${where}.names`, 'expected a list of host names');
    } else if (['cert', 'key', 'pfx', 'passphraseFile'].includes(k)) {
      if (typeof x !== 'string' || x === '') bad(`${where}.${k}`, 'expected a file path');
    } else bad(`${where}.${k}`, 'unknown key (cert, key, pfx, passphraseFile, names)');
  }
  if (v.pfx !== undefined ? v.cert !== undefined || v.key !== undefined : v.cert === undefined || v.key === undefined) bad(where, 'needs cert and key, or pfx alone');
  return v as ServeCertificate;
}

/** The flag table as markdown (docs/configuration.md is generated from it). */
export function configReferenceMarkdown(): string {
  const rows = SERVE_SCHEMA.map((s) => {
    const flag = s.flag ? `\`--${s.flag}${s.kind === 'boolean' ? '' : ' <' + (s.kind === 'enum' ? s.values?.join('|') : s.kind === 'integer' ? 'n' : s.kind === 'host:port' ? 'host:port' : 'value') + '>'}\`` : '(config file only)';
    const def = s.default === undefined ? '' : `\`${JSON.stringify(s.default)}\``;
    // A `|` inside a cell, even in a code span, would split the markdown table.
    const cell = (text: string) => text.replace(/\|/g, '\\|');
    // The upper bound where there is one (timers: 2147483647 ms, Node's longest; docs/changes.md).
    const kind = 'max' in s && s.max !== undefined ? `${s.kind} ≤ ${s.max}` : s.kind;
    return `| ${cell(flag)} | \`${s.key}\` | ${kind} | ${def} | ${cell(s.description)} |`;
  });
  return ['| flag | config key | type | default | meaning |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}
