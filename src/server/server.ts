// createServer: an HTTPS server on fastify 5 that owns its TLS server (serverFactory), a
// connection registry and a request queue, with under-pressure load shedding and pino logs.
import { constants as cryptoConstants, type X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rootCertificates, type Server as TlsServer, type TLSSocket } from 'node:tls';
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
import { hostMatches, installHostRouting } from '../tls/host-policy.js';
import { installCertbound, type CertboundPluginOptions } from './plugin.js';
import { RequestQueue } from './receive.js';
import { ConnectionRegistry, connectionIdPrefix } from './registry.js';
import { ListenerList, type StapleSource } from './listeners.js';
import { checkReloadMaterial, logReloadFailure, reloadChannel, reloadError, type ReloadEvent, type ReloadInput, type ReloadResult } from './reload.js';
import { trustMaterial } from '../tls/trust-material.js';
import { createRevocationChecker, RevocationChecker } from '../ocsp/revocation.js';
import { compileOptions, SERVER_SCHEMA } from './options.js';
import { referenceRoutes } from './routes.js';
import { createServerStapling, type ServerOcspOptions } from '../ocsp/server-stapling.js';
import type { OcspStapler } from '../ocsp/stapler.js';
import type { ServerChannelBindingConfig } from '../cbt/server-bindings.js';

type Pem = string | Buffer;

export interface CreateServerOptions {
  /** Server certificate PEM, leaf first, optionally followed by its chain. */
  cert: Pem;
  /** Private key PEM of `cert`. */
  key: Pem;
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
}

/** Validates createServer's options against SERVER_SCHEMA (src/server/options.ts): CB_ERR_INVALID_OPTION. */
const validateServerOptions = compileOptions(SERVER_SCHEMA, { RevocationChecker });

