// Keeps the parsed ClientHello of each connection of a TLS server, for decisions Node's TLS
// layer gives no access to: which of an RSA and an ECDSA certificate a TLS 1.2 client can use
// depends on its cipher suites, which Node does not expose (server-material.ts reads them here).
// Reads at most MAX_CLIENT_HELLO_BYTES within `timeoutMs`, puts the bytes back and hands the
// socket on unchanged; whatever it cannot parse is left for the TLS layer to refuse.
import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello, type ClientHelloInfo } from './client-hello.js';

const hellos = new WeakMap<Socket, ClientHelloInfo>();

/** The ClientHello recorded for a raw socket (a TLSSocket's `_parent`), if any. */
export function clientHelloOf(socket: Socket): ClientHelloInfo | undefined {
  return hellos.get(socket);
}

/** Records the ClientHello of every connection `server` accepts from now on (before its TLS layer sees it). */
export function recordClientHellos(server: TlsServer, timeoutMs: number): void {
  const tlsListeners = server.listeners('connection') as ((this: TlsServer, socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const handOver = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', handOver);
      socket.pause();
      if (chunks.length > 0) socket.unshift(Buffer.concat(chunks));
      for (const l of tlsListeners) l.call(server, socket);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const parsed = parseClientHello(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (parsed.status === 'ok') hellos.set(socket, parsed.hello);
      if (parsed.status !== 'incomplete' || size > MAX_CLIENT_HELLO_BYTES) handOver();
    };
    const timer = setTimeout(handOver, timeoutMs);
    socket.on('data', onData);
    socket.once('end', handOver);
  });
}
