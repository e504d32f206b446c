// Request log lines carry the connection's id and the client certificate's thumbprint, from
// fastify's first line ('incoming request') to its last ('request completed'): the plugin
// installs this as the app's child-logger factory (fastify's setChildLoggerFactory), wrapping
// the factory the app had.
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { ConnectionEntry } from './connection.js';
import { ConnectionRegistry } from './registry.js';

type ChildLoggerFactory = FastifyInstance['childLoggerFactory'];

/** The bindings of a connection's log lines: `connectionId` (decimal string) and, with a client certificate, its SHA-1 `thumbprint`. */
export function connectionBindings(entry: ConnectionEntry): { connectionId: string; thumbprint?: string } {
  const cert = entry.clientCertificate();
  return { connectionId: entry.id.toString(), ...(cert ? { thumbprint: cert.sha1 } : {}) };
}

/**
 * A child-logger factory that puts the connection's bindings under every request logger, on
 * top of `previous` (the app's factory). The connection's bindings go into one child per
 * connection and handshake (a renegotiation brings the new thumbprint); a request adds only
 * its own (reqId). With logging off a child per request is pure cost (docs/performance.md).
 * `made` collects the loggers it built, so that the plugin knows which requests still lack
 * the bindings (routes declared before it, fastify's default 404 handler).
 */
export function connectionLoggerFactory(registry: ConnectionRegistry, previous: ChildLoggerFactory, made: WeakSet<object>): ChildLoggerFactory {
  const perConnection = new WeakMap<ConnectionEntry, { handshake: number; parent: FastifyBaseLogger; logger: FastifyBaseLogger }>();
  return function (this: FastifyInstance, parent, bindings, opts, rawReq) {
    if ((parent as unknown as { levelVal?: number }).levelVal === Infinity) {
      // A silent logger writes nothing, so its children are pure cost (a pino child per request
      // was ~2 % of a keep-alive request): the request logs through the parent itself, as
      // fastify does with its null logger. A route's own logLevel or serializers still get
      // their child, which may log.
      return opts.level === undefined && opts.serializers === undefined ? parent : previous.call(this, parent, bindings, opts, rawReq);
    }
    const socket = (rawReq as IncomingMessage).socket;
    const entry = ConnectionRegistry.entryOf(socket) ?? (socket instanceof TLSSocket && socket.encrypted ? registry.add(socket) : undefined);
    if (!entry) return previous.call(this, parent, bindings, opts, rawReq);
    let cached = perConnection.get(entry);
    if (!cached || cached.handshake !== entry.handshake.sequence || cached.parent !== parent) {
      cached = { handshake: entry.handshake.sequence, parent, logger: parent.child(connectionBindings(entry)) };
      perConnection.set(entry, cached);
    }
    const logger = previous.call(this, cached.logger, bindings, opts, rawReq);
    made.add(logger);
    return logger;
  };
}
