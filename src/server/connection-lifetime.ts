// Maximum connection lifetime: after it, the server ends a connection gracefully, so that trust
// changes (a reload, a revocation, a CRL refresh) reach clients that would otherwise keep one
// connection — and its decision — for days. HTTP/1.1: the request in flight is answered with
// `Connection: close` and the connection closes after it; an idle one closes at once. HTTP/2:
// GOAWAY (Http2Session.close(): open streams finish, no new ones).
import type { Server as HttpsServer } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { Http2Session } from 'node:http2';
import type { Server as TlsServer, TLSSocket } from 'node:tls';

/** Ends `socket`'s HTTP/1.1 connection gracefully: after the response in flight, or now when idle. */
function endHttp1(socket: TLSSocket): void {
  if (socket.destroyed) return;
  const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!res || res.writableFinished) {
    socket.destroySoon();
    return;
  }
  // Node closes the connection after a response that says Connection: close.
  if (!res.headersSent) res.setHeader('connection', 'close');
  else res.once('finish', () => socket.destroySoon());
}

/**
 * Arms a lifetime of `ms` on every connection `server` accepts from now on (0: none). The
 * timers are unref()ed and cleared when the connection closes.
 */
export function limitConnectionLifetime(server: HttpsServer, ms: number): void {
  if (!(ms > 0)) return;
  (server as unknown as TlsServer).on('secureConnection', (socket: TLSSocket) => {
    // An HTTP/2 connection is ended through its session (below).
    if (socket.alpnProtocol === 'h2') return;
    const timer = setTimeout(endHttp1, ms, socket);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  });
  server.on('session', (session: Http2Session) => {
    const timer = setTimeout(() => { if (!session.closed && !session.destroyed) session.close(); }, ms);
    timer.unref();
    session.once('close', () => clearTimeout(timer));
  });
}
