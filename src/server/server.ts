// createServer: an HTTPS server on fastify 5 that owns its TLS server (serverFactory), a
// connection registry and a request queue, with under-pressure load shedding and pino logs.
import { constants as cryptoConstants, type X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSecureContext, rootCertificates, type SecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls';
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
import { clientHelloOf, type HelloRecordOptions } from '../tls/hello-record.js';
import { hostMatches, installHostRouting } from '../tls/host-policy.js';
import { installCertbound, type CertboundPluginOptions } from './plugin.js';
import { RequestQueue } from './receive.js';
import { ConnectionRegistry, connectionIdPrefix } from './registry.js';
import { installListener, type StapleSource } from './listeners.js';
import { createRevocationChecker, RevocationChecker } from '../ocsp/revocation.js';
import { compileOptions, SERVER_SCHEMA, type OptionClass } from './options.js';
import { NO_METRICS, PromMetrics, type PromRegistry } from './metrics.js';
import { isLoopback as isLoopbackHost, startMetricsListener, type MetricsListener } from './metrics-listener.js';
import { ExpiryMonitor, expiryItems, type ExpiryMonitorOptions } from './expiry.js';
import { referenceRoutes } from './routes.js';
import { createServerStapling, OCSP_OFF_SUMMARY, type OcspStapleSummary, type ServerOcspOptions } from '../ocsp/server-stapling.js';
import type { OcspStapler } from '../ocsp/stapler.js';
import type { ServerChannelBindingConfig } from '../cbt/server-bindings.js';

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
const validateServerOptions = compileOptions(SERVER_SCHEMA, { RevocationChecker, Buffer: Buffer as unknown as OptionClass });

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

/** Every server certificate of the options, checked (cert + key first, then `certificates`). */
function serverCertificates(options: CreateServerOptions, ca: Pem[]): ServerCertificate[] {
  const passphrase = options.tls?.passphrase;
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
  if (options.ocsp && options.stapleSource) throw new CertboundError('CB_ERR_INVALID_OPTION', ['stapleSource', 'cannot be combined with ocsp']);
  const clientAuth: ClientAuthMode = options.clientAuth ?? DEFAULTS.clientAuth;
  const ca = asList(options.ca);
  const certificates = serverCertificates(options, ca);
  const crl = asList(options.crl).flatMap((pem, i, all) => crlsOf(pem, all.length > 1 ? `(crl option, entry ${i})` : '(crl option)'));
  if (clientAuth !== 'none' && clientAuth !== 'accept-untrusted' && ca.length === 0) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['ca', `client-auth ${clientAuth} needs the trusted client CAs`]);
  }
  const logger = makeLogger(options.logger);
  const mapper = compileMapper(options.mapper);
  // The client CAs OpenSSL verifies against (Node's bundled roots without `ca`): each
  // connection's chain is built from them, link by link with signatures.
  const anchors = anchorsFromPem(ca.length > 0 ? ca : rootCertificates);
  const revocation = options.revocation === undefined ? undefined
    : options.revocation instanceof RevocationChecker ? options.revocation : createRevocationChecker({ logger: logger.child({ component: 'revocation' }), ...options.revocation });
  // Metrics: prom-client is loaded only when they are on; otherwise every hook is a no-op.
  const promMetrics = options.metrics ? makePromMetrics(options.metrics) : undefined;
  const metrics = promMetrics ?? NO_METRICS;
  const registry = new ConnectionRegistry({ mapper, revocation, logger, anchors, metrics });
  const queue = new RequestQueue(registry);

  // What every context shares (the SNI ones too: OpenSSL verifies client certificates with the
  // chosen context's CAs and CRLs).
  const sharedTls = {
    minVersion: DEFAULTS.minVersion,
    ...options.tls,
    // Renegotiation (on-demand certificates) must not resume, or OpenSSL clients never send a certificate.
    secureOptions: (options.tls?.secureOptions ?? 0) | cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
    ...(ca.length > 0 ? { ca } : {}),
    ...(crl.length > 0 ? { crl } : {}),
  };
  const material = buildServerMaterial(certificates, sharedTls, (socket) => clientHelloOf(socket)?.cipherSuites);
  const { passphrase: _passphrase, ...sharedWithoutPassphrase } = sharedTls;
  const tlsOptions: HttpsServerOptions = {
    // The passphrase belongs to a certificate's key (material.defaultOptions carries its own).
    ...(options.cert !== undefined ? sharedTls : sharedWithoutPassphrase),
    ...material.defaultOptions,
    ...(material.sniCallback ? { SNICallback: material.sniCallback } : {}),
    ...tlsOptionsForMode(clientAuth),
    handshakeTimeout: options.handshakeTimeout ?? DEFAULTS.handshakeTimeoutMs,
    ...(options.http2 ? {} : { ALPNProtocols: ['http/1.1'] }),
  };
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
    ? createServerStapling({ certs: certificates.map((c) => c.chainPem), ca, options: options.ocsp === true ? {} : options.ocsp, logger })
    : undefined;
  const staples: StapleSource | undefined = stapling ? { attachStaples: (l) => stapling.attach(l) } : options.stapleSource;
  const tlsListeners: TlsServer[] = [];
  /** Every TLS listener of this server goes through here (src/server/listeners.ts). */
  const certless: SecureContext[] = [];
  const addListener = (l: HttpsServer, own: { maxVersion?: 'TLSv1.2' } = {}) => {
    // Several certificates: connections naming a host start without one and get exactly the
    // one the SNI callback picks (for an RSA + ECDSA pair, from the client's cipher suites).
    let helloRecord: HelloRecordOptions | undefined;
    if (material.sniCallback) {
      const startWithout = makeTlsListener(() => createSecureContext({ ...sharedWithoutPassphrase, ...own }));
      certless.push(startWithout);
      helloRecord = { timeoutMs: tlsOptions.handshakeTimeout ?? DEFAULTS.handshakeTimeoutMs, startWithout };
    }
    installListener(l, { registry, staples, logger, metrics, ...(helloRecord ? { helloRecord } : {}) });
    tlsListeners.push(l as unknown as TlsServer);
  };
  addListener(server);
  const ocspStaple = (fingerprint?: string): OcspStapleSummary => stapling?.summary(fingerprint) ?? options.stapleSource?.summary?.(fingerprint) ?? OCSP_OFF_SUMMARY;
  app.decorate('ocspStaple', ocspStaple);
  let expiryList: ReturnType<typeof expiryItems> | undefined;
  const expiryOptions = options.expiryWarnings === false ? undefined : options.expiryWarnings ?? {};
  const expiry = expiryOptions && new ExpiryMonitor({
    items: () => (expiryList ??= expiryItems({ certs: material.certificates.map((c) => c.chainPem), ca, crl })),
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
    const capped = makeTlsListener(() => createHttpsServer({ ...tlsOptions, maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, handler));
    addListener(capped, { maxVersion: 'TLSv1.2' });
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
  installCertbound(app, { clientAuth, registry, queue, ...(options.negotiationTimeout !== undefined ? { negotiationTimeout: options.negotiationTimeout } : {}), ...(options.rejectDeniedByMapper !== undefined ? { rejectDeniedByMapper: options.rejectDeniedByMapper } : {}), ...(options.channelBinding ? { channelBinding: options.channelBinding } : {}) });
  if (options.referenceRoutes) app.register(referenceRoutes);

  // Readiness (GET /readyz, beside under-pressure's /healthz liveness): ready once listen()
  // has finished — which waits for the first staple (or its first retrieval attempt) — and
  // until close() starts; 503 before and after. The staple state is shown, not required:
  // a responder that is down must not take a server out of a load balancer.
  let ready = false;
  if (options.underPressure !== false) {
    app.get('/readyz', async (_request, reply) => {
      const ocsp = stapling?.summary() ?? options.stapleSource?.summary?.() ?? null;
      const body = { status: ready ? 'ready' : closing ? 'closing' : 'starting', ocsp: ocsp && { stapled: ocsp.stapled, certStatus: ocsp.certStatus, nextUpdate: ocsp.nextUpdate } };
      return reply.code(ready ? 200 : 503).send(body);
    });
  }
  let closing: Promise<void> | undefined;
  return {
    app: app as unknown as FastifyInstance & OcspStapleDecoration,
    server,
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
      expiry?.start();
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
      for (const l of tlsListeners) l.setTicketKeys(keys);
      // Connections naming a host start from a certificate-less context: its keys encrypt their tickets.
      for (const c of [...material.contexts, ...certless]) (c.context as { setTicketKeys(k: Buffer): void }).setTicketKeys(keys);
    },
    close() {
      ready = false;
      closing ??= (async () => {
        queue.close();
        expiry?.stop();
        await app.close();
        await metricsListener?.close();
        await stapling?.close();
      })();
      return closing;
    },
  };
}
