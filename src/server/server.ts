// createServer: an HTTPS server on fastify 5 that owns its TLS server (serverFactory), a
// connection registry and a request queue, with under-pressure load shedding and pino logs.
import { constants as cryptoConstants, type X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rootCertificates, type SecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { anchorsFromPem } from '../tls/peer-chain.js';
import { createSecureServer as createHttp2Server } from 'node:http2';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure';
import { pino, type Logger, type LoggerOptions } from 'pino';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import { tlsOptionsForMode, type ClientAuthMode } from '../tls/client-auth.js';
import { compileMapper, type CertificateMapperFn, type MapperConfig } from '../tls/mapper.js';
import { parseCertificates, parsePrivateKey } from '../tls/pem.js';
import { checkServable, crlsOf, makeTlsListener } from '../tls/secure-context.js';
import { buildServerMaterial, checkServerCertificate, type ServerCertificate, type ServerCertificateOptions } from '../tls/server-material.js';
import { clientHelloOf } from '../tls/hello-record.js';
import { hostMatches, installHostRouting } from '../tls/host-policy.js';
import { installCertbound, type CertboundPluginOptions } from './plugin.js';
import { RequestQueue } from './receive.js';
import { ConnectionRegistry, connectionIdPrefix } from './registry.js';
import { ListenerList, type ListenerOwnOptions, type ListenerTls, type StapleSource } from './listeners.js';
import { checkReloadMaterial, describeCertificate, logReloadFailure, reloadChannel, reloadError, type CheckedMaterial, type ReloadedCertificate, type ReloadEvent, type ReloadInput, type ReloadResult } from './reload.js';
import { trustMaterial, type TrustMaterial } from '../tls/trust-material.js';
import { createRevocationChecker, RevocationChecker } from '../ocsp/revocation.js';
import { compileOptions, SERVER_SCHEMA, type OptionClass } from './options.js';
import { NO_METRICS, PromMetrics, type PromRegistry } from './metrics.js';
import { isLoopback as isLoopbackHost, startMetricsListener, type MetricsListener } from './metrics-listener.js';
import { ExpiryMonitor, expiryItems, type ExpiryMonitorOptions } from './expiry.js';
import { CrlRefresher, type CrlRefreshOptions } from './crl-refresh.js';
import { referenceRoutes } from './routes.js';
import { createServerStapling, OCSP_OFF_SUMMARY, type OcspStapleSummary, type ServerOcspOptions } from '../ocsp/server-stapling.js';
import type { OcspStapler } from '../ocsp/stapler.js';
import { createFleet, Fleet, type FleetOptions } from '../fleet/fleet.js';
import { fleetSessionIdContext } from '../fleet/fleet-rules.js';
import type { ServerChannelBindingConfig } from '../cbt/server-bindings.js';
import { checkFrontOptions, type FrontOptions } from './front-policy.js';

type Pem = string | Buffer;

/** createServer's options (`cert` + `key`, and/or `certificates`). */
export type CreateServerOptions = CreateServerCommonOptions & (
  | {
    /** Server certificate PEM, leaf first, optionally followed by its chain. Served to clients without SNI. */
    cert: Pem;
    /** Private key PEM of `cert` (encrypted: give `tls.passphrase`). */
    key: Pem;
    /** More server certificates, chosen by SNI and by key type (docs/configuration.md#several-server-certificates). */
    certificates?: ServerCertificateOptions[];
  }
  | {
    cert?: undefined;
    key?: undefined;
    /** The server certificates (PEM or PKCS#12), chosen by SNI and by key type; the first one serves clients without SNI. */
    certificates: ServerCertificateOptions[];
  });

/** The options of createServer besides its certificates. */
export interface CreateServerCommonOptions {
  /** Trusted client CAs and intermediates (PEM). */
  ca?: Pem | Pem[];
  /** CRLs (PEM) of the CAs of the client chains; an entry may hold several (certbound hands Node one per CRL, as it reads only the first of each). */
  crl?: Pem | Pem[];
  /** Client-certificate mode at handshake. Default: 'optional'. */
  clientAuth?: ClientAuthMode;
  mapper?: MapperConfig | CertificateMapperFn;
  /** See CertboundPluginOptions.rejectDeniedByMapper. */
  rejectDeniedByMapper?: boolean;
  /** See CertboundPluginOptions.trustedProxies: forwarded certificates are verified against `ca` and `crl` (those in force after a reload). Needs `ca`. */
  trustedProxies?: string[];
  /** A pino logger, pino options, or false for none. Default: pino at level 'info'. */
  logger?: Logger | LoggerOptions | false;
  /** @fastify/under-pressure options, or false to turn load shedding off. Default: maxEventLoopDelay 1000 ms, Retry-After 10 s, status route /healthz. */
  underPressure?: FastifyUnderPressureOptions | false;
  /** Serve the reference routes (GET /, /connection; /healthz comes with under-pressure). Default: false. */
  referenceRoutes?: boolean;
  /** Channel bindings (receiveClientCertificate 0x1 token type and form, TLS 1.2 exporter). Default: tls-server-end-point, application-data form. See docs/channel-binding.md. */
  channelBinding?: ServerChannelBindingConfig;
  /**
   * Serve HTTP/2 as well (ALPN h2, with HTTP/1.1 for clients without it). On-demand routes
   * answer h2 streams with HTTP_1_1_REQUIRED. Default: false (HTTP/1.1 only).
   */
  http2?: boolean;
  /** Time limit (ms) of an on-demand negotiation. Default: 10000. */
  negotiationTimeout?: number;
  /**
   * Maximum lifetime (ms) of a connection, after which the server ends it gracefully: HTTP/1.1
   * answers the request in flight with `Connection: close` (an idle connection closes), HTTP/2
   * gets GOAWAY. Lets trust changes (reload, revocation) reach long-lived clients. 0: none.
   * Default: 0.
   */
  maxConnectionLifetime?: number;
  /** Revocation checks of client certificates (see CertboundPluginOptions.revocation). Default: off. */
  revocation?: CertboundPluginOptions['revocation'];
  /**
   * Hosts (SNI names; `*.domain` or `*` for all, including clients without SNI) whose
   * connections are capped at TLS 1.2 and HTTP/1.1, so that on-demand routes can
   * renegotiate. Decided from the ClientHello before TLS starts. Default: none.
   */
  onDemandHosts?: string[];
  /** TLS handshake time limit (ms). Default: 10000. */
  handshakeTimeout?: number;
  /** Extra node:https server options (minVersion, ciphers, …); certbound's own keys win. */
  tls?: Omit<HttpsServerOptions, 'cert' | 'key' | 'ca' | 'crl' | 'requestCert' | 'rejectUnauthorized'>;
  /** Extra fastify options. */
  fastify?: Omit<FastifyServerOptions, 'serverFactory' | 'https' | 'http2' | 'logger' | 'loggerInstance'>;
  /**
   * OCSP stapling of the server certificate (docs/ocsp.md): `true` or options. The first
   * retrieval (or a persisted response) completes before `listen()` resolves. Default: off.
   */
  ocsp?: ServerOcspOptions | boolean;
  /**
   * Staples from elsewhere instead of a local stapler: a cluster worker's link to the primary
   * (src/server/cluster.ts). Installed on every listener. Not with `ocsp`.
   */
  stapleSource?: StapleSource;
  /**
   * Fleet mode (docs/fleet.md): machines share, through Redis, the session-ticket keys (a ticket
   * from one machine resumes on another), one OCSP retrieval per staple refresh, and the signed
   * revocation data of client certificates; each machine verifies what it reads. Options (the
   * server opens and closes the connection; `tickets.rotationMs` replaces the local rotation) or
   * a Fleet of your own (you start and close it). Redis unavailable: the server serves on its own
   * state and reports `degraded` in GET /readyz (still 200) and the metrics. Default: off.
   */
  fleet?: FleetOptions | Fleet;
  /**
   * Metrics in Prometheus text format (prom-client; names in docs/metrics.md). With `port`,
   * `listen()` also serves GET /metrics over plain HTTP on `host` (default 127.0.0.1): keep it
   * on loopback or a private network. Without `port`, read `server.metrics.registry` yourself.
   * Default: off (prom-client is not loaded, the hot paths count nothing).
   */
  metrics?: ServerMetricsOptions;
  /**
   * Expiry warnings: at `listen()` and once a day, one log line per server certificate (and
   * chain), trusted client CA and loaded CRL near or past its end (docs/metrics.md), and the
   * expiry gauges when metrics are on. `false` turns them off. Default: on, thresholds
   * DEFAULTS.expiryWarningDays and DEFAULTS.crlExpiryWarningHours.
   */
  expiryWarnings?: ServerExpiryOptions | false;
  /**
   * Fetch each loaded CRL (`crl`) again from its distribution point (its Issuing Distribution
   * Point, else its CA's http CRL distribution point) before its nextUpdate, and put it in force
   * through reload() when it passes every check (docs/deployment.md#crl-refresh). A refused or
   * failed fetch changes nothing and is retried. `true`: the defaults. Default: off.
   */
  crlRefresh?: boolean | CrlRefreshOptions;
  /**
   * Proxy every request that no route answers to an upstream (docs/front.md), with the client
   * certificate as RFC 9440 Client-Cert / Client-Cert-Chain when the connection's decision is
   * authorized. Routes of the app (and the reference routes) keep precedence. Default: off.
   */
  upstream?: FrontOptions;
}

export interface ServerMetricsOptions {
  /** Address of the metrics listener. Default: 127.0.0.1 (DEFAULTS.metricsHost). */
  host?: string;
  /** Port of the metrics listener (0 picks a free one). Absent: no listener. */
  port?: number;
  /** A prom-client Registry of the application to register on. Default: a new one. */
  registry?: PromRegistry;
  /** prom-client's default process and Node.js metrics on the same registry. Default: true. */
  defaultMetrics?: boolean;
}

export type ServerExpiryOptions = Partial<Pick<ExpiryMonitorOptions, 'now' | 'intervalMs'>> & { certificateDays?: number; crlHours?: number };

/** `server.metrics` when the `metrics` option is on. */
export interface ServerMetrics {
  /** The prom-client Registry holding certbound's metrics. */
  readonly registry: PromRegistry;
  /** The metrics listener's address once `listen()` has started it, else null. */
  address(): AddressInfo | null;
}

/** Validates createServer's options against SERVER_SCHEMA (src/server/options.ts): CB_ERR_INVALID_OPTION. */
const validateServerOptions = compileOptions(SERVER_SCHEMA, { RevocationChecker, Fleet: Fleet as unknown as OptionClass, Buffer: Buffer as unknown as OptionClass });

/** The decoration createServer (always) and the plugin (with its `ocsp` option) add to the app. */
export interface OcspStapleDecoration {
  /**
   * The staple state of a server certificate (SHA-256 hex of its DER; the first certificate
   * when omitted): stapled or not and why (docs/ocsp.md). State 'off' when stapling is off.
   */
  ocspStaple(fingerprint?: string): OcspStapleSummary;
}

export interface CertboundServer {
  /** The fastify app, with `ocspStaple()`. */
  readonly app: FastifyInstance & OcspStapleDecoration;
  /** The TLS server (node:https, or node:http2 with `http2: true`). */
  readonly server: HttpsServer;
  readonly queue: RequestQueue;
  readonly registry: ConnectionRegistry;
  readonly clientAuth: ClientAuthMode;
  /** The OCSP stapler when the `ocsp` option is on. */
  readonly ocsp: OcspStapler | undefined;
  /** The fleet connection when the `fleet` option is on (status(), counters()). */
  readonly fleet: Fleet | undefined;
  /** Metrics, when the `metrics` option is on. */
  readonly metrics: ServerMetrics | undefined;
  /** The expiry monitor (findings() for the current state), unless `expiryWarnings: false`. */
  readonly expiry: ExpiryMonitor | undefined;
  /** Starts listening (and the metrics listener first, if configured); resolves with the bound address. Fails with CB_ERR_LISTEN. */
  listen(options?: { host?: string; port?: number }): Promise<AddressInfo>;
  /** Stops accepting, ends idle keep-alive connections, waits for requests in flight. */
  close(): Promise<void>;
  /** Sets the 48-byte TLS session-ticket keys of every TLS listener (cluster workers share them: src/server/cluster.ts). */
  setTicketKeys(keys: Buffer): void;
  /**
   * Replaces the server certificate, key, client CAs and CRLs on every TLS listener (main and
   * TLS 1.2 twin) without a restart (docs/deployment.md#reload). Open connections carry on
   * with what they have; new ones get the new material; a later handshake on an old one (an
   * on-demand renegotiation) is judged against the new CAs and CRLs too. The OCSP stapler moves
   * to the new certificate first. Reloads run one at a time. Rejects with CB_ERR_RELOAD (the
   * cause's code in the message) when anything is wrong: then nothing changed.
   */
  reload(input: ReloadInput): Promise<ReloadResult>;
  /** Calls `listener` after every reload, done or refused (for metrics and expiry warnings); returns a function that removes it. */
  onReload(listener: (event: ReloadEvent) => void): () => void;
}

function asList(v: Pem | Pem[] | undefined): Pem[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * Throws CB_ERR_* when the certificate chain, the key (with `tls.passphrase`) or the CAs do
 * not parse, the key is not the certificate's, or Node cannot serve them. Node itself would
 * skip a CA block it cannot parse without a word.
 */
function checkTlsMaterial(cert: Pem, key: Pem, ca: Pem[], passphrase: string | undefined): void {
  const leaf = parseCertificates(cert.toString(), 'certificate', '(cert option)')[0] as X509Certificate;
  const k = parsePrivateKey(key, '(key option)', passphrase);
  if (!leaf.checkPrivateKey(k)) throw new CertboundError('CB_ERR_KEY_MISMATCH', ['(key option)', '(cert option)']);
  ca.forEach((pem, i) => parseCertificates(pem.toString(), 'CA', ca.length > 1 ? `(ca option, entry ${i})` : '(ca option)'));
  checkServable({ cert, key, ...(passphrase !== undefined ? { passphrase } : {}) }, 'cert and key options');
}

/** Every server certificate of the options (or of a reload), checked (cert + key first, then `certificates`). */
function serverCertificates(options: { cert?: Pem | undefined; key?: Pem | undefined; certificates?: ServerCertificateOptions[] | undefined }, passphrase: string | undefined, ca: Pem[]): ServerCertificate[] {
  const list: ServerCertificate[] = [];
  if (options.cert !== undefined && options.key !== undefined) {
    checkTlsMaterial(options.cert, options.key, ca, passphrase);
    list.push(checkServerCertificate({ cert: options.cert, key: options.key, ...(passphrase !== undefined ? { passphrase } : {}) }, 'cert and key options'));
  } else {
    ca.forEach((pem, i) => parseCertificates(pem.toString(), 'CA', ca.length > 1 ? `(ca option, entry ${i})` : '(ca option)'));
  }
  (options.certificates ?? []).forEach((c, i) => list.push(checkServerCertificate(c, `certificates[${i}]`)));
  return list;
}

function makeLogger(option: CreateServerOptions['logger']): Logger {
  if (option === false) return pino({ level: 'silent' });
  if (option && typeof (option as Logger).child === 'function' && typeof (option as Logger).info === 'function') return option as Logger;
  return pino({ level: DEFAULTS.logLevel, ...(option as LoggerOptions | undefined) });
}

/**
 * certbound's metrics on a new or the given registry. A registry that already holds them (a
 * second server on the same registry) or prom-client's default metrics (the application
 * collects them itself) is CB_ERR_INVALID_OPTION rather than prom-client's bare Error.
 */
function makePromMetrics(o: ServerMetricsOptions): PromMetrics {
  // A prom-client Registry, checked by shape (the schema says only "an object").
  const r = o.registry as { metrics?: unknown; registerMetric?: unknown; getMetricsAsJSON?: unknown } | undefined;
  if (r !== undefined && (typeof r.metrics !== 'function' || typeof r.registerMetric !== 'function' || typeof r.getMetricsAsJSON !== 'function')) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['metrics.registry', 'expected a prom-client Registry']);
  }
  try {
    return new PromMetrics({ ...(o.registry ? { registry: o.registry } : {}), ...(o.defaultMetrics !== undefined ? { defaultMetrics: o.defaultMetrics } : {}) });
  } catch (err) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['metrics.registry', `${(err as Error).message} (one registry per server; defaultMetrics: false when the application collects them)`], { cause: err });
  }
}

