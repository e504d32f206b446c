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
import { ConnectionRegistry, type ClientCertificate, type ConnectionEntry } from './registry.js';
import { RequestQueue } from './receive.js';

export interface CertboundPluginOptions {
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

async function certbound(app: FastifyInstance, options: CertboundPluginOptions): Promise<void> {
  const clientAuth = options.clientAuth ?? 'accept-untrusted';
  const registry = options.registry ?? new ConnectionRegistry({ mapper: compileMapper(options.mapper), logger: app.log });
  const queue = options.queue ?? new RequestQueue(registry);
  const logBindings = options.logBindings ?? true;
  const rejectDenied = options.rejectDeniedByMapper ?? clientAuth !== 'accept-untrusted';
  if (app.server && 'addContext' in app.server) registry.attach(app.server as unknown as TlsServer);

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

  app.addHook('onRequest', async (request, reply) => {
    const entry = entryOfRequest(registry, request);
    if (!entry) return;
    const cert = entry.clientCertificate();
    if (logBindings) request.log = request.log.child({ connectionId: entry.id.toString(), ...(cert ? { thumbprint: cert.sha1 } : {}) });
    if (!cert) return;
    if (clientAuth === 'optional' && cert.certFlags !== 0) {
      const name = certStatusName(cert.certFlags) ?? hresultHex(cert.certFlags);
      request.log.info({ certFlags: hresultHex(cert.certFlags), verifyError: cert.verifyError }, 'refused: client certificate did not verify');
      return refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_UNTRUSTED', [name]), { certFlags: cert.certFlags, certFlagsName: name });
    }
    if (rejectDenied && cert.deniedByMapper) {
      request.log.info({ reason: cert.mapperReason }, 'refused: certificate denied by mapper');
      return refuse(reply, new CertboundError('CB_ERR_CLIENT_CERT_DENIED'));
    }
  });
}

/** The certbound fastify plugin (fastify-plugin: decorations are visible to the whole app). */
export const certboundPlugin = fp(certbound, { name: 'certbound', fastify: '5.x' });
export default certboundPlugin;
