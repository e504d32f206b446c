// A raw HTTP/1.1 GET over Node's tls client, for tests of session resumption.
import { connect, type SecureVersion, type TLSSocket } from 'node:tls';

export interface TlsAnswer { status: number; peer: string | undefined; body: string; reused: boolean; session: Buffer | undefined; connectionHeader: string | null; ended: boolean }

/**
 * One GET over a new TLS connection (Node's tls client, a client certificate when given),
 * resuming `session` when given: the status, body, whether the session was reused, the newest
 * session the server handed out, and whether the server closed the connection after answering.
 */
export function getOverTls(port: number, path: string, o: { version: SecureVersion; session?: Buffer; servername?: string; cert?: string; key?: string }): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connect({
      host: '127.0.0.1', port, servername: o.servername ?? 'localhost', rejectUnauthorized: false,
      ...(o.cert ? { cert: o.cert, key: o.key } : {}), minVersion: o.version, maxVersion: o.version, ...(o.session ? { session: o.session } : {}),
    });
    let session: Buffer | undefined;
    let peer: string | undefined;
    let data = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer to ${path}: ${data.slice(0, 200)}`)); }, 5000);
    socket.on('session', (s: Buffer) => { session = s; });
    socket.on('secureConnect', () => { peer = socket.getPeerX509Certificate()?.fingerprint256; socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`); });
    socket.setEncoding('utf8');
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      const [head = '', body = ''] = data.split('\r\n\r\n');
      const reused = socket.isSessionReused();
      socket.destroy();
      resolve({ peer, status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), body, reused, session, connectionHeader: /\r\nconnection: ([^\r]+)/i.exec(head)?.[1] ?? null, ended });
    };
    socket.on('data', (d: string) => {
      data += d;
      const [head, body] = data.split('\r\n\r\n');
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(head ?? '')?.[1] ?? NaN);
      // A refusal that closes: wait for the server's end (bounded by the timer); else done at the body's end.
      if (body !== undefined && body.length >= length && !/\r\nconnection: close/i.test(head ?? '')) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

