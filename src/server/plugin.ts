// The fastify side of certbound: decorates requests with the connection id and the client
// certificate, and enforces, for every request, the connection's one trust decision under the
// client-auth mode and the route's requirement (src/server/access.ts). createServer uses it too.
import { Fleet } from '../fleet/fleet.js';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { TLSSocket, type Server as TlsServer } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { constants as h2constants } from 'node:http2';
import { constants as cryptoConstants } from 'node:crypto';
import { DEFAULTS } from '../defaults.js';
import { CertboundError, type ErrorCode } from '../errors.js';
import type { ClientAuthMode } from '../tls/client-auth.js';
import { compileMapper, type CertificateMapperFn, type CompiledMapper, type MapperConfig } from '../tls/mapper.js';
import { serverAnchors } from '../tls/peer-chain.js';
import { negotiateCertificate, type NegotiationOptions, type NegotiationResult } from '../tls/renegotiate.js';
import { channelTokenProvider, type ServerChannelBindingConfig } from '../cbt/server-bindings.js';
import { decorateChannelBinding } from '../cbt/request-decorator.js';
import { createRevocationChecker, RevocationChecker, type RevocationOptions } from '../ocsp/revocation.js';
import { accessRefusal, ROUTE_REQUIREMENTS, type Refusal, type RouteRequirement } from './access.js';
import { routeChannelBindingRefusal, type RouteChannelBinding } from './channel-binding-route.js';
import type { ConnectionEntry, ConnectionRevocationCheck } from './connection.js';
import { negotiationWin32Override } from './negotiate.js';
import { expiredLifetime, limitConnectionLifetime } from './connection-lifetime.js';
import { compileOptions, is, PLUGIN_SCHEMA, validateOptions, type OptionClass } from './options.js';
import { RequestQueue } from './receive.js';
import { ConnectionRegistry, type ClientCertificate } from './registry.js';
import { orderRequests, ticketOf } from './request-order.js';
import { connectionBindings, connectionLoggerFactory } from './request-log.js';
import { markRefused, refusalError, restoreRefusalBody, type RefusalError } from './refusal.js';
import { createServerStapling, type OcspStapleSummary, type ServerOcspOptions } from '../ocsp/server-stapling.js';
import { ForwardedCertificates, forwardedStateOf, stripForwardedHeaders } from './forwarded.js';
import { ForwardedHeaderError } from './forwarded-headers.js';
import { compileTrustedProxies } from './trusted-proxies.js';
import { anchorsFromPem } from '../tls/peer-chain.js';
import { parseCertificates } from '../tls/pem.js';
import { trustMaterial, type TrustMaterial } from '../tls/trust-material.js';

/** The plugin's `ocsp` option: the server certificates to staple and the stapler's options. */
export interface PluginOcspOptions extends ServerOcspOptions {
  /** The server certificate PEM (leaf first, then its chain), or one per certificate the app's TLS server serves. */
  cert: string | Buffer | (string | Buffer)[];
  /** CAs where the issuer may be found (PEM). */
  ca?: string | Buffer | (string | Buffer)[];
}

/** Route option (`config.clientCertificate`): what a route needs of the client. */
export type RouteCertificateRequirement = Exclude<RouteRequirement, 'none'>;

