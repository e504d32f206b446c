// The fastify side of certbound: decorates requests with the connection id and the client
// certificate, enforces the request-level part of the client-auth mode and the mapper, and
// gives every request log line the connection id and thumbprint. createServer uses it too.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { TLSSocket, type Server as TlsServer } from 'node:tls';
import { CertboundError } from '../errors.js';
import { certStatusName, hresultHex } from '../status.js';
import type { ClientAuthMode } from '../tls/client-auth.js';
import { compileMapper, type CertificateMapperFn, type MapperConfig } from '../tls/mapper.js';
import { ConnectionRegistry, type ClientCertificate, type ConnectionEntry, type RequestTicket } from './registry.js';
import type { IncomingMessage } from 'node:http';
import { RequestQueue } from './receive.js';
import { negotiationWin32Override } from './negotiate.js';
import { negotiateCertificate, type NegotiationOptions, type NegotiationResult } from '../tls/renegotiate.js';
import { constants as h2constants } from 'node:http2';
import { channelTokenProvider, type ServerChannelBindingConfig } from '../cbt/server-bindings.js';
import { decorateChannelBinding } from '../cbt/request-decorator.js';
import { createRevocationChecker, RevocationChecker, type RevocationOptions } from '../ocsp/revocation.js';
import { routeChannelBindingRefusal, type RouteChannelBinding } from './channel-binding-route.js';

/** Route option (`config.clientCertificate`): what a route needs of the client. */
export type RouteCertificateRequirement = 'required' | 'on-demand';

export interface CertboundPluginOptions {
  /**
   * Revocation checks of client certificates (OCSP, then CRLs), HTTP.sys's modes: a checker or
   * its options (docs/ocsp.md). Run once per connection and certificate, after the handshake,
   * before the request's hooks go on; never on the handshake path. Default: off.
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
   * The client-auth mode the TLS server was built with. Decides what the plugin refuses at
   * request level: `optional` refuses requests on connections whose certificate did not verify.
   * Default: 'accept-untrusted' (refuse nothing; the application reads certFlags).
   */
  clientAuth?: ClientAuthMode;
  /** Certificate mapper (ignored when `registry` is given: the registry's mapper is used). */
  mapper?: MapperConfig | CertificateMapperFn;
  /**
   * Refuse (403 CB_ERR_CLIENT_CERT_DENIED) requests whose certificate the mapper denied.
   * Default: true, except in accept-untrusted mode where the application decides.
   */
  rejectDeniedByMapper?: boolean;
  /** Use an existing registry and queue (createServer passes its own). */
  registry?: ConnectionRegistry;
  queue?: RequestQueue;
  /** Add connectionId and thumbprint to request.log (createServer does it in its logger factory). Default: true. */
  logBindings?: boolean;
}

/** What `app.certbound` holds. */
export interface CertboundDecoration {
  readonly queue: RequestQueue;
  readonly registry: ConnectionRegistry;
  readonly clientAuth: ClientAuthMode;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * `required`: the request is refused (403 CB_ERR_CLIENT_CERT_REQUIRED) unless the
     * connection has a certificate. `on-demand`: a connection without one is asked for it
     * (TLS 1.2 renegotiation after the body is read); see docs/on-demand.md.
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
    /** The client certificate of the connection with its verdict and mapping, or null. */
    clientCertificate(): ClientCertificate | null;
    /** Asks for a client certificate now (TLS 1.2 renegotiation); resolves when it is over. */
    negotiateClientCertificate(options?: NegotiationOptions): Promise<NegotiationResult>;
  }
}

/** The registry entry of a request's connection, registering the socket if needed. */
export function entryOfRequest(registry: ConnectionRegistry, request: FastifyRequest): ConnectionEntry | undefined {
  const socket = request.raw.socket;
  const entry = ConnectionRegistry.entryOf(socket);
  if (entry) return entry;
  return socket instanceof TLSSocket && socket.encrypted ? registry.add(socket) : undefined;
}

function refuse(reply: FastifyReply, err: CertboundError, extra: Record<string, unknown> = {}): FastifyReply {
  return reply.code(err.statusCode).type('application/json').send({ statusCode: err.statusCode, code: err.code, error: 'Forbidden', message: err.message, ...extra });
}

/**
 * The plugin's body. Synchronous: createServer runs it directly on its root instance, so that
 * its hooks (route options included, added through onRoute) are in place before the caller's
 * first route. Plugin users register certbound before the routes that use its options.
 */
