// Reads the ClientHello of each connection of a TLS server before its TLS layer does, for what
// Node's TLS layer gives no hold on: which of an RSA and an ECDSA certificate a TLS 1.2 client
// can use depends on its cipher suites, which Node does not expose; and a connection that names
// a host must start from a context without a certificate (startWithout), because Node adds the
// SNI-chosen certificate to the ones of the context the connection started from instead of
// replacing them (OpenSSL would then pick between the two, and the staple could be the other's).
// Reads at most MAX_CLIENT_HELLO_BYTES within `timeoutMs`, puts the bytes back and hands the
// socket on. Fail closed: a connection whose ClientHello it cannot establish (invalid, empty
// records, over its size bound, not complete within `timeoutMs`, or the client ended first) is
// destroyed before TLS starts — never handed on under a context that holds a certificate, where
// the SNI callback would add the named one next to it and OpenSSL could serve either (with the
// other one's staple). Starting it certificate-less instead would still leave the RSA/ECDSA choice
// to a guess without the cipher suites; destroying it can serve no certificate at all.
import type { Socket } from 'node:net';
import type { SecureContext, Server as TlsServer } from 'node:tls';
import { CertboundError } from '../errors.js';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello, type ClientHelloInfo } from './client-hello.js';

const hellos = new WeakMap<Socket, ClientHelloInfo>();

/** The ClientHello recorded for a raw socket (a TLSSocket's `_parent`), if any. */
export function clientHelloOf(socket: Socket): ClientHelloInfo | undefined {
  return hellos.get(socket);
}

export interface HelloRecordOptions {
  /** Time limit (ms) for the ClientHello to arrive; then the socket is handed on as it is. */
  readonly timeoutMs: number;
  /**
   * A context without a certificate (same CAs, versions, ciphers, ticket keys as the server's)
   * that connections naming a host start from; the SNI callback then gives them exactly one
   * certificate. Connections without SNI start from the server's own context. A function is
   * asked at each connection (a reload replaces the context; undefined: the server's own).
   */
  readonly startWithout?: SecureContext | (() => SecureContext | undefined);
  /**
   * Called when a connection is destroyed because its ClientHello could not be established,
   * with a stable reason (REFUSE_REASONS) and the parser's detail.
   */
  readonly onRefuse?: (socket: Socket, reason: HelloRefuseReason, detail: string) => void;
}

/** Why the reader destroyed a connection before TLS (stable: logged and documented). */
export const REFUSE_REASONS = Object.freeze(['client-hello-invalid', 'client-hello-too-long', 'client-hello-timeout', 'client-hello-incomplete'] as const);
export type HelloRefuseReason = (typeof REFUSE_REASONS)[number];

/** Node's tls.Server keeps the context new connections start from here (lib/_tls_wrap.js, tlsConnectionListener). */
interface SharedCreds { _sharedCreds?: SecureContext }

/** Records the ClientHello of every connection `server` accepts from now on (before its TLS layer sees it). */
export function recordClientHellos(server: TlsServer, options: HelloRecordOptions): void {
  const creds = server as unknown as SharedCreds;
  if (options.startWithout && !(creds._sharedCreds && typeof creds._sharedCreds === 'object')) {
    // Fail closed: without it, a connection could be served another name's certificate.
    throw new CertboundError('CB_ERR_TLS_CONTEXT', ['several server certificates', 'this Node version keeps no tls.Server._sharedCreds to start connections from']);
  }
  const tlsListeners = server.listeners('connection') as ((this: TlsServer, socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const stop = (): boolean => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      return true;
    };
    const refuse = (reason: HelloRefuseReason, detail: string) => {
      if (!stop()) return;
      options.onRefuse?.(socket, reason, detail);
      socket.destroy();
    };
    const handOver = (hello: ClientHelloInfo) => {
      if (!stop()) return;
      socket.pause();
      socket.unshift(Buffer.concat(chunks));
      hellos.set(socket, hello);
      const start = () => { for (const l of tlsListeners) l.call(server, socket); };
      const startWithout = typeof options.startWithout === 'function' ? options.startWithout() : options.startWithout;
      if (!startWithout || !hello.serverName) { start(); return; }
      // The TLSSocket takes its starting context from _sharedCreds synchronously in the listener.
      const own = creds._sharedCreds;
      creds._sharedCreds = startWithout;
      try {
        start();
      } finally {
        creds._sharedCreds = own;
      }
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const parsed = parseClientHello(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (parsed.status === 'ok') handOver(parsed.hello);
      else if (parsed.status === 'invalid') refuse(parsed.reason === 'too long' || parsed.reason === 'ClientHello too long' ? 'client-hello-too-long' : 'client-hello-invalid', parsed.reason);
      else if (size > MAX_CLIENT_HELLO_BYTES) refuse('client-hello-too-long', `more than ${MAX_CLIENT_HELLO_BYTES} bytes`);
    };
    const onEnd = () => refuse('client-hello-incomplete', 'the client ended the connection before its ClientHello was complete');
    const onError = (err: Error) => refuse('client-hello-incomplete', `socket error before the ClientHello was complete: ${err.message}`);
    const timer = setTimeout(() => refuse('client-hello-timeout', `no complete ClientHello within ${options.timeoutMs} ms`), options.timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    // A socket handed on by another reader (host routing) arrives paused, with its bytes put back.
    socket.resume();
  });
}