/** Builds a certbound HTTPS server. Add routes to `app`, then `listen()`. */
export function createServer(options: CreateServerOptions): CertboundServer {
  validateServerOptions(options, '');
  if ((options.cert === undefined || options.key === undefined) && !(options.certificates && options.certificates.length > 0)) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', [options.cert === undefined ? 'cert' : 'key', 'is required (or certificates)']);
  }
  if (options.upstream) checkFrontOptions(options.upstream);
  if (options.ocsp && options.stapleSource) throw new CertboundError('CB_ERR_INVALID_OPTION', ['stapleSource', 'cannot be combined with ocsp']);
  const clientAuth: ClientAuthMode = options.clientAuth ?? DEFAULTS.clientAuth;
  const logger = makeLogger(options.logger);
  // The fleet (docs/fleet.md): opened here unless the caller brings one; started in listen(), before the first staple.
  const ownFleet = options.fleet !== undefined && !(options.fleet instanceof Fleet);
  const fleet = options.fleet instanceof Fleet ? options.fleet : options.fleet ? createFleet({
    logger: logger.child({ component: 'fleet' }),
    ...options.fleet,
    tickets: options.fleet.tickets === false ? false : { ticketLifetimeSeconds: options.tls?.sessionTimeout ?? DEFAULTS.ticketLifetimeSeconds, ...(typeof options.fleet.tickets === 'object' ? options.fleet.tickets : {}) },
  }) : undefined;
  const ca = asList(options.ca);
  const certificates = serverCertificates(options, options.tls?.passphrase, ca);
  const crl = asList(options.crl).flatMap((pem, i, all) => crlsOf(pem, all.length > 1 ? `(crl option, entry ${i})` : '(crl option)'));
  if (clientAuth !== 'none' && clientAuth !== 'accept-untrusted' && ca.length === 0) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['ca', `client-auth ${clientAuth} needs the trusted client CAs`]);
  }
  if (options.trustedProxies !== undefined && options.trustedProxies.length > 0 && ca.length === 0) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['ca', 'trustedProxies needs the trusted client CAs that forwarded certificates are verified against']);
  }
  const mapper = compileMapper(options.mapper);
  // The client CAs OpenSSL verifies against (Node's bundled roots without `ca`): each
  // connection's chain is built from them, link by link with signatures.
  const anchors = anchorsFromPem(ca.length > 0 ? ca : rootCertificates);
  const revocation = options.revocation === undefined ? undefined
    : options.revocation instanceof RevocationChecker ? options.revocation : createRevocationChecker({ logger: logger.child({ component: 'revocation' }), ...(fleet ? { fleet } : {}), ...options.revocation });
  // Metrics: prom-client is loaded only when they are on; otherwise every hook is a no-op.
  const promMetrics = options.metrics ? makePromMetrics(options.metrics) : undefined;
  const metrics = promMetrics ?? NO_METRICS;
  // Until listen() has parsed the CRLs (below), a resumed session no cached verdict covers fails closed.
  const registry = new ConnectionRegistry({ mapper, revocation, logger, anchors, metrics, ...(crl.length > 0 ? { material: { anchors, crlCheck: true, crlsByIssuer: new Map() } } : {}) });
  const queue = new RequestQueue(registry);

  // One function builds the TLS material of every listener, at start and at each reload
  // (src/server/listeners.ts ListenerList): the same contexts from the same certificates.
  const handshakeTimeout = options.handshakeTimeout ?? DEFAULTS.handshakeTimeoutMs;
  const buildTls = (certs: readonly ServerCertificate[], caNow: Pem[], crlNow: string[], withPassphrase: boolean) => {
    // What every context shares (the SNI ones too: OpenSSL verifies client certificates with the
    // chosen context's CAs and CRLs).
    const sharedTls = {
      minVersion: DEFAULTS.minVersion,
      ...options.tls,
      // Renegotiation (on-demand certificates) must not resume, or OpenSSL clients never send a certificate.
      secureOptions: (options.tls?.secureOptions ?? 0) | cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
      // One session id context on every context of every listener (the listener's, the
      // certificate-less start context and the per-certificate SNI ones, at start and after a
      // reload; the same in every worker): OpenSSL refuses to resume a session on a context
      // whose id context is unset or different, with verify mode on as a fatal internal_error.
      // Node sets one only on the listener's own context.
      // A fleet's machines agree on it (fleetSessionIdContext), or no ticket resumes on another machine.
      sessionIdContext: options.tls?.sessionIdContext ?? (fleet ? fleetSessionIdContext(fleet.namespace, clientAuth) : `certbound/${clientAuth}`),
      ...(caNow.length > 0 ? { ca: caNow } : {}),
      ...(crlNow.length > 0 ? { crl: crlNow } : {}),
    };
    const material = buildServerMaterial(certs, sharedTls, (socket) => clientHelloOf(socket)?.cipherSuites);
    const { passphrase: _passphrase, ...sharedWithoutPassphrase } = sharedTls;
    const tls: HttpsServerOptions = {
      // The passphrase belongs to a certificate's key (material.defaultOptions carries its own).
      ...(withPassphrase ? sharedTls : sharedWithoutPassphrase),
      ...material.defaultOptions,
      // Node keeps the SNI callback a listener was built with: this one reads the material in force.
      ...(material.sniCallback ? { SNICallback: sniInForce } : {}),
      ...tlsOptionsForMode(clientAuth),
      handshakeTimeout,
      ...(options.http2 ? {} : { ALPNProtocols: ['http/1.1'] }),
    };
    const listenerTls: ListenerTls = { options: tls, certless: material.sniCallback ? sharedWithoutPassphrase : undefined, sniContexts: material.contexts };
    return { material, listenerTls };
  };
  function sniInForce(this: TLSSocket, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void {
    const sni = tlsNow.material.sniCallback;
    if (sni) sni.call(this, servername, cb);
    else cb(null, undefined);
  }
  let tlsNow = buildTls(certificates, ca, crl, options.cert !== undefined);
  const tlsOptions = tlsNow.listenerTls.options;
  let server!: HttpsServer;
  let handler!: (req: IncomingMessage, res: import('node:http').ServerResponse) => void;
  // In a cluster worker (an epoch in the connection ids, src/server/registry.ts) request ids
  // carry the epoch too: fastify's own count (req-1, req-2, …) starts again in every worker.
  const epoch = connectionIdPrefix();
  let requests = 0;
  const app = Fastify({
    ...(epoch > 0 ? { genReqId: () => `req-${epoch}-${(requests = (requests + 1) & 0x7fffffff).toString(36)}` } : {}),
    ...options.fastify,
    ...(options.http2 ? { http2: true as unknown as false } : {}),
    loggerInstance: logger as unknown as FastifyBaseLogger,
    serverFactory: (h) => {
      handler = h;
      server = makeTlsListener(() => (options.http2
        ? (createHttp2Server({ ...tlsOptions, allowHTTP1: true }, h as never) as unknown as HttpsServer)
        : createHttpsServer(tlsOptions, h)));
      return server;
    },
  });
  const stapling = options.ocsp
    ? createServerStapling({ certs: certificates.map((c) => c.chainPem), ca, options: { ...(fleet ? { fleet } : {}), ...(options.ocsp === true ? {} : options.ocsp) }, logger })
    : undefined;
  const staples: StapleSource | undefined = stapling ? { attachStaples: (l) => stapling.attach(l) } : options.stapleSource;
  /** Every TLS listener of this server goes through here (src/server/listeners.ts), with its own options. */
  const listeners = new ListenerList(tlsNow.listenerTls);
  const addListener = (l: HttpsServer, own: ListenerOwnOptions = {}) => listeners.add(l, own, { registry, staples, logger, metrics, helloTimeoutMs: handshakeTimeout, maxConnectionLifetimeMs: options.maxConnectionLifetime ?? DEFAULTS.maxConnectionLifetimeMs });
  addListener(server);
  // What the listeners serve now besides the certificates: a reload that leaves out `ca` or `crl` keeps these.
  let inForce: { ca: Pem[]; crl: string[] } = { ca, crl };
  const ocspStaple = (fingerprint?: string): OcspStapleSummary => stapling?.summary(fingerprint) ?? options.stapleSource?.summary?.(fingerprint) ?? OCSP_OFF_SUMMARY;
  app.decorate('ocspStaple', ocspStaple);
  let expiryList: ReturnType<typeof expiryItems> | undefined;
  const expiryOptions = options.expiryWarnings === false ? undefined : options.expiryWarnings ?? {};
  const expiry = expiryOptions && new ExpiryMonitor({
    items: () => (expiryList ??= expiryItems({ certs: tlsNow.material.certificates.map((c) => c.chainPem), ca: inForce.ca, crl: inForce.crl })),
    logger: logger.child({ component: 'expiry' }),
    thresholds: { ...(expiryOptions.certificateDays !== undefined ? { certificateDays: expiryOptions.certificateDays } : {}), ...(expiryOptions.crlHours !== undefined ? { crlHours: expiryOptions.crlHours } : {}) },
    ...(expiryOptions.now ? { now: expiryOptions.now } : {}),
    ...(expiryOptions.intervalMs ? { intervalMs: expiryOptions.intervalMs } : {}),
  });
  if (promMetrics) {
    promMetrics.watchConnections(() => registry.size);
    if (stapling) promMetrics.watchStapler(stapling.stapler);
    if (expiry) promMetrics.watchExpiry(() => expiry.findings());
    // Route-less labels only (method, status class): a label per URL would grow without bound.
    app.addHook('onResponse', (request, reply, done) => {
      promMetrics.request(request.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  }
  let metricsListener: MetricsListener | undefined;

  const onDemandHosts = options.onDemandHosts ?? [];
  if (onDemandHosts.length > 0) {
    // The TLS 1.2 twin: same certificates and handler, renegotiation possible.
    const own: ListenerOwnOptions = { maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] };
    const capped = makeTlsListener(() => createHttpsServer({ ...tlsOptions, ...own }, handler));
    addListener(capped, own);
    // WebSocket upgrades on the twin go to the main server's upgrade handling (the front's); none there: closed, as Node does.
    capped.on('upgrade', (req: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => {
      if (!server.emit('upgrade', req, socket, head)) socket.destroy();
    });
    const cappedSockets = new Set<TLSSocket>();
    capped.on('secureConnection', (s: TLSSocket) => {
      cappedSockets.add(s);
      s.once('close', () => cappedSockets.delete(s));
    });
    installHostRouting(server as unknown as TlsServer, capped, {
      decide: (hello) => (onDemandHosts.some((p) => hostMatches(p, hello.serverName)) ? 'capped' : 'main'),
      timeoutMs: tlsOptions.handshakeTimeout ?? DEFAULTS.handshakeTimeoutMs,
      onRefused: (reason, socket) => logger.info({ reason, remoteAddress: socket.remoteAddress }, 'connection refused before TLS'),
    });
    // The listening server counts these connections too: end them when it closes.
    app.addHook('preClose', async () => {
      for (const s of cappedSockets) {
        const busy = (s as unknown as { _httpMessage?: { once(e: string, f: () => void): void } | null })._httpMessage;
        if (busy) busy.once('finish', () => s.destroy());
        else s.destroy();
      }
    });
  }

  if (options.underPressure !== false) {
    app.register(underPressure, {
      maxEventLoopDelay: DEFAULTS.maxEventLoopDelayMs,
      retryAfter: DEFAULTS.retryAfterSeconds,
      exposeStatusRoute: '/healthz',
      ...options.underPressure,
    });
  }
  // Installed directly (not app.register): its hooks must exist before the caller adds routes.
  // Forwarded certificates (trustedProxies) are judged by the CAs and CRLs in force: these, then a reload's.
  let forwardedMaterial: Promise<TrustMaterial> | undefined;
  const forwardedInForce = () => registry.policy.reloaded?.material ?? (forwardedMaterial ??= trustMaterial(anchors, crl));
  installCertbound(app, { clientAuth, registry, queue, ...(options.trustedProxies !== undefined ? { trustedProxies: options.trustedProxies } : {}), ...(options.negotiationTimeout !== undefined ? { negotiationTimeout: options.negotiationTimeout } : {}), ...(options.rejectDeniedByMapper !== undefined ? { rejectDeniedByMapper: options.rejectDeniedByMapper } : {}), ...(options.channelBinding ? { channelBinding: options.channelBinding } : {}) }, { forwardedMaterial: forwardedInForce });
  if (options.referenceRoutes) app.register(referenceRoutes);
  // The front (src/server/front.ts, loaded only when configured): every other request goes upstream.
  if (options.upstream) app.register(import('./front.js'), { front: options.upstream, ...(options.fastify?.bodyLimit !== undefined ? { bodyLimit: options.fastify.bodyLimit } : {}) });

  // Readiness (GET /readyz, beside under-pressure's /healthz liveness): ready once listen()
  // has finished — which waits for the first staple (or its first retrieval attempt) — and
  // until close() starts; 503 before and after. The staple state is shown, not required:
  // a responder that is down must not take a server out of a load balancer.
  let ready = false;
  if (options.underPressure !== false) {
    app.get('/readyz', async (_request, reply) => {
      const ocsp = stapling?.summary() ?? options.stapleSource?.summary?.() ?? null;
      // A fleet whose Redis is away is reported, not a reason to leave the load balancer: the machine serves on its own state.
      // A cluster worker shows its primary's state, unless its own connection (its revocation data) is the one in trouble.
      const relayed = options.stapleSource?.fleetStatus?.();
      const own = fleet?.status();
      const f = relayed && own?.state === 'degraded' && relayed.state === 'connected' ? { ...relayed, state: own.state, since: own.since, reason: own.reason } : relayed ?? own ?? null;
      const body = { status: ready ? 'ready' : closing ? 'closing' : 'starting', ocsp: ocsp && { stapled: ocsp.stapled, certStatus: ocsp.certStatus, nextUpdate: ocsp.nextUpdate }, ...(f ? { fleet: { state: f.state, since: f.since, reason: f.reason, tickets: f.tickets } } : {}) };
      return reply.code(ready ? 200 : 503).send(body);
    });
  }
  let closing: Promise<void> | undefined;
  // Reloads run one at a time, in the order asked.
  let reloading: Promise<unknown> = Promise.resolve();
  const reloadListeners = new Set<(event: ReloadEvent) => void>();
  const announce = (event: ReloadEvent) => {
    if (reloadChannel.hasSubscribers) reloadChannel.publish(event);
    for (const l of reloadListeners) {
      try {
        l(event);
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'an onReload listener threw');
      }
    }
  };
  // Whether the certificates in force came with `cert` (the passphrase option goes to their context).
  let withPassphraseNow = options.cert !== undefined;
  // A CRL refresh reloads the CRLs alone: the certificates in force stay (keepCertificates).
  const reloadNow = async (input: ReloadInput, keepCertificates = false): Promise<ReloadResult> => {
    if (closing) throw reloadError(new Error('the server is closing'));
    // Every certificate through the start-up path (src/tls/server-material.ts), then the same
    // contexts built as at start: anything wrong and nothing below has changed.
    let next: CheckedMaterial;
    let built: ReturnType<typeof buildTls>;
    try {
      if (input === null || typeof input !== 'object') throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['reload()', 'needs { cert, key } or certificates']);
      if ((input.cert === undefined) !== (input.key === undefined)) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['reload()', 'cert and key go together']);
      if (input.certificates !== undefined && !Array.isArray(input.certificates)) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['reload()', 'certificates must be an array']);
      const caNext = input.ca !== undefined ? asList(input.ca) : inForce.ca;
      const certs = keepCertificates ? tlsNow.material.certificates : serverCertificates(input, options.tls?.passphrase, caNext);
      // A file reload never goes back to a CRL older than one the refresher fetched.
      const crlNext = input.crl === undefined ? inForce.crl : refresher && !keepCertificates ? refresher.preferNewer(asList(input.crl)) : input.crl;
      next = checkReloadMaterial(certs, { ca: caNext, crl: crlNext }, Date.now(), clientAuth);
      built = buildTls(next.certificates, next.ca, next.crl, keepCertificates ? withPassphraseNow : input.cert !== undefined);
    } catch (err) {
      throw reloadError(err);
    }
    const nextAnchors = anchorsFromPem(next.ca.length > 0 ? next.ca : rootCertificates);
    const trust = await trustMaterial(nextAnchors, next.crl).catch((err: unknown) => { throw reloadError(err); });
    const checker = registry.policy.revocation;
    const revocationCrls = input.revocationCrls !== undefined && refresher && !keepCertificates ? refresher.preferNewer(input.revocationCrls) : input.revocationCrls;
    if (revocationCrls !== undefined) {
      if (!(checker instanceof RevocationChecker)) throw reloadError(new CertboundError('CB_ERR_INVALID_OPTION', ['revocationCrls', 'the server has no revocation checker']));
      // Parsed before anything changes; put in place with the rest below.
      try {
        new RevocationChecker({ crls: revocationCrls });
      } catch (err) {
        throw reloadError(err);
      }
    }
    // The staples for the new certificates first (their first retrieval, as at start): an old
    // certificate's staple is never served for a new one, since staples are looked up by the
    // certificate each handshake serves.
    const old = { certs: tlsNow.material.certificates.map((c) => c.chainPem), ca: inForce.ca };
    await stapling?.moveTo(next.certificates.map((c) => c.chainPem), next.ca);
    try {
      listeners.swap(built.listenerTls);
    } catch (err) {
      await stapling?.moveTo(old.certs, old.ca);
      stapling?.retire();
      throw reloadError(err);
    }
    tlsNow = built;
    if (!keepCertificates) withPassphraseNow = input.cert !== undefined;
    inForce = { ca: next.ca, crl: next.crl };
    if (revocationCrls !== undefined) (checker as RevocationChecker).replaceCrls(revocationCrls);
    registry.replacePolicy({ anchors: nextAnchors, material: trust, reloaded: { material: trust, isCurrent: (socket) => listeners.isCurrent(socket) } });
    stapling?.retire();
    // Expiry warnings and gauges follow the new material.
    expiryList = undefined;
    if (ready) expiry?.check();
    const certificates = next.certificates.map(describeCertificate);
    const first = certificates[0] as ReloadedCertificate;
    const result: ReloadResult = Object.freeze({
      subject: first.subject,
      sha256: first.sha256,
      validTo: first.validTo,
      certificates: Object.freeze(certificates),
      listeners: listeners.size,
      caCertificates: next.ca.length > 0 ? nextAnchors.length : 0,
      crls: next.crl.length,
      reloadedAt: new Date().toISOString(),
    });
    logger.info({ event: 'reload', sha256: result.sha256, subject: result.subject, validTo: result.validTo, certificates: certificates.map((c) => c.sha256), listeners: result.listeners, caCertificates: result.caCertificates, crls: result.crls }, 'certificates reloaded');
    announce({ ok: true, result, certs: next.certificates.map((c) => c.chainPem), ca: next.ca, crl: next.crl });
    // The refresher schedules again from the CRLs now in force (a file reload may bring others).
    void refresher?.rescan();
    return result;
  };
  const reloadingNext = (input: ReloadInput, keepCertificates = false): Promise<ReloadResult> => reloading.then(() => reloadNow(input, keepCertificates)).catch((err: unknown) => {
    const error = logReloadFailure(logger, err);
    announce({ ok: false, error });
    throw error;
  });
  const crlRefreshOptions = options.crlRefresh === true ? {} : options.crlRefresh || undefined;
  const refresher = crlRefreshOptions && new CrlRefresher({
    crls: () => inForce.crl,
    ca: () => inForce.ca,
    // Through the reload path: every listener (main and TLS 1.2 twin), the registry's trust
    // state, the revocation checker's loaded CRLs (when it has any), the expiry warnings.
    apply: async (crl) => {
      const checker = registry.policy.revocation;
      const loaded = checker instanceof RevocationChecker ? checker.loadedCrlPems() : [];
      const run = reloadingNext({ crl, ...(loaded.length > 0 ? { revocationCrls: refresher?.preferNewer(loaded) ?? loaded } : {}) }, true);
      reloading = run.catch(() => {});
      await run;
    },
    logger: logger.child({ component: 'crl-refresh' }),
    ...(promMetrics ? { count: (outcome: string, reason: string) => promMetrics.crlRefresh(outcome, reason) } : {}),
  }, crlRefreshOptions);
  let fleetKeysInstalled = false;
  return {
    app: app as unknown as FastifyInstance & OcspStapleDecoration,
    server,
    fleet,
    queue,
    registry,
    clientAuth,
    ocsp: stapling?.stapler,
    metrics: promMetrics && { registry: promMetrics.registry, address: () => metricsListener?.address ?? null },
    expiry,
    async listen(opts = {}) {
      const host = opts.host ?? DEFAULTS.host;
      const port = opts.port ?? DEFAULTS.port;
      // Start-up: one line per certificate or CRL near or past its end (a CRL past nextUpdate
      // fails every client certificate it covers), then once a day.
      // Kept CRLs newer than the files first (before the expiry lines), then the refresh timers.
      await refresher?.start();
      // The CAs and CRLs a resumed session's chain is verified against when no cached verdict
      // covers its leaf (a ticket from another worker, or from before a restart).
      if (!registry.policy.reloaded) registry.replacePolicy({ material: await trustMaterial(anchors, inForce.crl) });
      expiry?.start();
      if (fleet) {
        // The fleet's ticket keys on every listener (a rotation, a rejoin: again), before the first handshake.
        if (!fleetKeysInstalled) {
          fleetKeysInstalled = true;
          fleet.on('keys', (keys) => listeners.setTicketKeys(keys));
        }
        if (ownFleet) await fleet.start();
        const keys = fleet.ticketKeys();
        if (keys) listeners.setTicketKeys(keys);
        promMetrics?.watchFleet(fleet);
      }
      await stapling?.start();
      if (promMetrics && options.metrics?.port !== undefined && !metricsListener) {
        const at = { host: options.metrics.host ?? DEFAULTS.metricsHost, port: options.metrics.port };
        metricsListener = await startMetricsListener(at, () => promMetrics.render(), logger);
        if (!isLoopbackHost(at.host)) logger.warn({ host: at.host, port: metricsListener.address.port }, 'metrics listener is plain HTTP and not on loopback: keep it on a private network');
      }
      try {
        // fastify names the scheme from its own `https` option, which the serverFactory bypasses.
        await app.listen({ host, port, listenTextResolver: (address) => `Server listening at ${address.replace(/^http:/, 'https:')}` });
      } catch (err) {
        await metricsListener?.close();
        metricsListener = undefined;
        const e = err as NodeJS.ErrnoException;
        throw new CertboundError('CB_ERR_LISTEN', [host, port, e.code === 'EADDRINUSE' ? 'the port is in use (EADDRINUSE)' : e.code ?? e.message], { cause: err });
      }
      ready = closing === undefined;
      return server.address() as AddressInfo;
    },
    setTicketKeys(keys) {
      listeners.setTicketKeys(keys);
    },
    reload(input) {
      const run = reloadingNext(input);
      reloading = run.catch(() => {});
      return run;
    },
    onReload(listener) {
      reloadListeners.add(listener);
      return () => { reloadListeners.delete(listener); };
    },
    close() {
      ready = false;
      closing ??= (async () => {
        queue.close();
        expiry?.stop();
        refresher?.stop();
        await app.close();
        await metricsListener?.close();
        await stapling?.close();
        if (ownFleet) await fleet?.close();
      })();
      return closing;
    },
  };
}
