// maxConnectionLifetime with real connections (a 300 ms lifetime): an idle HTTP/1.1 keep-alive
// connection is closed (main listener and the TLS 1.2 twin), a request in flight at the
// lifetime is answered with `Connection: close` and the connection ends after it, an HTTP/2
// session gets GOAWAY and its open stream still completes; without the option nothing closes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2Connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { devPki } from './helpers/pki.js';

const LIFETIME_MS = 300;

/** Opens an HTTP/1.1 keep-alive connection, sends `paths` one after the other; resolves with the answers' heads and when the server ended the connection (ms after connecting). */
function http1(port: number, paths: string[], servername = 'localhost'): Promise<{ heads: string[]; endedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const heads: string[] = [];
    let buf = '';
    const next = () => {
      const p = paths.shift();
      if (p) s.write(`GET ${p} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    };
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`not closed by the server: ${heads.join(' | ')}`)); }, 3000);
    s.setEncoding('utf8');
    s.on('secureConnect', next);
    s.on('data', (d: string) => {
      buf += d;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        heads.push(buf.slice(0, end));
        buf = buf.slice(end + 4 + length);
        next();
      }
    });
    s.on('close', () => { clearTimeout(timer); resolve({ heads, endedAfterMs: Date.now() - started }); });
    s.on('error', () => {});
  });
}

describe('maxConnectionLifetime: 300 ms', { concurrency: true }, () => {
  let server: CertboundServer;
  let port: number;
  before(async () => {
    const pki = await devPki();
    server = createServer({
      cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'optional',
      logger: false, http2: true, onDemandHosts: ['twin.localhost'], maxConnectionLifetime: LIFETIME_MS,
    });
    server.app.get('/fast', async () => ({ ok: true }));
    server.app.get('/slow', async () => { await sleep(LIFETIME_MS + 150); return { ok: true }; });
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  });
  after(() => server.close());

  for (const servername of ['localhost', 'twin.localhost']) {
    test(`an idle HTTP/1.1 keep-alive connection (${servername}) is closed at the lifetime`, async () => {
      const r = await http1(port, ['/fast'], servername);
      assert.equal(r.heads.length, 1);
      assert.match(r.heads[0] as string, /^HTTP\/1\.1 200/);
      assert.match(r.heads[0] as string, /\r\nconnection: keep-alive/i);
      assert.ok(r.endedAfterMs >= LIFETIME_MS - 20 && r.endedAfterMs < LIFETIME_MS + 1500, `closed after ${r.endedAfterMs} ms`);
    });
  }

  test('a request in flight at the lifetime is answered with Connection: close, then the connection ends (the next request is not served)', async () => {
    const r = await http1(port, ['/slow', '/fast']);
    assert.equal(r.heads.length, 1, r.heads.join(' | '));
    assert.match(r.heads[0] as string, /^HTTP\/1\.1 200/);
    assert.match(r.heads[0] as string, /\r\nconnection: close/i);
  });

  test('HTTP/2: GOAWAY at the lifetime; the stream in flight completes', async () => {
    const session = h2Connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: 'localhost' });
    session.on('error', () => {});
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    const started = Date.now();
    const stream = session.request({ ':path': '/slow' });
    const status = await new Promise<number>((resolve, reject) => {
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('error', reject);
    });
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => { body += d; });
    await new Promise((r) => stream.on('end', r));
    const code = await Promise.race([goaway, sleep(2000).then(() => -1)]);
    session.close();
    assert.deepEqual([status, body, code], [200, '{"ok":true}', 0]);
    assert.ok(Date.now() - started >= LIFETIME_MS);
  });

  test('without maxConnectionLifetime an idle keep-alive connection stays open past 300 ms', async (t) => {
    const pki = await devPki();
    const server = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), logger: false });
    server.app.get('/fast', async () => ({ ok: true }));
    t.after(() => server.close());
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
    s.on('error', () => {});
    await new Promise((r) => s.once('secureConnect', r));
    s.write('GET /fast HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await new Promise((r) => s.once('data', r));
    await sleep(LIFETIME_MS + 200);
    assert.equal(s.destroyed || s.readableEnded, false);
    s.destroy();
  });
});