export interface CertboundPluginOptions {
  /**
   * Revocation checks of client certificates (OCSP, then CRLs), HTTP.sys's modes: a checker or
   * its options (docs/ocsp.md). Run once per connection and certificate, after the handshake,
   * before the request's hooks go on; never on the handshake path. Part of the connection's
   * decision: give it to the registry instead when you pass `registry`. Default: off.
   */
  revocation?: RevocationChecker | RevocationOptions;
  /**
   * Channel bindings: the token receiveClientCertificate hands out for flags 0x1 (default
   * tls-server-end-point in application-data form) and when tls-exporter is offered on TLS 1.2.
   * See docs/channel-binding.md.
   */
  channelBinding?: ServerChannelBindingConfig;
  /** Time limit (ms) of an on-demand negotiation. Default: 10000. */
  negotiationTimeout?: number;
  /**
   * Maximum lifetime (ms) of a connection, after which the server ends it gracefully: HTTP/1.1
   * answers the request in flight with `Connection: close` (an idle connection closes), HTTP/2
   * gets GOAWAY. Lets trust changes (reload, revocation) reach long-lived clients. 0: none.
   * Default: 0.
   */
  maxConnectionLifetime?: number;
  /**
   * The client-auth mode the TLS server was built with; decides what is refused at request
   * level (docs/client-auth-modes.md). Default: 'optional', as createServer's (before 0.2 the
   * plugin's default was 'accept-untrusted').
   */
  clientAuth?: ClientAuthMode;
  /** Certificate mapper. Part of the connection's decision: give it to the registry instead when you pass `registry`. */
  mapper?: MapperConfig | CertificateMapperFn;
  /**
   * Refuse (403 CB_ERR_CLIENT_CERT_DENIED) requests whose certificate the mapper denied, in
   * `optional` and `require` modes. Routes marked `required`/`on-demand` always need an
   * authorized certificate. Default: true.
   */
  rejectDeniedByMapper?: boolean;
  /** Use an existing registry and queue (createServer passes its own). */
  registry?: ConnectionRegistry;
  queue?: RequestQueue;
  /**
   * Put connectionId and the client certificate's thumbprint on every log line of a request,
   * fastify's 'incoming request' and 'request completed' included: the plugin wraps the app's
   * child-logger factory (setChildLoggerFactory). Default: true.
   */
  logBindings?: boolean;
  /**
   * OCSP stapling on the app's TLS server (docs/ocsp.md): the plugin keeps a stapler for `cert`,
   * attached to `app.server`, whose first retrieval finishes before `ready()`; it adds
   * `app.ocspStaple()` (read it with `ocspStapleOf(app)`) and closes the stapler in onClose.
   * Default: off (no `app.ocspStaple`).
   */
  ocsp?: PluginOcspOptions;
  /**
   * Proxies whose RFC 9440 `Client-Cert` / `Client-Cert-Chain` headers are read (docs/front.md,
   * "Behind a front"): addresses or CIDRs (`10.0.0.0/8`, `::1`; IPv4-mapped peers match IPv4
   * entries), or the proxy's own mTLS identity on an authorized connection (`sha256:HEX`,
   * `sha1:HEX`, `identity:NAME`). certbound decides on the forwarded certificate itself, per
   * request, against `ca`, the mapper and revocation. From other peers the headers are removed
   * and logged. Default: none (the headers are removed from every request).
   */
  trustedProxies?: string[];
  /**
   * Fleet mode (docs/fleet.md): a Fleet (createFleet) shared with the other machines. The plugin
   * starts it (you close it), installs its session-ticket keys on the app's TLS server at every
   * rotation, and hands it to the revocation checker and the `ocsp` stapler it builds from
   * options. Build the TLS server with `sessionIdContext: fleetSessionIdContext(namespace, mode)`
   * so that tickets resume on every machine. Default: off.
   */
  fleet?: Fleet;
  /**
   * The trusted client CAs (PEM) that forwarded certificates (trustedProxies) are verified
   * against. Default: the `ca` of the app's TLS server; trustedProxies needs one or the other.
   */
  ca?: string | Buffer | (string | Buffer)[];
}

/** What createServer hands the plugin besides its options. */
export interface CertboundInternals {
  /** The CAs and CRLs in force for forwarded certificates (createServer's `ca`/`crl`, replaced by a reload). */
  forwardedMaterial?: () => TrustMaterial | Promise<TrustMaterial>;
}

/** Validates the plugin's options against PLUGIN_SCHEMA (src/server/options.ts): CB_ERR_INVALID_OPTION. */
const validatePluginOptions = compileOptions(PLUGIN_SCHEMA, { RevocationChecker, ConnectionRegistry, RequestQueue, Fleet: Fleet as unknown as OptionClass });

/** What `app.certbound` holds. */
export interface CertboundDecoration {
  readonly queue: RequestQueue;
  readonly registry: ConnectionRegistry;
  readonly clientAuth: ClientAuthMode;
}

/** The certificate answer of request.negotiateClientCertificate(): the negotiation and the connection's decision after it. */
export interface RequestNegotiationResult extends NegotiationResult {
  /** The client certificate with its final decision (after revocation), or null. */
  readonly certificate: ClientCertificate | null;
  /** True when the connection now has an authorized certificate. */
  readonly authorized: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * `required`: the request is refused (403) unless the connection has an authorized
     * certificate (verified, not revoked, not denied by the mapper). `on-demand`: a connection
     * without one is asked for it (TLS 1.2 renegotiation after the body is read), and then the
     * same rule applies; see docs/on-demand.md. Any other value stops start-up.
     */
    clientCertificate?: RouteCertificateRequirement;
    /**
     * The route needs a channel binding from the client that matches this connection under
     * an Extended Protection policy (403 CB_ERR_CHANNEL_BINDING otherwise). `true` uses the
     * defaults: the Channel-Binding header, Strict, tls-exporter or tls-unique.
     */
    channelBinding?: RouteChannelBinding | true;
  }
  interface FastifyInstance {
    certbound: CertboundDecoration;
  }
  interface FastifyRequest {
    /** The 64-bit id of the TLS connection this request came on (undefined on a non-TLS socket). */
    readonly connectionId: bigint | undefined;
    /** The registry entry of this request's connection. */
    readonly connection: ConnectionEntry | undefined;
    /** The client certificate of the connection with its decision (`authorized`, `reason`, certFlags, identity), or null. */
    clientCertificate(): ClientCertificate | null;
    /** Asks for a client certificate now (TLS 1.2 renegotiation); resolves when it is over and decided. */
    negotiateClientCertificate(options?: NegotiationOptions): Promise<RequestNegotiationResult>;
  }
}

