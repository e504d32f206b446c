// The fastify side of channel binding: `request.channelBinding(type)` and
// `request.channelBindings()` for the request's TLS connection, as the server sees it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TLSSocket } from 'node:tls';
import { CertboundError } from '../errors.js';
import { CHANNEL_BINDING_TYPES, isChannelBindingType, unavailable, type BindingResult, type ChannelBindings, type ChannelBindingType } from './binding.js';
import { serverChannelBindings, type ServerChannelBindingConfig } from './server-bindings.js';

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

function bindingsOf(request: FastifyRequest, config: ServerChannelBindingConfig): ChannelBindings {
  const socket = request.raw.socket;
  if (!(socket instanceof TLSSocket) || !socket.encrypted) return NOT_TLS;
  // Once per connection, handshake and configuration: the connection replaces its record after
  // every handshake the server runs, and closes the connection on any other (checked per request).
  const entry = (request as { connection?: { perHandshake<T>(key: object, compute: () => T): T } }).connection;
  return entry ? entry.perHandshake(config, () => serverChannelBindings(socket, config)) : serverChannelBindings(socket, config);
}

/** Adds `request.channelBinding(type)` and `request.channelBindings()` to `app`. */
export function decorateChannelBinding(app: FastifyInstance, config: ServerChannelBindingConfig = {}): void {
  config = Object.freeze({ ...config });
  app.decorateRequest('channelBindings', function (this: FastifyRequest) {
    return bindingsOf(this, config);
  });
  app.decorateRequest('channelBinding', function (this: FastifyRequest, type: ChannelBindingType) {
    if (!isChannelBindingType(type)) throw new CertboundError('CB_ERR_INVALID_OPTION', ['channelBinding type', `${JSON.stringify(type)} is not one of ${CHANNEL_BINDING_TYPES.join(', ')}`]);
    return bindingsOf(this, config)[type];
  });
}