export function installCertbound(app: FastifyInstance, options: CertboundPluginOptions): void {
  const clientAuth = options.clientAuth ?? 'accept-untrusted';
  const registry = options.registry ?? new ConnectionRegistry({ mapper: compileMapper(options.mapper), logger: app.log });
  const queue = options.queue ?? new RequestQueue(registry);
  const logBindings = options.logBindings ?? true;
  const rejectDenied = options.rejectDeniedByMapper ?? clientAuth !== 'accept-untrusted';
  if (app.server && 'addContext' in app.server) registry.attach(app.server as unknown as TlsServer);
  // Requests are ordered per connection in the raw 'request' event, which fires in arrival
  // order (fastify's hooks may interleave): see the onRequest hook.
  const tickets = new WeakMap<object, RequestTicket>();
  app.server?.prependListener('request', (req: IncomingMessage) => {
    const entry = ConnectionRegistry.entryOf(req.socket);
    if (entry && !entry.clientCertificate() && entry.handshake.alpnProtocol !== 'h2') tickets.set(req, entry.openTicket());
  });

  app.decorate('certbound', Object.freeze({ queue, registry, clientAuth }));
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
    return entryOfRequest(registry, this)?.clientCertificate() ?? null;
  });

  const revocation = options.revocation === undefined ? undefined
    : options.revocation instanceof RevocationChecker ? options.revocation : createRevocationChecker(options.revocation);
  /** The certificate after its revocation check (once per connection and certificate). */
  const checked = async (entry: ConnectionEntry, cert: ClientCertificate): Promise<ClientCertificate> => {
    if (!revocation || cert.revocation) return cert;
    const outcome = await revocation.checkOnce(entry, cert.chain);
    return entry.applyRevocation(cert.handshake, outcome) ?? cert;
  };
  const checkedCertificate = async (entry: ConnectionEntry): Promise<ClientCertificate | null> => {
    const cert = entry.clientCertificate();
    return cert && revocation ? checked(entry, cert) : cert;
  };
  const negotiationTimeout = options.negotiationTimeout;
  const negotiate = (entry: ConnectionEntry) => negotiateCertificate(entry, negotiationTimeout !== undefined ? { timeoutMs: negotiationTimeout } : {});
  queue.negotiator ??= async (entry) => negotiationWin32Override((await negotiate(entry)).status);
  // receiveClientCertificate with HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, and request.channelBinding(type).
  queue.channelTokenProvider ??= channelTokenProvider(options.channelBinding);
  decorateChannelBinding(app, options.channelBinding);
  app.decorateRequest('negotiateClientCertificate', function (this: FastifyRequest, opts?: NegotiationOptions) {
    const entry = entryOfRequest(registry, this);
    if (!entry) return Promise.resolve(Object.freeze({ status: 'closed' as const, durationMs: 0, detail: 'not a TLS connection' }));
    if (!this.raw.complete) throw new CertboundError('CB_ERR_NEGOTIATE_BODY');
    return negotiateCertificate(entry, opts ?? (negotiationTimeout !== undefined ? { timeoutMs: negotiationTimeout } : {}));
  });

  /** Why `cert` may not be used for this request, as a sent reply, or undefined. */
  const refuseCertificate = (request: FastifyRequest, reply: FastifyReply, cert: ClientCertificate): FastifyReply | undefined => {
    if (clientAuth === 'optional' && cert.certFlags !== 0) {
      const name = certStatusName(cert.certFlags) ?? hresultHex(cert.certFlags);
      request.log.info({ certFlags: hresultHex(cert.certFlags), verifyError: cert.verifyError }, 'refused: client certificate did not verify');
      return refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_UNTRUSTED', [name]), { certFlags: cert.certFlags, certFlagsName: name });
    }
    if (rejectDenied && cert.deniedByMapper) {
      request.log.info({ reason: cert.mapperReason }, 'refused: certificate denied by mapper');
      return refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_DENIED'));
    }
    return undefined;
  };

  /**
   * The per-request checks of every route, synchronous unless something is pending: answers
   * true when it sent a reply.
   */
  const checkRequest = (request: FastifyRequest, reply: FastifyReply, entry: ConnectionEntry, cert: ClientCertificate | null): boolean => {
    if (!entry.identityIntact()) {
      request.log.warn('client certificate changed outside a server handshake: connection closed');
      entry.socket.destroy();
      refuse(reply, new CertboundError('CB_ERR_IDENTITY_CHANGED'));
      return true;
    }
    if (logBindings) request.log = request.log.child({ connectionId: entry.id.toString(), ...(cert ? { thumbprint: cert.sha1 } : {}) });
    return cert !== null && refuseCertificate(request, reply, cert) !== undefined;
  };

  // A request pipelined behind an on-demand negotiation waits for it, so that it sees the
  // identity the connection has once the negotiation is over, never a half-made one; a
  // pending revocation check is awaited too. Only these cases leave the synchronous path.
  const slowCheck = async (request: FastifyRequest, reply: FastifyReply, entry: ConnectionEntry, ticket: RequestTicket | undefined): Promise<boolean> => {
    if (ticket) {
      await entry.waitForEarlier(ticket.seq);
      if (request.routeOptions.config.clientCertificate !== 'on-demand' || entry.clientCertificate()) ticket.release();
      else request.raw.once('close', ticket.release);
    }
    if (entry.negotiation) await entry.negotiation;
    return checkRequest(request, reply, entry, await checkedCertificate(entry));
  };

  app.addHook('onRequest', (request, reply, done) => {
    const entry = entryOfRequest(registry, request);
    if (!entry) return done();
    const ticket = tickets.get(request.raw);
    const cert = entry.clientCertificate();
    if (ticket || entry.negotiation || (revocation && cert && !cert.revocation)) {
      slowCheck(request, reply, entry, ticket).then((sent) => { if (!sent) done(); }, done);
      return;
    }
    // A hook that sent the reply must not call done (fastify's callback-style hooks).
    if (!checkRequest(request, reply, entry, cert)) done();
  });

  /** Route onRequest for `clientCertificate: 'required'`. */
  const requireCertificate = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (request.clientCertificate()) return done();
    refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_REQUIRED'));
  };

  /**
   * Route onRequest for `clientCertificate: 'on-demand'` on HTTP/2, which forbids
   * renegotiation (RFC 7540 9.2.1; Node aborts if asked): the stream is reset with
   * HTTP_1_1_REQUIRED so that the client retries over HTTP/1.1.
   */
  const onDemandOverH2 = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const entry = entryOfRequest(registry, request);
    if (!entry || entry.clientCertificate() || entry.handshake.alpnProtocol !== 'h2') return done();
    request.log.info('on-demand certificate on HTTP/2: stream reset with HTTP_1_1_REQUIRED');
    const stream = (request.raw as unknown as { stream?: { close(code: number): void } }).stream;
    stream?.close(h2constants.NGHTTP2_HTTP_1_1_REQUIRED);
    reply.hijack();
  };

  // On-demand routes negotiate after the body has been read (preHandler), so a client
  // sending a body is never stuck between the body and the handshake (ASP.NET's lesson).
  const negotiateOnDemand = async (request: FastifyRequest, reply: FastifyReply) => {
    const entry = entryOfRequest(registry, request);
    if (!entry || entry.clientCertificate()) return;
    let result: NegotiationResult;
    try {
      result = await negotiate(entry);
    } finally {
      tickets.get(request.raw)?.release();
    }
    request.log.info({ negotiation: result.status, durationMs: result.durationMs, detail: result.detail }, 'on-demand client certificate');
    switch (result.status) {
      case 'certificate': {
        const cert = await checkedCertificate(entry);
        if (!cert) return refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_REQUIRED'));
        request.log = request.log.child({ thumbprint: cert.sha1 });
        return refuseCertificate(request, reply, cert);
      }
      case 'no-certificate':
        return refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_REQUIRED'));
      case 'tls13':
        return refuse(reply, new CertboundError('CB_ERR_NEGOTIATE_TLS13'));
      case 'limit':
        return refuse(reply, new CertboundError('CB_ERR_NEGOTIATE_LIMIT'));
      default:
        // timeout, closed, error: the connection is gone; nothing can be answered.
        return reply.hijack();
    }
  };

  // Routes that need a channel binding: checked after the body (and any negotiation), before the handler.
  const checkChannelBindingOption = async (request: FastifyRequest, reply: FastifyReply) => {
    const option = request.routeOptions.config.channelBinding;
    if (!option) return;
    const refusal = routeChannelBindingRefusal(request, option);
    if (!refusal) return;
    request.log.info({ reason: refusal.reason }, 'refused: channel binding');
    return refuse(reply, new CertboundError('CB_ERR_CHANNEL_BINDING', [refusal.reason, refusal.message]), { reason: refusal.reason });
  };

  // Route options become hooks of those routes only: other routes pay nothing for them.
  const asList = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  app.addHook('onRoute', (route) => {
    const config = (route.config ?? {}) as { clientCertificate?: RouteCertificateRequirement; channelBinding?: unknown };
    if (config.clientCertificate === 'required') route.onRequest = [...asList(route.onRequest), requireCertificate] as typeof route.onRequest;
    if (config.clientCertificate === 'on-demand') {
      route.onRequest = [...asList(route.onRequest), onDemandOverH2] as typeof route.onRequest;
      route.preHandler = [...asList(route.preHandler), negotiateOnDemand] as typeof route.preHandler;
    }
    if (config.channelBinding) route.preHandler = [...asList(route.preHandler), checkChannelBindingOption] as typeof route.preHandler;
  });
}

async function certbound(app: FastifyInstance, options: CertboundPluginOptions): Promise<void> {
  installCertbound(app, options);
}

/** The certbound fastify plugin (fastify-plugin: decorations are visible to the whole app). */
export const certboundPlugin = fp(certbound, { name: 'certbound', fastify: '5.x' });
export default certboundPlugin;