/** The registry entry of a request's connection, registering the socket if needed. */
export function entryOfRequest(registry: ConnectionRegistry, request: FastifyRequest): ConnectionEntry | undefined {
  const socket = request.raw.socket;
  const entry = ConnectionRegistry.entryOf(socket);
  if (entry) return entry;
  return socket instanceof TLSSocket && socket.encrypted ? registry.add(socket) : undefined;
}

/**
 * Reads and discards what is left of a request body, up to `limit` bytes. Resolves true once
 * the body has ended, false when it is larger than `limit` (the rest is not read) or the
 * request is aborted.
 */
function drainBody(req: IncomingMessage, limit: number): Promise<boolean> {
  if (req.complete || req.readableEnded) return Promise.resolve(true);
  // A declared length over the limit is refused at once, without waiting for the bytes.
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(false);
  return new Promise((resolve) => {
    let seen = 0;
    const done = (ok: boolean) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      if (!ok) req.pause();
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limit) done(false);
    };
    const onEnd = () => done(true);
    const onClose = () => done(req.complete);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
    req.resume();
  });
}

/**
 * Ends the connection once the refusal's answer is out, whatever the error handler answered:
 * HTTP/1.1 says Connection: close and the socket is ended after the answer; HTTP/2 has no
 * Connection header: the session is closed once the stream's answer is out.
 */
function closeAfter(request: FastifyRequest, reply: FastifyReply): void {
  const session = (request.raw as unknown as { stream?: { session?: { close(): void } } }).stream?.session;
  if (session) {
    reply.raw.once('finish', () => session.close());
    return;
  }
  reply.header('connection', 'close');
  const socket = request.raw.socket;
  reply.raw.once('finish', () => socket.end());
}

/**
 * A refusal, handed to fastify's error handling: the caller passes it to `done` (callback
 * hooks) or throws it (async hooks), so that the route's handler never runs whatever an app's
 * error handler answers. The default answer is today's JSON body (src/server/refusal.ts).
 */
function refuse(request: FastifyRequest, reply: FastifyReply, code: ErrorCode, args: readonly (string | number)[] = [], extra: Readonly<Record<string, unknown>> = {}, close = false): RefusalError {
  const err = refusalError(code, args, extra);
  if (close) closeAfter(request, reply);
  markRefused(reply, err);
  return err;
}

/**
 * Marks a route whose certbound options the plugin installed (see the onRequest guard), with
 * the requirement it computed then and the option values it was computed from: a config
 * changed since (the same object, read per request) is judged again, never by the stale value.
 */
const kGuarded = Symbol('certbound.guarded');
interface RoutePlan { readonly requirement: RouteRequirement; readonly clientCertificate: unknown; readonly channelBinding: unknown }
interface RouteConfig { clientCertificate?: unknown; channelBinding?: unknown; [kGuarded]?: RoutePlan }

/**
 * fastify's route context symbol on a request (Symbol('fastify.context'), found by name once):
 * its `config` is what `request.routeOptions.config` returns, without the getter building a
 * new 13-field routeOptions object per request. Null when a fastify version lacks it.
 */
let kRouteContext: symbol | null | undefined;
function routeConfigOf(request: FastifyRequest): RouteConfig {
  if (kRouteContext === undefined) kRouteContext = Object.getOwnPropertySymbols(request).find((k) => k.description === 'fastify.context') ?? null;
  const context = kRouteContext === null ? undefined : (request as unknown as Record<symbol, { config?: RouteConfig } | undefined>)[kRouteContext];
  return context?.config ?? (request.routeOptions.config as RouteConfig);
}

/** The route's requirement, or undefined when its option value is not a known one. */
function requirementOf(config: RouteConfig): RouteRequirement | undefined {
  const v = config.clientCertificate;
  if (v === undefined) return 'none';
  return (ROUTE_REQUIREMENTS as readonly unknown[]).includes(v) ? (v as RouteRequirement) : undefined;
}

/** Throws CB_ERR_INVALID_OPTION for route options certbound does not know how to honour. */
function checkRouteConfig(config: RouteConfig, url: string): void {
  if (requirementOf(config) === undefined) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', [`config.clientCertificate of route ${url}`, `${JSON.stringify(config.clientCertificate)} is not one of ${ROUTE_REQUIREMENTS.join(', ')}`]);
  }
  const cb = config.channelBinding;
  if (cb !== undefined && cb !== true && (typeof cb !== 'object' || cb === null || Array.isArray(cb))) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', [`config.channelBinding of route ${url}`, 'expected true or { policy, extract }']);
  }
  if (typeof cb === 'object' && cb !== null) validateOptions({ policy: is.object, extract: is.function }, cb, `config.channelBinding of route ${url}`);
}

/**
 * The plugin's own registry, for an app server it did not build: its anchors are the server's
 * `ca`. A resumed session no cached verdict covers is verified against the server's CRLs too
 * (src/tls/session-chains.ts): until they are parsed (a moment after start) such a session fails
 * closed (UNABLE_TO_GET_CRL).
 */
