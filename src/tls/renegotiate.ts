// On-demand client certificates: a server-started TLS 1.2 renegotiation that asks for a
// certificate (IIS NegotiateClientCertificate, seed 003), wrapped so that it cannot hang,
// leak, run twice at once, trip Node's renegotiation limit or abort an h2 connection.
// The traps are measured in NODE-TLS-NOTES.md.
import { CLIENT_RENEG_LIMIT, type TLSSocket } from 'node:tls';

/** What a negotiation needs of a connection (src/server/connection.ts implements it). */
export interface Renegotiable {
  readonly socket: TLSSocket;
  readonly closed: boolean;
  readonly handshake: { readonly protocol: string | null; readonly alpnProtocol: string | null };
  /** The negotiation in flight, shared by concurrent callers. */
  negotiation: Promise<unknown> | undefined;
  /** Renegotiations the server started on this connection. */
  renegotiations: number;
  /** True when the last handshake brought a client certificate. */
  hasCertificate(): boolean;
  /** Brackets a handshake the server starts, so the connection's guard lets it pass. */
  expectServerHandshake(on: boolean): void;
  /** Records the handshake that just completed (new chain, new decision). */
  recordHandshake(): unknown;
  /** Told each result once (metrics): `attempted` when a renegotiation ran, false for a refusal (tls13, http2, limit). */
  negotiated?(result: NegotiationResult, attempted: boolean): void;
}
import { DEFAULTS } from '../defaults.js';

/**
 * - `certificate`: the connection has a client certificate (already, or after negotiating).
 * - `no-certificate`: the client completed the renegotiation without sending one.
 * - `tls13`: TLS 1.3 has no renegotiation and Node has no post-handshake auth.
 * - `http2`: HTTP/2 forbids renegotiation (RFC 7540 9.2.1); Node would abort the process.
 * - `limit`: this connection has used its renegotiations; the client must reconnect.
 * - `timeout`: the client did not finish in time; the connection was closed.
 * - `closed`: the connection closed (or was reset) during the negotiation.
 * - `error`: the TLS layer failed; the connection was closed.
 */
export type NegotiationStatus = 'certificate' | 'no-certificate' | 'tls13' | 'http2' | 'limit' | 'timeout' | 'closed' | 'error';

export interface NegotiationResult {
  readonly status: NegotiationStatus;
  /** Time spent (ms); 0 when nothing was attempted. */
  readonly durationMs: number;
  /** Detail for logs (an error code), or null. */
  readonly detail: string | null;
}

export interface NegotiationOptions {
  /** Time limit (ms) for the client to complete the renegotiation. Default: 10000 (DEFAULTS.negotiationTimeoutMs). */
  timeoutMs?: number;
}

/** DEFAULTS.negotiationTimeoutMs, under its old name. */
export const DEFAULT_NEGOTIATION_TIMEOUT_MS = DEFAULTS.negotiationTimeoutMs;

/**
 * Server renegotiations one connection may do. Node counts handshakes per connection
 * toward tls.CLIENT_RENEG_LIMIT (3 per CLIENT_RENEG_WINDOW, 600 s) and a server-started
 * renegotiation counts twice on top of the initial handshake, so with the default limit
 * only one fits: a second would raise ERR_TLS_SESSION_ATTACK (answered as a 400).
 */
export function maxServerRenegotiations(limit: number = CLIENT_RENEG_LIMIT): number {
  return Math.max(0, Math.floor((limit - 1) / 2));
}

/** Why a connection cannot be renegotiated now, or null when it can (a pure rule). */
export function renegotiationRefusal(state: { protocol: string | null; alpnProtocol: string | null; renegotiations: number }, max = maxServerRenegotiations()): NegotiationStatus | null {
  if (state.alpnProtocol === 'h2') return 'http2';
  if (state.protocol === 'TLSv1.3') return 'tls13';
  if (state.protocol === null) return 'closed';
  if (state.renegotiations >= max) return 'limit';
  return null;
}

const done = (status: NegotiationStatus, detail: string | null = null): NegotiationResult => Object.freeze({ status, durationMs: 0, detail });

/**
 * Asks the client of `entry` for a certificate, unless the connection has one already.
 * Settles exactly once, never rejects: on completion, refusal, timeout (the socket is
 * destroyed), close or error. Concurrent callers share the negotiation in flight.
 * Precondition for HTTP: the request body has been read (fastify's preHandler stage).
 */
export function negotiateCertificate(entry: Renegotiable, options: NegotiationOptions = {}): Promise<NegotiationResult> {
  if (entry.negotiation) return entry.negotiation as Promise<NegotiationResult>;
  if (entry.closed || entry.socket.destroyed) return Promise.resolve(done('closed'));
  if (entry.hasCertificate()) return Promise.resolve(done('certificate'));
  const refusal = renegotiationRefusal({ protocol: entry.handshake.protocol, alpnProtocol: entry.handshake.alpnProtocol, renegotiations: entry.renegotiations });
  if (refusal) {
    const r = done(refusal);
    entry.negotiated?.(r, false);
    return Promise.resolve(r);
  }

  const socket = entry.socket;
  const timeoutMs = options.timeoutMs ?? DEFAULT_NEGOTIATION_TIMEOUT_MS;
  const started = Date.now();
  entry.renegotiations += 1;
  const p = new Promise<NegotiationResult>((resolve) => {
    let settled = false;
    const finish = (status: NegotiationStatus, detail: string | null = null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('close', onClose);
      socket.off('error', onError);
      entry.expectServerHandshake(false);
      entry.negotiation = undefined;
      const result: NegotiationResult = Object.freeze({ status, durationMs: Date.now() - started, detail });
      entry.negotiated?.(result, true);
      resolve(result);
    };
    const onClose = () => finish('closed');
    const onError = (err: NodeJS.ErrnoException) => {
      finish('error', err.code ?? err.message);
      socket.destroy();
    };
    // handshakeTimeout does not apply to renegotiation: this is the only limit.
    const timer = setTimeout(() => {
      finish('timeout', `no answer in ${timeoutMs} ms`);
      socket.destroy();
    }, timeoutMs);
    socket.once('close', onClose);
    socket.once('error', onError);
    entry.expectServerHandshake(true);
    const ok = socket.renegotiate({ requestCert: true, rejectUnauthorized: false }, (err) => {
      if (err) {
        finish('error', (err as NodeJS.ErrnoException).code ?? err.message);
        socket.destroy();
        return;
      }
      entry.recordHandshake();
      // Lock the connection: any later handshake attempt ends it.
      socket.disableRenegotiation();
      finish(entry.hasCertificate() ? 'certificate' : 'no-certificate');
    });
    if (!ok) finish('error', 'renegotiate() did not start');
  });
  entry.negotiation = p;
  return p;
}
