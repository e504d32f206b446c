// Per-host TLS policy decided from the ClientHello, before TLS starts: connections for the
// hosts that have on-demand routes go to a twin TLS server capped at TLS 1.2 and HTTP/1.1,
// where renegotiation exists; the rest keep TLS 1.3 and h2. (Node ignores maxVersion in
// SNI contexts, so the decision must be made on the raw socket: NODE-TLS-NOTES.md.)
import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello, type ClientHelloInfo } from './client-hello.js';

/** True when `name` (an SNI host name or null) matches `pattern`: exact, `*.domain` (one label), or `*` (every connection, with or without SNI). */
export function hostMatches(pattern: string, name: string | null): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  if (p === '*') return true;
  if (name === null) return false;
  const n = name.replace(/\.$/, '');
  if (p.startsWith('*.')) {
    const rest = p.slice(1);
    return n.endsWith(rest) && !n.slice(0, -rest.length).includes('.') && n.length > rest.length;
  }
  return n === p;
}

export interface HostRoutingOptions {
  /** Which server gets a connection. */
  decide: (hello: ClientHelloInfo) => 'main' | 'capped';
  /** Time limit (ms) for the ClientHello to arrive. */
  timeoutMs: number;
  /** Called for connections closed before TLS (bad or missing ClientHello). */
  onRefused?: (reason: string, socket: Socket) => void;
}

/**
 * Takes over `main`'s 'connection' event: reads the ClientHello (bounded in size and time),
 * puts the bytes back and hands the socket to `main`'s TLS layer or to `capped`.
 */
export function installHostRouting(main: TlsServer, capped: TlsServer, options: HostRoutingOptions): void {
  const tlsListeners = main.listeners('connection') as ((this: TlsServer, socket: Socket) => void)[];
  main.removeAllListeners('connection');
  main.on('connection', (socket: Socket) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const refuse = (reason: string) => {
      cleanup();
      options.onRefused?.(reason, socket);
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const buf = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      const parsed = parseClientHello(buf);
      if (parsed.status === 'incomplete') {
        if (size > MAX_CLIENT_HELLO_BYTES) refuse('ClientHello too long');
        return;
      }
      if (parsed.status === 'invalid') return refuse(parsed.reason);
      cleanup();
      socket.pause();
      socket.unshift(buf);
      if (options.decide(parsed.hello) === 'capped') capped.emit('connection', socket);
      else for (const l of tlsListeners) l.call(main, socket);
    };
    const onEnd = () => refuse('closed before the ClientHello');
    const timer = setTimeout(() => refuse('no ClientHello in time'), options.timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.on('error', () => cleanup());
  });
}
