// What the binding rules need to know about the current handshake of one connection, read
// from a TLSSocket in one place so that the rules themselves stay pure and table-tested.
import type { TLSSocket } from 'node:tls';
import { sessionFacts, type SessionFacts } from './extended-master-secret.js';

/** Which end of the connection the caller is: the bindings are the same, the accessors differ. */
export type Side = 'server' | 'client';

export interface HandshakeFacts {
  readonly side: Side;
  /** `tlsSocket.getProtocol()`: 'TLSv1.3', 'TLSv1.2', ... or null before a handshake. */
  readonly protocol: string | null;
  /** True when the most recent handshake resumed a session (abbreviated handshake). */
  readonly sessionReused: boolean;
  /** The Finished message this side sent in the most recent handshake. */
  readonly finished: Buffer | undefined;
  /** The Finished message the peer sent in the most recent handshake. */
  readonly peerFinished: Buffer | undefined;
  /** Version and EMS flag of the current session, or undefined when unreadable. */
  readonly session: SessionFacts | undefined;
  /** True when the caller guarantees that no renegotiation can happen on this connection. */
  readonly renegotiationDisabled: boolean;
}

/** Reads the facts of the socket's most recent handshake (cheap: no certificate parsing). */
export function handshakeFacts(socket: TLSSocket, side: Side, renegotiationDisabled: boolean): HandshakeFacts {
  const protocol = socket.getProtocol();
  const tls12OrOlder = protocol !== null && protocol !== 'TLSv1.3';
  return {
    side,
    protocol,
    sessionReused: socket.isSessionReused(),
    finished: socket.getFinished(),
    peerFinished: socket.getPeerFinished(),
    // The session DER is only needed for the TLS <= 1.2 EMS question; TLS 1.3 always has
    // unique secrets (RFC 8446 appendix D), so skip the serialisation there.
    session: tls12OrOlder ? sessionFacts(socket.getSession()) : undefined,
    renegotiationDisabled,
  };
}
