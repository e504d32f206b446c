// How a certbound server uses the bindings: one per-server configuration, the flags 0x1
// answer of receiveClientCertificate for a connection, and the /connection JSON shape.
// Kept here so that the server layer only wires these in.
import type { TLSSocket } from 'node:tls';
import { bindingHex, CHANNEL_BINDING_TYPES, type BindingResult, type ChannelBindings, type ChannelBindingType } from './binding.js';
import { channelBindStatus, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, secureChannelToken, type ChannelBindStatusResult, type SecureChannelTokenConfig } from './channel-bind-status.js';
import { channelBinding, channelBindings } from './channel-bindings.js';
import type { Tls12ExporterContext } from './exporter.js';

/** A server's channel-binding settings (createServer / plugin option `channelBinding`). */
export interface ServerChannelBindingConfig extends SecureChannelTokenConfig {
  /**
   * The server guarantees that no renegotiation happens on its connections (it never
   * renegotiates and refuses client renegotiation). Only then is tls-exporter offered on
   * TLS 1.2 (RFC 9266 section 4.2). Default: false.
   */
  readonly renegotiationDisabled?: boolean;
  /** TLS 1.2 exporter context: 'empty' (RFC 9266, default) or 'none' (OpenSSL s_client). */
  readonly tls12ExporterContext?: Tls12ExporterContext;
}

/** The server-side bindings of a connection under `config`. */
export function serverChannelBindings(socket: TLSSocket, config: ServerChannelBindingConfig = {}): ChannelBindings {
  return channelBindings(socket, { side: 'server', renegotiationDisabled: config.renegotiationDisabled ?? false, tls12ExporterContext: config.tls12ExporterContext ?? 'empty' });
}

/** One server-side binding of a connection under `config`, computed alone (uncached; see channelBinding). */
export function serverChannelBinding(socket: TLSSocket, type: ChannelBindingType, config: ServerChannelBindingConfig = {}): BindingResult {
  return channelBinding(socket, type, { side: 'server', renegotiationDisabled: config.renegotiationDisabled ?? false, tls12ExporterContext: config.tls12ExporterContext ?? 'empty' });
}

/**
 * The flags 0x1 answer for a connection: the token of the configured type and form (default
 * tls-server-end-point, application-data form) under HttpReceiveClientCertificate's buffer
 * rules. The service name is null: certbound learns none from TLS.
 */
export function channelTokenProvider(config: ServerChannelBindingConfig = {}): (entry: { readonly socket: TLSSocket; perHandshake<T>(key: object, compute: () => T): T }, bufferSize: number) => ChannelBindStatusResult {
  const key = Object.freeze({ ...config });
  // The token once per connection and handshake (the connection's memo).
  return (entry, bufferSize) => channelBindStatus(entry.perHandshake(key, () => secureChannelToken(serverChannelBindings(entry.socket, config), config)), null, bufferSize, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN);
}

/** The `channelBindings` member of GET /connection: lowercase hex, or null when undefined. */
export type ChannelBindingsJson = Record<ChannelBindingType, string | null>;

export function channelBindingsJson(bindings: ChannelBindings): ChannelBindingsJson {
  const out = {} as ChannelBindingsJson;
  for (const type of CHANNEL_BINDING_TYPES) out[type] = bindingHex(bindings[type]);
  return out;
}
