// maxConnectionLifetime with real connections (a 300 ms lifetime): an idle HTTP/1.1 keep-alive
// connection is closed (main listener and the TLS 1.2 twin), a request in flight at the
// lifetime is answered with `Connection: close` and the connection ends after it, an HTTP/2
// session gets GOAWAY and its open stream still completes; without the option nothing closes.
// Past the lifetime no handler runs: requests pipelined behind a response still being sent
// (a big one the client does not read, a stream) are refused with 503 CB_ERR_CONNECTION_EXPIRED,
// and a response (or HTTP/2 stream) still unfinished after the grace (here 300 ms: the grace is
// at most the lifetime) is cut.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2Connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { devPki } from './helpers/pki.js';
import { drip, pipelineAfter, responseWithStatus } from './helpers/lifetime.js';
import { DEFAULTS } from '../src/defaults.js';
import type { TLSSocket } from 'node:tls';

const LIFETIME_MS = 300;
const GRACE_MS = Math.min(LIFETIME_MS, DEFAULTS.maxConnectionLifetimeGraceMs);
/** How late a cut may come on a loaded 2-core machine (the suite runs three files at a time); without the cut the connection stays open past every bound here. */
const SLACK_MS = 1500;
/** 32 MB: far more than loopback socket buffers hold, so that the response is still being sent at the lifetime. */
const BIG = Buffer.alloc(32 * 1024 * 1024, 0x61);

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
  let counted = 0;
  let bigClosed: Promise<number> | undefined;
  before(async () => {
    const pki = await devPki();
    server = createServer({
      cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'optional',
      logger: false, http2: true, onDemandHosts: ['twin.localhost'], maxConnectionLifetime: LIFETIME_MS,
    });
    server.app.get('/fast', async () => ({ ok: true }));
    server.app.get('/slow', async () => { await sleep(LIFETIME_MS + 150); return { ok: true }; });
    server.app.post('/count', async () => { counted += 1; return { ok: true }; });
    server.app.get('/big', async (request, reply) => {
      const socket = request.raw.socket as TLSSocket;
      bigClosed = new Promise((resolve) => socket.once('close', () => resolve(Date.now())));
      return reply.type('application/octet-stream').send(BIG);
    });
    server.app.get('/drip', async (request, reply) => reply.type('text/plain').send(drip(Number((request.query as { ms?: string }).ms ?? Infinity))));
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

  test('a big response the client does not read: POSTs pipelined after the lifetime run no handler; the connection is cut after the grace', async () => {
    const post = 'POST /count HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}';
    const started = Date.now();
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    s.on('error', () => {});
    await new Promise((r) => s.once('secureConnect', r));
    s.pause();
    s.write('GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await sleep(LIFETIME_MS + 100);
    const before = counted;
    s.write(post.repeat(5));
    const closedAt = await Promise.race([bigClosed ?? Promise.reject(new Error('/big not reached')), sleep(3000).then(() => -1)]);
    await sleep(50);
    s.destroy();
    assert.equal(counted, before, 'no /count handler ran after the lifetime');
    assert.ok(closedAt > 0, 'the server closed the connection');
    const after = closedAt - started;
    assert.ok(after >= LIFETIME_MS + GRACE_MS - 50 && after < LIFETIME_MS + GRACE_MS + SLACK_MS, `closed ${after} ms after connecting`);
  });

  test('a streaming response at the lifetime: a request pipelined after it gets 503 CB_ERR_CONNECTION_EXPIRED, not its handler', async () => {
    const before = counted;
    const r = await pipelineAfter(port, `GET /drip?ms=${LIFETIME_MS + 200} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
      'POST /count HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}', LIFETIME_MS + 100);
    assert.equal(counted, before);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    const refused = responseWithStatus(r.text, 503);
    assert.ok(refused, r.text.slice(-400));
    assert.equal(JSON.parse(refused.body).code, 'CB_ERR_CONNECTION_EXPIRED');
    assert.ok(r.closedAfterMs < LIFETIME_MS + GRACE_MS + SLACK_MS, `closed after ${r.closedAfterMs} ms`);
  });

  for (const servername of ['localhost', 'twin.localhost']) {
    test(`a never-ending streaming response (${servername}) is cut after the lifetime and the grace`, async () => {
      const r = await pipelineAfter(port, 'GET /drip HTTP/1.1\r\nHost: localhost\r\n\r\n', '', 0, servername);
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.ok(r.closedAfterMs >= LIFETIME_MS + GRACE_MS - 50 && r.closedAfterMs < LIFETIME_MS + GRACE_MS + SLACK_MS, `closed after ${r.closedAfterMs} ms`);
    });
  }

  test('HTTP/2: a stream kept open past GOAWAY is cut with the session after the grace', async () => {
    const session = h2Connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: 'localhost' });
    session.on('error', () => {});
    const started = Date.now();
    const stream = session.request({ ':path': '/drip' });
    stream.on('error', () => {});
    stream.resume();
    const closed = new Promise<number>((resolve) => session.once('close', () => resolve(Date.now() - started)));
    const after = await Promise.race([closed, sleep(3000).then(() => -1)]);
    session.destroy();
    assert.ok(after >= LIFETIME_MS + GRACE_MS - 50 && after < LIFETIME_MS + GRACE_MS + SLACK_MS, `closed after ${after} ms`);
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