function ownRegistry(app: FastifyInstance, mapper: CompiledMapper, revocation: ConnectionRevocationCheck | undefined): ConnectionRegistry {
  const anchors = serverAnchors(app.server);
  const crl = (app.server as { crl?: string | Buffer | Array<string | Buffer> } | undefined)?.crl;
  const crls = crl === undefined ? [] : Array.isArray(crl) ? crl : [crl];
  const registry = new ConnectionRegistry({ mapper, revocation, anchors, logger: app.log, material: { anchors, crlCheck: crls.length > 0, crlsByIssuer: new Map() } });
  if (crls.length > 0) {
    trustMaterial(anchors, crls).then((material) => registry.replacePolicy({ material }), (err: unknown) => {
      app.log.warn({ err: { message: (err as Error).message } }, 'the server\'s CRLs could not be read: resumed sessions that need them fail closed');
    });
  }
  return registry;
}

/**
 * The plugin's body. Synchronous: createServer runs it directly on its root instance, so that
 * its hooks (route options included, added through onRoute) are in place before the caller's
 * first route. Plugin users register certbound before the routes that use its options; a route
 * with certbound options that it did not see is refused, never served unchecked.
 */
export function installCertbound(app: FastifyInstance, options: CertboundPluginOptions, internals: CertboundInternals = {}): void {
  validatePluginOptions(options, 'certbound');
  // Its guard must see every route of the app: hooks added to an encapsulated child never
  // reach its siblings or parents, whose routes would then be served unchecked. A child
  // instance is an Object.create() of its parent (fastify's override); the root is not.
  if (Object.getPrototypeOf(app) !== Object.prototype) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['certbound', 'register the plugin on the root fastify instance (not inside another plugin\'s encapsulated context), so that it guards every route']);
  }
  if (options.registry && (options.mapper !== undefined || options.revocation !== undefined)) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', [options.mapper !== undefined ? 'mapper' : 'revocation', 'belongs to the registry when `registry` is given (new ConnectionRegistry({ mapper, revocation }))']);
  }
  const clientAuth: ClientAuthMode = options.clientAuth ?? DEFAULTS.clientAuth;
  const revocation = options.revocation === undefined ? undefined
    : options.revocation instanceof RevocationChecker ? options.revocation : createRevocationChecker({ logger: app.log.child({ component: 'revocation' }), ...(options.fleet ? { fleet: options.fleet } : {}), ...options.revocation });
  const registry = options.registry ?? ownRegistry(app, compileMapper(options.mapper), revocation);
  const queue = options.queue ?? new RequestQueue(registry);
  const logBindings = options.logBindings ?? true;
  const rejectDeniedByMapper = options.rejectDeniedByMapper ?? true;
  const negotiationOptions: NegotiationOptions = options.negotiationTimeout !== undefined ? { timeoutMs: options.negotiationTimeout } : {};
  // Behind a front (docs/front.md): RFC 9440 headers read from trusted proxies only; from every
  // other peer (all of them without trustedProxies) they are removed and logged, never read.
  const proxyLog = app.log.child({ component: 'trusted-proxies' });
  const forwarded = forwardedReader(app, options, registry, internals, proxyLog);
  const strippedOn = new WeakSet<object>();
  // A fastify app built on a TLS server: register its connections and order their requests.
  // createServer does the same for each of its listeners (src/server/listeners.ts).
  if (app.server && 'addContext' in app.server) {
    registry.attach(app.server as unknown as TlsServer);
    orderRequests(app.server, (s) => ConnectionRegistry.entryOf(s));
    limitConnectionLifetime(app.server as unknown as HttpsServer, options.maxConnectionLifetime ?? DEFAULTS.maxConnectionLifetimeMs);
  }

  app.decorate('certbound', Object.freeze({ queue, registry, clientAuth }));
  // Routes declared after the plugin get request loggers with the connection's bindings from
  // the start; the others (routes declared before it, fastify's default 404 handler) get them
  // in the onRequest check below, after fastify's 'incoming request' line.
  const boundLoggers = new WeakSet<object>();
  if (logBindings) app.setChildLoggerFactory(connectionLoggerFactory(registry, app.childLoggerFactory, boundLoggers));
  // Connection ids are bigints: a route that returns one (or a bigint anywhere) answers it as a
  // decimal string instead of failing serialisation. JSON.stringify is tried first, so other
  // replies pay nothing; routes with a response schema use their own serialiser. An app that
  // set its own reply serialiser keeps it (fastify's kReplySerializerDefault, read by name).
  const ownSerializer = Object.getOwnPropertySymbols(app).find((k) => k.description === 'fastify.replySerializerDefault');
  if (!ownSerializer || (app as unknown as Record<symbol, unknown>)[ownSerializer] == null) app.setReplySerializer((payload) => {
    try {
      return JSON.stringify(payload);
    } catch (err) {
      if (!(err instanceof TypeError) || !/BigInt/i.test(err.message)) throw err;
      return JSON.stringify(payload, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
    }
  });
  app.decorateRequest('connection', {
    getter(this: FastifyRequest) {
      return entryOfRequest(registry, this);
    },
  });
  app.decorateRequest('connectionId', {
    getter(this: FastifyRequest) {
      return entryOfRequest(registry, this)?.id;
    },
  });
  app.decorateRequest('clientCertificate', function (this: FastifyRequest) {
    const entry = entryOfRequest(registry, this);
    // Behind a trusted proxy, the certificate is the one it forwarded for this request, never the proxy's own.
    const view = forwarded?.viewOf(this, entry);
    if (view !== undefined) return view;
    return entry?.clientCertificate() ?? null;
  });

  const negotiate = (entry: ConnectionEntry, opts: NegotiationOptions = negotiationOptions) => negotiateCertificate(entry, opts);
  // receiveClientCertificate's overlapped form negotiates through this; it then reads the decision.
  queue.negotiator ??= async (entry) => negotiationWin32Override((await negotiate(entry)).status);
  // receiveClientCertificate with HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, and request.channelBinding(type).
  queue.channelTokenProvider ??= channelTokenProvider(options.channelBinding);
  decorateChannelBinding(app, options.channelBinding);
  app.decorateRequest('negotiateClientCertificate', async function (this: FastifyRequest, opts?: NegotiationOptions): Promise<RequestNegotiationResult> {
    const entry = entryOfRequest(registry, this);
    const view = forwarded?.viewOf(this, entry);
    // The client is behind the proxy: only the proxy can ask it for a certificate.
    if (view !== undefined) return Object.freeze({ status: 'error' as const, durationMs: 0, detail: 'forwarded by a trusted proxy: certbound cannot renegotiate with the client behind it', certificate: view, authorized: view?.authorized ?? false });
    if (!entry) return Object.freeze({ status: 'closed' as const, durationMs: 0, detail: 'not a TLS connection', certificate: null, authorized: false });
    if (!this.raw.complete) throw new CertboundError('CB_ERR_NEGOTIATE_BODY');
    const result = await negotiate(entry, opts ?? negotiationOptions);
    const certificate = await entry.settle();
    return Object.freeze({ ...result, certificate, authorized: certificate?.authorized ?? false });
  });

  const send = (request: FastifyRequest, reply: FastifyReply, r: Refusal): RefusalError => {
    request.log.info({ refused: r.code, ...r.extra }, 'refused: client certificate');
    return refuse(request, reply, r.code, r.args, r.extra, r.close);
  };

  /**
   * The per-request check against the final decision: the refusal, or null to go on.
   * Before an on-demand route's negotiation, a connection without a certificate passes (the
   * preHandler asks for one).
   */
  const checkRequest = (request: FastifyRequest, reply: FastifyReply, entry: ConnectionEntry, requirement: RouteRequirement, decide = true): RefusalError | null => {
    if (!entry.identityIntact()) {
      request.log.warn('client certificate changed outside a server handshake: connection closed');
      entry.socket.destroy();
      return refuse(request, reply, 'CB_ERR_IDENTITY_CHANGED');
    }
    if (!decide) return null;
    const cert = entry.clientCertificate();
    // The reply's log too, so that fastify's own "request completed" line carries them.
    if (logBindings && request.log.level !== 'silent' && !boundLoggers.has(request.log)) reply.log = request.log = request.log.child(connectionBindings(entry));
    if (requirement === 'on-demand' && !cert) return null;
    const r = accessRefusal({ mode: clientAuth, requirement, tls: true, decision: cert, rejectDeniedByMapper });
    return r ? send(request, reply, r) : null;
  };

  // A request pipelined behind a possible negotiation waits for it, so that it sees the
  // identity the connection has once the negotiation is over, never a half-made one; a
  // revocation check in flight is awaited too. Only these cases leave the synchronous path.
  const slowCheck = async (request: FastifyRequest, reply: FastifyReply, entry: ConnectionEntry, requirement: RouteRequirement): Promise<RefusalError | null> => {
    const ticket = ticketOf(request.raw);
    if (ticket) {
      await entry.order.waitForEarlier(ticket.seq);
      if (requirement !== 'on-demand' || entry.hasCertificate()) ticket.release();
      else request.raw.once('close', ticket.release);
    }
    if (entry.negotiation) await entry.negotiation;
    await entry.settle();
    // The connection may have reached its lifetime while this request waited.
    const lifetime = expiredLifetime(request.raw.socket);
    if (lifetime !== undefined) return refuse(request, reply, 'CB_ERR_CONNECTION_EXPIRED', [lifetime], {}, true);
    return checkRequest(request, reply, entry, requirement);
  };

  app.addHook('onRequest', (request, reply, done) => {
    // A request on an HTTP/1.1 connection past its maxConnectionLifetime (pipelined behind a
    // response still being sent at the deadline) reaches no handler: the connection's decision
    // is not renewed for it (src/server/connection-lifetime.ts).
    const lifetime = expiredLifetime(request.raw.socket);
    if (lifetime !== undefined) {
      ticketOf(request.raw)?.release();
      done(refuse(request, reply, 'CB_ERR_CONNECTION_EXPIRED', [lifetime], {}, true));
      return;
    }
    const config = routeConfigOf(request);
    const plan = config[kGuarded];
    const planned = plan !== undefined && plan.clientCertificate === config.clientCertificate && plan.channelBinding === config.channelBinding;
    const requirement = planned ? plan.requirement : requirementOf(config);
    // Routes declared before the plugin, or with a value it does not know, never reached
    // onRoute: refused rather than served without the check they ask for.
    if (requirement === undefined || (!planned && (requirement !== 'none' || config.channelBinding !== undefined))) {
      request.log.error({ url: request.routeOptions.url }, 'route with certbound options that certbound did not install: refused');
      ticketOf(request.raw)?.release();
      done(refuse(request, reply, 'CB_ERR_ROUTE_UNGUARDED', [`${request.method} ${request.routeOptions.url ?? request.url}`]));
      return;
    }
    const entry = entryOfRequest(registry, request);
    if (forwarded) {
      const peer = forwarded.peerNow(request.raw, entry);
      if (peer === false) forwarded.ignore(request);
      else {
        forwardedCheck(request, reply, entry, requirement).then((err) => done(err ?? undefined), done);
        return;
      }
    } else {
      stripForwardedHeaders(request.raw, proxyLog, strippedOn);
    }
    connectionCheck(request, reply, entry, requirement, done);
  });

  /** The check of a request that did not come through a trusted proxy: the connection's decision. */
  function connectionCheck(request: FastifyRequest, reply: FastifyReply, entry: ConnectionEntry | undefined, requirement: RouteRequirement, done: (err?: Error) => void): void {
    if (!entry) {
      const r = accessRefusal({ mode: clientAuth, requirement, tls: false, decision: null, rejectDeniedByMapper });
      done(r ? send(request, reply, r) : undefined);
      return;
    }
    // A refusal goes to done: fastify answers it through the error handler and never runs the route.
    if (ticketOf(request.raw) || entry.negotiation || !entry.decided) {
      slowCheck(request, reply, entry, requirement).then((err) => done(err ?? undefined), done);
      return;
    }
    done(checkRequest(request, reply, entry, requirement) ?? undefined);
  }

  /**
   * A request whose peer is, or may be (an identity entry waits for the connection's decision), a
   * trusted proxy: the decision is the forwarded certificate's, for this request. The proxy's own
   * connection is still guarded (a handshake it did not run closes it). Never renegotiates: the
   * client is behind the proxy, so an on-demand route needs the forwarded certificate already.
   * A refusal never closes the proxy's pooled connection.
   */
  const forwardedCheck = async (request: FastifyRequest, reply: FastifyReply, entry: ConnectionEntry | undefined, requirement: RouteRequirement): Promise<RefusalError | null> => {
    const reader = forwarded as ForwardedCertificates;
    if (!(await reader.peer(request.raw, entry))) {
      reader.ignore(request);
      return new Promise((resolve, reject) => connectionCheck(request, reply, entry, requirement, (err) => (err === undefined ? resolve(null) : err instanceof Error && 'body' in err ? resolve(err as RefusalError) : reject(err))));
    }
    if (entry) {
      const ticket = ticketOf(request.raw);
      if (ticket) {
        await entry.order.waitForEarlier(ticket.seq);
        ticket.release();
      }
      if (entry.negotiation) await entry.negotiation;
      const changed = checkRequest(request, reply, entry, 'none', false);
      if (changed) return changed;
    }
    let view: ClientCertificate | null;
    try {
      view = await reader.accept(request);
    } catch (err) {
      if (!(err instanceof ForwardedHeaderError)) throw err;
      request.log.info({ refused: err.code, header: err.header, reason: err.reason }, 'refused: forwarded client certificate header');
      return refuse(request, reply, err.code, [err.header, err.message], { header: err.header, reason: err.reason });
    }
    if (view && logBindings && request.log.level !== 'silent') reply.log = request.log = request.log.child({ forwardedThumbprint: view.sha1 });
    const r = accessRefusal({ mode: clientAuth, requirement, tls: true, decision: view, rejectDeniedByMapper });
    return r ? send(request, reply, { ...r, close: false }) : null;
  };
  app.addHook('onSend', restoreRefusalBody);

  /**
   * Route onRequest for `clientCertificate: 'on-demand'` on HTTP/2, which forbids
   * renegotiation (RFC 7540 9.2.1; Node aborts if asked): the stream is reset with
   * HTTP_1_1_REQUIRED so that the client retries over HTTP/1.1.
   */
  const onDemandOverH2 = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const entry = entryOfRequest(registry, request);
    if (!entry || forwardedStateOf(request) || entry.hasCertificate() || entry.handshake.alpnProtocol !== 'h2') return done();
    request.log.info('on-demand certificate on HTTP/2: stream reset with HTTP_1_1_REQUIRED');
    const stream = (request.raw as unknown as { stream?: { close(code: number): void } }).stream;
    stream?.close(h2constants.NGHTTP2_HTTP_1_1_REQUIRED);
    reply.hijack();
  };

  // On-demand routes negotiate after the body has been read (preHandler), so a client
  // sending a body is never stuck between the body and the handshake (ASP.NET's lesson).
  const negotiateOnDemand = async (request: FastifyRequest, reply: FastifyReply) => {
    // From a trusted proxy: decided in onRequest on the forwarded certificate, never renegotiated.
    if (forwardedStateOf(request)) return;
    const entry = entryOfRequest(registry, request);
    if (!entry) throw refuse(request, reply, 'CB_ERR_TLS_REQUIRED');
    if (!entry.hasCertificate()) {
      let result: NegotiationResult;
      try {
        // A body fastify did not read (a GET with a body, say) would sit between the client and
        // the handshake: read it first, whatever the method, within the route's bodyLimit.
        const limit = request.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? DEFAULTS.bodyLimitBytes;
        // The body left unread stays on the connection: it closes after the answer.
        if (!(await drainBody(request.raw, limit))) throw refuse(request, reply, 'CB_ERR_BODY_TOO_LARGE', [limit], {}, true);
        result = await negotiate(entry);
      } finally {
        ticketOf(request.raw)?.release();
      }
      request.log.info({ negotiation: result.status, durationMs: result.durationMs, detail: result.detail }, 'on-demand client certificate');
      switch (result.status) {
        case 'certificate':
        case 'no-certificate':
          break;
        case 'tls13':
          throw refuse(request, reply, 'CB_ERR_NEGOTIATE_TLS13');
        case 'limit':
          throw refuse(request, reply, 'CB_ERR_NEGOTIATE_LIMIT');
        case 'http2':
          throw refuse(request, reply, 'CB_ERR_CLIENT_CERT_REQUIRED');
        default:
          // timeout, closed, error: the connection is gone; nothing can be answered.
          return reply.hijack();
      }
    }
    ticketOf(request.raw)?.release();
    // Whoever negotiated (this route, or another API on the connection while this request's
    // body was arriving), the handler runs only on the final decision read here.
    const changed = checkRequest(request, reply, entry, 'none', false);
    if (changed) throw changed;
    const cert = await entry.settle();
    // No child logger when the level drops every line (as for the connection's bindings above).
    if (cert && request.log.level !== 'silent') reply.log = request.log = request.log.child({ thumbprint: cert.sha1 });
    const r = accessRefusal({ mode: clientAuth, requirement: 'on-demand', tls: true, decision: cert, rejectDeniedByMapper });
    if (r) throw send(request, reply, r);
  };

  // Routes that need a channel binding: checked after the body (and any negotiation), before the handler.
  const checkChannelBindingOption = async (request: FastifyRequest, reply: FastifyReply) => {
    const option = request.routeOptions.config.channelBinding;
    if (!option) throw refuse(request, reply, 'CB_ERR_ROUTE_UNGUARDED', [`${request.method} ${request.url}`]);
    const refusal = routeChannelBindingRefusal(request, option);
    if (!refusal) return;
    request.log.info({ reason: refusal.reason }, 'refused: channel binding');
    throw refuse(request, reply, 'CB_ERR_CHANNEL_BINDING', [refusal.reason, refusal.message], { reason: refusal.reason });
  };

  // Without SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION, OpenSSL-based clients (s_client,
  // python, Node) resume the session in the renegotiation and never send a certificate
  // (NODE-TLS-NOTES.md). createServer sets it; an app's own server may not: say so once.
  let warnedResumption = false;
  const warnResumption = () => {
    const secureOptions = (app.server as unknown as { secureOptions?: number } | undefined)?.secureOptions;
    if (warnedResumption || app.server === undefined || !('addContext' in app.server)) return;
    if (((secureOptions ?? 0) & cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION) !== 0) return;
    warnedResumption = true;
    app.log.warn('on-demand routes: the server lacks secureOptions SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION; OpenSSL-based clients will resume instead of sending a certificate (docs/on-demand.md)');
  };

  // Route options become hooks of those routes only: other routes pay nothing for them.
  const asList = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  app.addHook('onRoute', (route) => {
    // A copy (fastify copies it anyway): the app's own object may be frozen.
    const config = { ...(route.config ?? {}) } as RouteConfig;
    checkRouteConfig(config, `${String(route.method)} ${route.url}`);
    if (config.clientCertificate === 'on-demand') {
      warnResumption();
      route.onRequest = [...asList(route.onRequest), onDemandOverH2] as typeof route.onRequest;
      route.preHandler = [...asList(route.preHandler), negotiateOnDemand] as typeof route.preHandler;
    }
    if (config.channelBinding) route.preHandler = [...asList(route.preHandler), checkChannelBindingOption] as typeof route.preHandler;
    // Every route the plugin saw carries its plan, so that the per-request check reads it
    // instead of working it out again (fastify copies the config, symbols included).
    config[kGuarded] = Object.freeze({ requirement: requirementOf(config) as RouteRequirement, clientCertificate: config.clientCertificate, channelBinding: config.channelBinding });
    route.config = config as typeof route.config;
  });
}

