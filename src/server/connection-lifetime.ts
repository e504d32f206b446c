// Maximum connection lifetime: after it, the server ends a connection gracefully, so that trust
// changes (a reload, a revocation, a CRL refresh) reach clients that would otherwise keep one
// connection — and its decision — for days. HTTP/1.1: the request in flight is answered with
// `Connection: close` and the connection closes after it; an idle one closes at once; a request
// that arrives (or is still queued behind the response in flight) after the lifetime never
// reaches a handler: the socket is marked expired and certbound's onRequest hook refuses it with
// 503 CB_ERR_CONNECTION_EXPIRED (src/server/plugin.ts). HTTP/2: GOAWAY (Http2Session.close():
// open streams finish, no new ones). Either way, a response still unfinished after the grace
// (DEFAULTS.maxConnectionLifetimeGraceMs, at most the lifetime itself) is cut: the connection is
// destroyed.
import type { Server as HttpsServer } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { Http2Session } from 'node:http2';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { DEFAULTS } from '../defaults.js';

/** HTTP/1.1 sockets past their lifetime (and that lifetime, ms): their requests are refused before any handler. */
const expired = new WeakMap<object, number>();
/** True once some server armed a lifetime: until then the per-request check is one boolean. */
let armed = false;

/** The lifetime (ms) `socket` (a request's `raw.socket`) is past, for an expired HTTP/1.1 connection; else undefined. */
export function expiredLifetime(socket: object | null | undefined): number | undefined {
  return armed && socket != null ? expired.get(socket) : undefined;
}

/** The grace after the lifetime before an unfinished response is cut. */
export function lifetimeGraceMs(lifetimeMs: number): number {
  return Math.min(lifetimeMs, DEFAULTS.maxConnectionLifetimeGraceMs);
}

/** Ends `socket`'s HTTP/1.1 connection gracefully: after the response in flight, or now when idle; cut after `graceMs`. */
function endHttp1(socket: TLSSocket, ms: number, graceMs: number): void {
  if (socket.destroyed) return;
  expired.set(socket, ms);
  const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!res || res.writableFinished) {
    socket.destroySoon();
  } else if (!res.headersSent) {
    // Node closes the connection after a response that says Connection: close.
    res.setHeader('connection', 'close');
  } else {
    res.once('finish', () => socket.destroySoon());
  }
  // A response that never finishes (a client that does not read, an endless stream) is cut.
  const cut = setTimeout(() => socket.destroy(), graceMs);
  cut.unref();
  socket.once('close', () => clearTimeout(cut));
}

/**
 * Arms a lifetime of `ms` on every connection `server` accepts from now on (0: none). The
 * timers are unref()ed and cleared when the connection closes.
 */
export function limitConnectionLifetime(server: HttpsServer, ms: number): void {
  if (!(ms > 0)) return;
  armed = true;
  const graceMs = lifetimeGraceMs(ms);
  (server as unknown as TlsServer).on('secureConnection', (socket: TLSSocket) => {
    // An HTTP/2 connection is ended through its session (below).
    if (socket.alpnProtocol === 'h2') return;
    const timer = setTimeout(endHttp1, ms, socket, ms, graceMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  });
  server.on('session', (session: Http2Session) => {
    let cut: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      if (session.closed || session.destroyed) return;
      session.close();
      // Open streams may finish within the grace; one kept open longer is cut with the session.
      cut = setTimeout(() => { if (!session.destroyed) session.destroy(); }, graceMs);
      cut.unref();
    }, ms);
    timer.unref();
    session.once('close', () => { clearTimeout(timer); clearTimeout(cut); });
  });
}
