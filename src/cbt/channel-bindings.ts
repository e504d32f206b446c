// The three channel bindings of a live connection. Cheap to call per request: the values are
// cached per connection and keyed on this side's Finished message of the most recent handshake,
// so a renegotiation (a new Finished message) is noticed without the caller counting handshakes;
// tls-server-end-point is further cached per server certificate (see server-end-point.ts).
import type { TLSSocket } from 'node:tls';
import { unavailable, type BindingResult, type ChannelBindings, type ChannelBindingType } from './binding.js';
import { tlsExporter, type ExportKeyingMaterial, type Tls12ExporterContext } from './exporter.js';
import { handshakeFacts, type Side } from './handshake-facts.js';
import { cachedServerEndPoint } from './server-end-point.js';
import { tlsUnique } from './tls-unique.js';

export interface ChannelBindingOptions {
  /** Which end of the connection `socket` is. Required: the Finished messages swap roles. */
  readonly side: Side;
  /**
   * True when no renegotiation can happen on this connection any more (e.g. after
   * `socket.disableRenegotiation()` on a server that never renegotiates, or
   * SSL_OP_NO_RENEGOTIATION on both contexts). Only then is tls-exporter offered on TLS 1.2.
   * Default: false (Node accepts client-initiated renegotiation by default).
   */
  readonly renegotiationDisabled?: boolean;
  /** TLS 1.2 exporter context: 'empty' (RFC 9266, default) or 'none' (OpenSSL s_client). */
  readonly tls12ExporterContext?: Tls12ExporterContext;
}

interface CacheEntry {
  readonly side: Side;
  readonly renegotiationDisabled: boolean;
  readonly tls12Context: Tls12ExporterContext;
  readonly finished: Buffer;
  readonly bindings: ChannelBindings;
}
const perConnection = new WeakMap<TLSSocket, CacheEntry>();

/**
 * tls-server-end-point of the certificate this connection was actually served (or received):
 * read from the socket at each handshake (the result is cached per connection above and per
 * certificate fingerprint in server-end-point.ts), never inferred from the serving context —
 * a context holding two certificates serves either, so a per-context answer could name the
 * certificate another connection was served.
 */
function endPoint(socket: TLSSocket, side: Side): BindingResult {
  const cert = side === 'server' ? socket.getX509Certificate() : socket.getPeerX509Certificate();
  if (!cert) return unavailable('no-certificate', side === 'server' ? 'This connection has no server certificate' : 'The server sent no certificate');
  return cachedServerEndPoint(cert.fingerprint256, cert.raw);
}

// @types/node declares the context as required, but Node treats an omitted context as "no
// context" (RFC 5705), which the TLS 1.2 'none' option needs.
function exporterOf(socket: TLSSocket): ExportKeyingMaterial {
  const exportKeyingMaterial = socket.exportKeyingMaterial as (length: number, label: string, context?: Buffer) => Buffer;
  return (length, label, context) => context === undefined ? exportKeyingMaterial.call(socket, length, label) : exportKeyingMaterial.call(socket, length, label, context);
}

/**
 * The tls-unique, tls-server-end-point and tls-exporter bindings of `socket`'s most recent
 * handshake, as `{ value }` or `{ value: undefined, reason, message }`. Both sides of one
 * connection get equal values. Call it again after a renegotiation: tls-unique changes.
 */
export function channelBindings(socket: TLSSocket, options: ChannelBindingOptions): ChannelBindings {
  const side = options.side;
  const renegotiationDisabled = options.renegotiationDisabled ?? false;
  const tls12Context = options.tls12ExporterContext ?? 'empty';
  // This runs on every request (docs/performance.md): the cache is checked with one call. This
  // side's Finished message is a MAC over the handshake transcript, whose randoms are new in
  // every handshake, so it alone tells whether a handshake happened since the values were
  // computed; a closed socket has none (a miss, and no stale value).
  const finished = socket.getFinished();
  const hit = perConnection.get(socket);
  if (hit && finished && hit.side === side && hit.renegotiationDisabled === renegotiationDisabled && hit.tls12Context === tls12Context
    && hit.finished.equals(finished)) return hit.bindings;
  const peerFinished = socket.getPeerFinished();
  const protocol = socket.getProtocol();

  const facts = handshakeFacts(socket, side, renegotiationDisabled);
  const bindings: ChannelBindings = Object.freeze({
    'tls-unique': tlsUnique(facts),
    'tls-server-end-point': facts.protocol === null
      ? unavailable('no-handshake', 'The connection has not completed a TLS handshake')
      : endPoint(socket, side),
    'tls-exporter': tlsExporter(facts, exporterOf(socket), tls12Context),
  });
  if (finished && peerFinished && protocol) perConnection.set(socket, { side, renegotiationDisabled, tls12Context, finished, bindings });
  return bindings;
}

/**
 * One binding of `socket`'s most recent handshake (the same value as channelBindings()[type]),
 * computed alone and not cached: for callers that cache it per handshake themselves. The
 * others are not computed — tls-server-end-point reads the served certificate from the socket,
 * which cost about 8 % of a handshake when only tls-exporter was asked for (docs/performance.md).
 */
export function channelBinding(socket: TLSSocket, type: ChannelBindingType, options: ChannelBindingOptions): BindingResult {
  const side = options.side;
  const facts = handshakeFacts(socket, side, options.renegotiationDisabled ?? false);
  switch (type) {
    case 'tls-unique':
      return tlsUnique(facts);
    case 'tls-server-end-point':
      return facts.protocol === null ? unavailable('no-handshake', 'The connection has not completed a TLS handshake') : endPoint(socket, side);
    case 'tls-exporter':
      return tlsExporter(facts, exporterOf(socket), options.tls12ExporterContext ?? 'empty');
  }
}