async function certbound(app: FastifyInstance, options: CertboundPluginOptions): Promise<void> {
  // The whole options object first (ocsp included; an array or a string is refused here).
  validatePluginOptions(options, 'certbound');
  const { ocsp, ...rest } = options ?? {};
  installCertbound(app, rest);
  const fleet = options?.fleet;
  if (fleet) {
    await fleet.start();
    // The fleet's ticket keys on the app's TLS server, now and at every rotation or rejoin.
    const tls = app.server as unknown as Partial<Pick<TlsServer, 'setTicketKeys'>>;
    if (typeof tls.setTicketKeys === 'function') {
      const install = (keys: Buffer) => tls.setTicketKeys?.(keys);
      const keys = fleet.ticketKeys();
      if (keys) install(keys);
      fleet.on('keys', install);
      app.addHook('onClose', async () => { fleet.off('keys', install); });
    }
  }
  if (ocsp === undefined) return;
  if (!app.server || !('addContext' in app.server)) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['certbound.ocsp', 'needs a fastify app built on a TLS server (fastify({ https: { cert, key } }))']);
  }
  const { cert, ca, ...staplerOptions } = ocsp;
  const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const stapling = createServerStapling({ certs: list(cert), ca: list(ca), options: { ...(fleet ? { fleet } : {}), ...staplerOptions }, logger: app.log as unknown as import('pino').Logger });
  stapling.attach(app.server as unknown as TlsServer);
  app.addHook('onClose', async () => { await stapling.close(); });
  await stapling.start();
  app.decorate('ocspStaple', (fingerprint?: string): OcspStapleSummary => stapling.summary(fingerprint));
}