export interface CertboundServer {
  readonly app: FastifyInstance;
  /** The TLS server (node:https, or node:http2 with `http2: true`). */
  readonly server: HttpsServer;
  readonly queue: RequestQueue;
  readonly registry: ConnectionRegistry;
  readonly clientAuth: ClientAuthMode;
  /** The OCSP stapler when the `ocsp` option is on. */
  readonly ocsp: OcspStapler | undefined;
  /** Starts listening; resolves with the bound address. Fails with CB_ERR_LISTEN. */
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

function makeLogger(option: CreateServerOptions['logger']): Logger {
  if (option === false) return pino({ level: 'silent' });
  if (option && typeof (option as Logger).child === 'function' && typeof (option as Logger).info === 'function') return option as Logger;
  return pino({ level: DEFAULTS.logLevel, ...(option as LoggerOptions | undefined) });
}

/** Builds a certbound HTTPS server. Add routes to `app`, then `listen()`. */
export function createServer(options: CreateServerOptions): CertboundServer {
  validateServerOptions(options, '');
  if (options.cert === undefined || options.key === undefined) throw new CertboundError('CB_ERR_INVALID_OPTION', [options.cert === undefined ? 'cert' : 'key', 'is required']);
  if (options.ocsp && options.stapleSource) throw new CertboundError('CB_ERR_INVALID_OPTION', ['stapleSource', 'cannot be combined with ocsp']);
  const clientAuth: ClientAuthMode = options.clientAuth ?? DEFAULTS.clientAuth;
  const ca = asList(options.ca);
  checkTlsMaterial(options.cert, options.key, ca, options.tls?.passphrase);
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
  const registry = new ConnectionRegistry({ mapper, revocation, logger, anchors });
  const queue = new RequestQueue(registry);

  const tlsOptions: HttpsServerOptions = {
    minVersion: DEFAULTS.minVersion,
    ...options.tls,
    // Renegotiation (on-demand certificates) must not resume, or OpenSSL clients never send a certificate.
    secureOptions: (options.tls?.secureOptions ?? 0) | cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
    cert: options.cert,
    key: options.key,
    ...(ca.length > 0 ? { ca } : {}),
    ...(crl.length > 0 ? { crl } : {}),
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
    ? createServerStapling({ cert: options.cert, ca, options: options.ocsp === true ? {} : options.ocsp, logger })
    : undefined;
  const staples: StapleSource | undefined = stapling ? { attachStaples: (l) => stapling.attach(l) } : options.stapleSource;
  /** Every TLS listener of this server goes through here (src/server/listeners.ts), with the options it was built with. */
  const listeners = new ListenerList();
  const addListener = (l: HttpsServer, built: HttpsServerOptions) => listeners.add(l, built, { registry, staples, logger });
  addListener(server, tlsOptions);
  app.decorate('ocspStaple', () => stapling?.summary() ?? null);

  const onDemandHosts = options.onDemandHosts ?? [];
  if (onDemandHosts.length > 0) {
    // The TLS 1.2 twin: same certificates and handler, renegotiation possible.
    const cappedOptions: HttpsServerOptions = { ...tlsOptions, maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] };
    const capped = makeTlsListener(() => createHttpsServer(cappedOptions, handler));
    addListener(capped, cappedOptions);
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
      const ocsp = stapling?.summary() ?? null;
      const body = { status: ready ? 'ready' : closing ? 'closing' : 'starting', ocsp: ocsp && { stapled: ocsp.stapled, certStatus: ocsp.certStatus, nextUpdate: ocsp.nextUpdate } };
      return reply.code(ready ? 200 : 503).send(body);
    });
  }
  let closing: Promise<void> | undefined;
  // Reloads run one at a time, in the order asked.
  let reloading: Promise<unknown> = Promise.resolve();
  // What the listeners serve now: a reload that leaves out `ca` or `crl` keeps these.
  let material: { cert: Pem; ca: Pem[]; crl: string[] } = { cert: options.cert, ca, crl };
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
  const reloadNow = async (input: ReloadInput): Promise<ReloadResult> => {
    if (closing) throw reloadError(new Error('the server is closing'));
    const next = checkReloadMaterial({ ...input, ca: input.ca ?? material.ca, crl: input.crl ?? material.crl }, options.tls?.passphrase, Date.now(), clientAuth);
    const nextAnchors = anchorsFromPem(next.ca.length > 0 ? next.ca : rootCertificates);
    const trust = await trustMaterial(nextAnchors, next.crl).catch((err: unknown) => { throw reloadError(err); });
    const checker = registry.policy.revocation;
    if (input.revocationCrls !== undefined) {
      if (!(checker instanceof RevocationChecker)) throw reloadError(new CertboundError('CB_ERR_INVALID_OPTION', ['revocationCrls', 'the server has no revocation checker']));
      // Parsed before anything changes; put in place with the rest below.
      new RevocationChecker({ crls: input.revocationCrls });
    }
    // The staple for the new certificate first (its first retrieval, as at start): the old
    // staple is never served for it, since staples are looked up by the certificate served.
    await stapling?.moveTo(next.cert, next.ca);
    const old = material;
    listeners.swapContexts(next);
    if (input.revocationCrls !== undefined) (checker as RevocationChecker).replaceCrls(input.revocationCrls);
    registry.replacePolicy({ anchors: nextAnchors, reloaded: { material: trust, isCurrent: (socket) => listeners.isCurrent(socket) } });
    material = { cert: next.cert, ca: next.ca, crl: next.crl };
    stapling?.retire(old.cert);
    const result: ReloadResult = Object.freeze({
      subject: next.leaf.subject.replace(/\n/g, ', '),
      sha256: next.leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
      validTo: new Date(next.leaf.validTo).toISOString(),
      listeners: listeners.size,
      caCertificates: next.ca.length > 0 ? nextAnchors.length : 0,
      crls: next.crl.length,
      reloadedAt: new Date().toISOString(),
    });
    logger.info({ event: 'reload', sha256: result.sha256, subject: result.subject, validTo: result.validTo, listeners: result.listeners, caCertificates: result.caCertificates, crls: result.crls }, 'certificates reloaded');
    announce({ ok: true, result, cert: next.cert, ca: next.ca, crl: next.crl });
    return result;
  };
  const reloadingNext = (input: ReloadInput): Promise<ReloadResult> => reloading.then(() => reloadNow(input)).catch((err: unknown) => {
    const error = logReloadFailure(logger, err);
    announce({ ok: false, error });
    throw error;
  });
  return {
    app,
    server,
    queue,
    registry,
    clientAuth,
    ocsp: stapling?.stapler,
    async listen(opts = {}) {
      const host = opts.host ?? DEFAULTS.host;
      const port = opts.port ?? DEFAULTS.port;
      await stapling?.start();
      try {
        // fastify names the scheme from its own `https` option, which the serverFactory bypasses.
        await app.listen({ host, port, listenTextResolver: (address) => `Server listening at ${address.replace(/^http:/, 'https:')}` });
      } catch (err) {
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
        await app.close();
        await stapling?.close();
      })();
      return closing;
    },
  };
}
