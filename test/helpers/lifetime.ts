// Raw HTTP/1.1 over TLS for maxConnectionLifetime tests: one request, then more pipelined on the
// same connection after a delay (past the lifetime), everything the server sends read until it
// closes the connection (bounded in time).
import { connect as tlsConnect } from 'node:tls';
import { Readable } from 'node:stream';

/** Sends `first` once connected, then `later` `delayMs` after that; resolves with all bytes received (latin1) and when the server closed (ms after connecting). */
export function pipelineAfter(port: number, first: string, later: string, delayMs: number, servername = 'localhost', limitMs = 4000): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const chunks: Buffer[] = [];
    const limit = setTimeout(() => { s.destroy(); reject(new Error('the server did not close the connection')); }, limitMs);
    let later_: NodeJS.Timeout | undefined;
    s.on('secureConnect', () => {
      s.write(first);
      later_ = setTimeout(() => { if (!s.destroyed && later) s.write(later); }, delayMs);
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', () => { clearTimeout(limit); clearTimeout(later_); resolve({ text: Buffer.concat(chunks).toString('latin1'), closedAfterMs: Date.now() - started }); });
    s.on('error', () => {});
  });
}

/** The status and body of the first response in `text` whose status line is `HTTP/1.1 <status>` (a Content-Length body). */
export function responseWithStatus(text: string, status: number): { status: number; body: string } | undefined {
  const at = text.indexOf(`HTTP/1.1 ${status} `);
  if (at < 0) return undefined;
  const end = text.indexOf('\r\n\r\n', at);
  const length = Number(/\r\ncontent-length: (\d+)/i.exec(text.slice(at, end))?.[1] ?? 0);
  return { status, body: text.slice(end + 4, end + 4 + length) };
}

/** A response body that sends a line every 50 ms for `ms` (Infinity: forever), until the response is destroyed. */
export function drip(ms: number): Readable {
  const started = Date.now();
  const body: Readable = new Readable({
    read() {},
    destroy(err, cb) { clearInterval(timer); cb(err); },
  });
  const timer = setInterval(() => {
    if (Date.now() - started >= ms) {
      clearInterval(timer);
      body.push(null);
    } else {
      body.push('tick\n');
    }
  }, 50);
  return body;
}