/**
 * `app.ocspStaple` where it exists (createServer's app, or an app with the plugin's `ocsp`
 * option), else undefined: fastify's types cannot follow a decoration through `register`.
 */
export function ocspStapleOf(app: FastifyInstance): ((fingerprint?: string) => OcspStapleSummary) | undefined {
  const f = (app as { ocspStaple?: unknown }).ocspStaple;
  return typeof f === 'function' ? (f as (fingerprint?: string) => OcspStapleSummary).bind(app) : undefined;
}

/** The certbound fastify plugin (fastify-plugin: decorations are visible to the whole app). */
export const certboundPlugin = fp(certbound, { name: 'certbound', fastify: '5.x' });
export default certboundPlugin;

/**
 * The plugin's reader of forwarded certificates, or undefined without `trustedProxies`. Its CAs:
 * createServer's material (with its CRLs, replaced by a reload), else the plugin's `ca`, else the
 * app's TLS server's `ca`; none of them is CB_ERR_INVALID_OPTION (no CAs: nothing could verify).
 */
function forwardedReader(app: FastifyInstance, options: CertboundPluginOptions, registry: ConnectionRegistry, internals: CertboundInternals, logger: FastifyBaseLogger): ForwardedCertificates | undefined {
  const proxies = compileTrustedProxies(options.trustedProxies);
  if (!proxies) {
    if (options.ca !== undefined) parsePluginCa(options.ca);
    return undefined;
  }
  let material: (() => TrustMaterial | Promise<TrustMaterial>) | undefined = internals.forwardedMaterial;
  if (!material) {
    const anchors = options.ca !== undefined ? parsePluginCa(options.ca)
      : (app.server as { ca?: unknown } | undefined)?.ca !== undefined ? serverAnchors(app.server) : [];
    if (anchors.length === 0) throw new CertboundError('CB_ERR_INVALID_OPTION', ['trustedProxies', 'needs the trusted client CAs that forwarded certificates are verified against: the plugin\'s ca option (or a ca on the app\'s TLS server)']);
    let made: Promise<TrustMaterial> | undefined;
    material = () => (made ??= trustMaterial(anchors, []));
  }
  return new ForwardedCertificates({ proxies, material, policy: () => registry.policy, logger });
}

/** The plugin's `ca` option: every entry must hold at least one certificate (CB_ERR_PEM_INVALID otherwise). */
function parsePluginCa(ca: string | Buffer | (string | Buffer)[]): ReturnType<typeof anchorsFromPem> {
  const list = Array.isArray(ca) ? ca : [ca];
  return list.flatMap((pem, i) => parseCertificates(pem.toString(), 'CA', list.length > 1 ? `(ca option, entry ${i})` : '(ca option)'));
}
