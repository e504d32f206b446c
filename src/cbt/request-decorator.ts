// The fastify side of channel binding: `request.channelBinding(type)` and
// `request.channelBindings()` for the request's TLS connection, as the server sees it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TLSSocket } from 'node:tls';
import { CertboundError } from '../errors.js';
import { CHANNEL_BINDING_TYPES, isChannelBindingType, unavailable, type BindingResult, type ChannelBindings, type ChannelBindingType } from './binding.js';
import { serverChannelBinding, serverChannelBindings, type ServerChannelBindingConfig } from './server-bindings.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The server side's channel binding of `type` for this request's TLS connection:
     * `{ value }`, or `{ value: undefined, reason, message }` when it is undefined there
     * (see docs/channel-binding.md). Throws CB_ERR_INVALID_OPTION for an unknown type.
     */
    channelBinding(type: ChannelBindingType): BindingResult;
    /** All three bindings of this request's connection. */
    channelBindings(): ChannelBindings;
  }
}

const NOT_TLS: ChannelBindings = Object.freeze({
  'tls-unique': unavailable('no-handshake', 'The request did not come over TLS'),
  'tls-server-end-point': unavailable('no-handshake', 'The request did not come over TLS'),
  'tls-exporter': unavailable('no-handshake', 'The request did not come over TLS'),
});

/** What the decorators need of the request's connection (src/server/connection.ts ConnectionEntry). */
interface BindingsHolder { readonly socket: TLSSocket; perHandshake<T>(key: object, compute: (entry: BindingsHolder) => T): T }

function bindingsOf(request: FastifyRequest, config: ServerChannelBindingConfig, compute: (entry: BindingsHolder) => ChannelBindings): ChannelBindings {
  // Once per connection, handshake and configuration: the connection replaces its record after
  // every handshake the server runs, and closes the connection on any other (checked per
  // request). Only registered TLS connections have an entry.
  const entry = (request as { connection?: BindingsHolder }).connection;
  if (entry) return entry.perHandshake(config, compute);
  const socket = request.raw.socket;
  if (!(socket instanceof TLSSocket) || !socket.encrypted) return NOT_TLS;
  return serverChannelBindings(socket, config);
}

/** Adds `request.channelBinding(type)` and `request.channelBindings()` to `app`. */
export function decorateChannelBinding(app: FastifyInstance, config: ServerChannelBindingConfig = {}): void {
  config = Object.freeze({ ...config });
  // One function per configuration, not a closure per request.
  const compute = (entry: BindingsHolder): ChannelBindings => serverChannelBindings(entry.socket, config);
  // request.channelBinding(type) computes that type alone, once per handshake: a key and a
  // function per type and configuration.
  const one = Object.fromEntries(CHANNEL_BINDING_TYPES.map((type) => [type, {
    key: Object.freeze({ type, config }),
    compute: (entry: BindingsHolder): BindingResult => serverChannelBinding(entry.socket, type, config),
  }])) as Record<ChannelBindingType, { key: object; compute: (entry: BindingsHolder) => BindingResult }>;
  app.decorateRequest('channelBindings', function (this: FastifyRequest) {
    return bindingsOf(this, config, compute);
  });
  app.decorateRequest('channelBinding', function (this: FastifyRequest, type: ChannelBindingType) {
    if (!isChannelBindingType(type)) {
      throw new CertboundError('CB_ERR_INVALID_OPTION', ['channelBinding type', `${JSON.stringify(type)} is not one of ${CHANNEL_BINDING_TYPES.join(', ')}`]);
    }
    const entry = (this as { connection?: BindingsHolder }).connection;
    if (entry) return entry.perHandshake(one[type].key, one[type].compute);
    return bindingsOf(this, config, compute)[type];
  });
}
