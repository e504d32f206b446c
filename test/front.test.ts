// The front (certbound serve --upstream, createServer's `upstream`): a node:http upstream that
// echoes what it received, certbound in front of it (a `serve --workers 2` process with on-demand
// and required paths behind the TLS 1.2 twin, and an in-process accept-untrusted server), curl
// and Node clients with the dev PKI's client certificates.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseItem, parseList } from 'structured-headers';
import { freePort, run } from './helpers/exec.js';
import { devPki } from './helpers/pki.js';
import { startServer, type Started } from './helpers/server.js';
import type { DevPkiPaths } from '../src/tls/dev-pki.js';
import { normalizePath, pathPolicy } from '../src/server/front-policy.js';
import { serveConfigOf } from '../src/server/cli.js';
import { isCertboundError } from '../src/errors.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'certbound.js');
// ws comes with @fastify/http-proxy (untyped here: no @types/ws).
interface WsSocket { on(e: string, f: (...a: never[]) => void): void; once(e: string, f: (...a: never[]) => void): void; send(d: string): void; close(): void }
const ws = createRequire(import.meta.url)('ws') as {
  WebSocketServer: new (o: { noServer: true }) => { handleUpgrade(req: unknown, socket: unknown, head: unknown, cb: (s: WsSocket) => void): void };
  WebSocket: new (url: string, o: Record<string, unknown>) => WsSocket;
};

interface Seen { method: string; url: string; headers: IncomingHttpHeaders; bytes: number; sha256: string }

let pki: DevPkiPaths;
let upstream: HttpServer;
let upPort: number;
const seen: Seen[] = [];
let front: Started; // in-process, accept-untrusted
let cli: ChildProcess;
let cliPort: number;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const der = (pemFile: string) => new X509Certificate(readFileSync(pemFile)).raw;

before(async () => {
  pki = await devPki();
  const wss = new ws.WebSocketServer({ noServer: true });
  upstream = createHttpServer((req, res) => {
    if (req.url?.startsWith('/slow')) {
      const t = setTimeout(() => res.end('late'), 3000);
      res.on('close', () => clearTimeout(t));
      return;
    }
    const big = /^\/big\?n=(\d+)$/.exec(req.url ?? '');
    const h = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => { h.update(c); bytes += c.length; });
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes, sha256: h.digest('hex') };
      seen.push(s);
      if (big) {
        // Several MiB in 64 KiB chunks, with the hash of what was sent in a trailer-free header.
        const n = Number(big[1]);
        const chunk = Buffer.alloc(65536, 0x61);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-sent-sha256': sha256(Buffer.alloc(n, 0x61)) });
        let left = n;
        const pump = () => {
          while (left > 0) {
            const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= part.length;
            if (!res.write(part)) return void res.once('drain', pump);
          }
          res.end();
        };
        return pump();
      }
      res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive, x-upstream-private', 'x-upstream-private': 'hop', 'keep-alive': 'timeout=5' });
      res.end(JSON.stringify(s));
    });
  });
  upstream.on('upgrade', (req, socket, head) => {
    seen.push({ method: 'UPGRADE', url: req.url ?? '', headers: req.headers, bytes: 0, sha256: '' });
    wss.handleUpgrade(req, socket, head, (s) => s.on('message', (d: Buffer) => s.send(`echo:${d.toString()}`)));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upPort = (upstream.address() as { port: number }).port;

  front = await startServer(undefined, 'accept-untrusted', {
    upstream: { url: `http://127.0.0.1:${upPort}`, timeout: 800 },
    mapper: { manyToOne: [{ name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'dev-user' }] },
  });

  cliPort = await freePort();
  cli = spawn(process.execPath, [BIN, 'serve', '--workers', '2', '--port', String(cliPort), '--host', '127.0.0.1', '--ocsp', 'off', '--log-level', 'warn',
    '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--client-auth', 'none', '--on-demand-host', 'localhost',
    '--upstream', `http://127.0.0.1:${upPort}`, '--on-demand-path', '/admin/', '--require-path', '/secure/**', '--require-path', '/api/**/private', '--upstream-timeout', '800'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`serve did not start: ${out}`)), 15_000);
    const on = (d: Buffer) => { out += d.toString(); if (/worker processes/.test(out)) { clearTimeout(timer); ok(); } };
    cli.stdout?.on('data', on);
    cli.stderr?.on('data', on);
    cli.once('exit', (c) => fail(new Error(`serve exited ${c}: ${out}`)));
  });
});

after(async () => {
  cli?.kill('SIGTERM');
  await front?.server.close();
  upstream?.closeAllConnections();
  await new Promise((r) => upstream?.close(r));
});

interface Reply { status: number; headers: IncomingHttpHeaders; body: Buffer }

/** One request over a fresh TLS connection; `holdBody`: the headers only, the answer awaited before any body byte. */
function ask(port: number, path: string, o: { cert?: string; key?: string; method?: string; headers?: Record<string, string | string[]>; body?: Buffer; holdBody?: boolean; servername?: string; maxVersion?: 'TLSv1.2' } = {}): Promise<Reply> {
  return new Promise((ok, fail) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path, method: o.method ?? 'GET', agent: false, ca: readFileSync(pki.rootCa),
      ...(o.servername ? { servername: o.servername } : {}),
      ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
      ...(o.cert ? { cert: readFileSync(o.cert), key: readFileSync(o.key ?? '') } : {}),
      headers: o.headers ?? {},
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        ok({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        if (o.holdBody) req.destroy();
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    if (o.holdBody) req.flushHeaders();
    else req.end(o.body);
  });
}
const json = (r: Reply) => JSON.parse(r.body.toString()) as Seen;

const FORGED = {
  'Client-Cert': ':AAAA:',
  'client-cert-chain': ':AAAA:',
  'CLIENT_CERT': ':AAAA:',
  'Certbound-Client-Cert-Flags': 'OK',
  'certbound-client-identity': '"admin"',
  'Certbound-Connection-Id': '999999',
  'Certbound-Anything': 'x',
  'X-Forwarded-For': '10.9.9.9',
  'X-Forwarded-Proto': 'http',
  'X-Forwarded-Host': 'evil.example',
  Forwarded: 'for=10.9.9.9',
};

/** Other proxies' certificate, address and path-override headers (FOREIGN_HEADERS), in several spellings. */
const FOREIGN = {
  'X-Forwarded-Client-Cert': 'Hash=abc;Subject="CN=admin"',
  'X-SSL-Client-Cert': 'forged',
  'x_ssl_client_verify': 'SUCCESS',
  'X-ARR-ClientCert': 'forged',
  'X-Client-Cert': 'forged',
  'SSL_Client_Cert': 'forged',
  'X-Original-URL': '/admin/',
  'X-REWRITE-URL': '/admin/',
  'X-Forwarded-Prefix': '/admin',
  'X-Forwarded-Ssl': 'on',
  'X_Forwarded_Scheme': 'https',
  'X-Client-IP': '10.1.1.1',
  'True-Client-IP': '10.1.1.1',
  'CF-Connecting-IP': '10.1.1.1',
};
const FOREIGN_SEEN = ['x-forwarded-client-cert', 'x-ssl-client-cert', 'x_ssl_client_verify', 'x-arr-clientcert', 'x-client-cert', 'ssl_client_cert', 'x-original-url',
  'x-rewrite-url', 'x-forwarded-prefix', 'x-forwarded-ssl', 'x_forwarded_scheme', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip'];

test('the upstream gets the client certificate byte for byte (RFC 9440), the verdict headers, and none of the forged ones', async () => {
  const r = await ask(front.port, '/api/x?q=1', { cert: pki.client, key: pki.clientKey, headers: { ...FORGED, 'client-cert': [':AAAA:', ':BBBB:'] } });
  assert.equal(r.status, 200);
  const s = json(r);
  assert.equal(s.url, '/api/x?q=1');
  const leaf = parseItem(s.headers['client-cert'] as string)[0] as ArrayBuffer;
  assert.ok(Buffer.from(leaf).equals(der(pki.client)), 'Client-Cert is the DER of client.pem');
  const chain = parseList(s.headers['client-cert-chain'] as string).map((i) => Buffer.from(i[0] as ArrayBuffer));
  assert.ok(chain[0]?.equals(der(pki.clientCa)), 'Client-Cert-Chain starts with the issuing CA');
  assert.ok(!chain.some((c) => c.equals(der(pki.client))), 'the leaf is not in the chain');
  assert.equal(s.headers['certbound-client-cert-flags'], 'OK');
  assert.match(s.headers['certbound-connection-id'] as string, /^\d+$/);
  assert.notEqual(s.headers['certbound-connection-id'], '999999');
  assert.equal(s.headers['certbound-client-identity'], '"dev-user"', 'the mapped identity, as a structured-field string');
  assert.equal(s.headers['certbound-anything'], undefined);
  assert.equal(s.headers.client_cert, undefined);
  assert.equal(s.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(s.headers['x-forwarded-proto'], 'https');
  assert.equal(s.headers['x-forwarded-host'], `127.0.0.1:${front.port}`);
  assert.equal(s.headers.forwarded, `for=127.0.0.1;proto=https;host="127.0.0.1:${front.port}"`);
});

test('forged certificate headers never reach the upstream: no certificate, an untrusted one, an expired one', async () => {
  const cases: [string | undefined, string | undefined, string][] = [
    [undefined, undefined, 'NO_CERTIFICATE'],
    [pki.clientUntrusted, pki.clientUntrustedKey, 'CERT_E_UNTRUSTEDCA'],
    [pki.clientExpired, pki.clientExpiredKey, 'CERT_E_EXPIRED'],
  ];
  for (const [cert, key, flags] of cases) {
    const r = await ask(front.port, '/api/forged', { ...(cert ? { cert, key } : {}), headers: { ...FORGED, ...FOREIGN, 'X-Kept': 'yes' } });
    assert.equal(r.status, 200);
    const h = json(r).headers;
    assert.deepEqual(FOREIGN_SEEN.filter((n) => h[n] !== undefined), [], flags);
    assert.equal(h['x-kept'], 'yes');
    assert.equal(h['client-cert'], undefined, flags);
    assert.equal(h['client-cert-chain'], undefined, flags);
    assert.equal(h.client_cert, undefined, flags);
    assert.equal(h['certbound-client-identity'], undefined, flags);
    assert.equal(h['certbound-client-cert-flags'], flags);
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h.forwarded, `for=127.0.0.1;proto=https;host="127.0.0.1:${front.port}"`);
  }
});

test('hop-by-hop headers and those named in Connection are removed both ways', async () => {
  const r = await ask(front.port, '/api/hop', { headers: { Connection: 'keep-alive, X-Private', 'X-Private': 'secret', 'Keep-Alive': 'timeout=9', 'Proxy-Authorization': 'Basic eA==', TE: 'trailers', 'X-Kept': 'yes' } });
  const h = json(r).headers;
  assert.equal(h['x-private'], undefined);
  assert.equal(h['keep-alive'], undefined);
  assert.equal(h['proxy-authorization'], undefined);
  assert.equal(h.te, undefined);
  assert.equal(h['x-kept'], 'yes');
  // Downstream: the upstream's Connection-named header and Keep-Alive do not come back.
  assert.equal(r.headers['x-upstream-private'], undefined);
  assert.notEqual(r.headers['keep-alive'], 'timeout=5');
});

test('several MiB stream both ways unchanged', async () => {
  const body = Buffer.alloc(6 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
  const up = await ask(front.port, '/api/upload', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(up.status, 200);
  assert.equal(json(up).bytes, body.length);
  assert.equal(json(up).sha256, sha256(body));
  const n = 5 * 1024 * 1024 + 17;
  const down = await ask(front.port, `/big?n=${n}`);
  assert.equal(down.status, 200);
  assert.equal(down.body.length, n);
  assert.equal(sha256(down.body), down.headers['x-sent-sha256']);
});

test('a slow upstream gives 504 CB_ERR_UPSTREAM_TIMEOUT within the timeout; a down one 502 CB_ERR_UPSTREAM_UNAVAILABLE at once', async () => {
  let t0 = Date.now();
  const slow = await ask(front.port, '/slow');
  assert.equal(slow.status, 504);
  assert.equal((JSON.parse(slow.body.toString()) as { code: string }).code, 'CB_ERR_UPSTREAM_TIMEOUT');
  assert.ok(Date.now() - t0 < 2500, `504 after ${Date.now() - t0} ms`);
  const down = await startServer(undefined, 'optional', { upstream: { url: `http://127.0.0.1:${await freePort()}` } });
  try {
    t0 = Date.now();
    const r = await ask(down.port, '/anything', { cert: pki.client, key: pki.clientKey });
    assert.equal(r.status, 502);
    const b = JSON.parse(r.body.toString()) as Record<string, unknown>;
    assert.deepEqual(b, { statusCode: 502, code: 'CB_ERR_UPSTREAM_UNAVAILABLE', error: 'Bad Gateway', message: 'The upstream could not be reached or broke off its answer (ECONNREFUSED)' });
    assert.ok(Date.now() - t0 < 1500, `502 after ${Date.now() - t0} ms`);
  } finally {
    await down.server.close();
  }
});

test('reference routes keep precedence; other methods on / go upstream', async () => {
  const conn = await ask(front.port, '/connection');
  assert.ok('protocol' in (JSON.parse(conn.body.toString()) as object));
  const post = await ask(front.port, '/', { method: 'POST' });
  assert.equal(json(post).method, 'POST');
});

/** A WebSocket over the front: the upgrade headers the upstream saw, and one echoed message. */
async function wsEcho(port: number, o: { path?: string; servername?: string; cert?: string; key?: string; headers?: Record<string, string>; maxVersion?: 'TLSv1.2' }): Promise<{ echo: string; headers: IncomingHttpHeaders }> {
  const before = seen.length;
  const sock = new ws.WebSocket(`wss://127.0.0.1:${port}${o.path ?? '/ws/chat'}`, {
    ca: readFileSync(pki.rootCa), ...(o.servername ? { servername: o.servername } : {}), ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
    ...(o.cert ? { cert: readFileSync(o.cert), key: readFileSync(o.key ?? '') } : {}), headers: o.headers ?? {},
  });
  const echo = await new Promise<string>((ok, fail) => {
    const t = setTimeout(() => fail(new Error('no echo')), 5000);
    sock.once('open', () => sock.send('hi'));
    sock.once('message', (d: Buffer) => { clearTimeout(t); ok(d.toString()); });
    sock.once('error', (e: Error) => { clearTimeout(t); fail(e); });
    sock.once('unexpected-response', (_req: unknown, res: { statusCode: number }) => { clearTimeout(t); fail(new Error(`upgrade answered ${res.statusCode}`)); });
  });
  sock.close();
  const up = seen.slice(before).find((s) => s.method === 'UPGRADE');
  assert.ok(up, 'the upstream saw the upgrade');
  return { echo, headers: up.headers };
}

test('WebSocket echo through the front, with the certificate headers on the upgrade and forged ones removed', async () => {
  const r = await wsEcho(front.port, { cert: pki.client, key: pki.clientKey, headers: { 'Client-Cert': ':AAAA:', 'X-Forwarded-For': '10.9.9.9' } });
  assert.equal(r.echo, 'echo:hi');
  assert.ok(Buffer.from(parseItem(r.headers['client-cert'] as string)[0] as ArrayBuffer).equals(der(pki.client)));
  assert.equal(r.headers['certbound-client-cert-flags'], 'OK');
  assert.equal(r.headers['x-forwarded-for'], '127.0.0.1');
  const none = await wsEcho(front.port, { headers: { 'Client-Cert': ':AAAA:', ...FOREIGN } });
  assert.equal(none.headers['client-cert'], undefined);
  assert.deepEqual(FOREIGN_SEEN.filter((n) => none.headers[n] !== undefined), []);
  assert.equal(none.headers['certbound-client-cert-flags'], 'NO_CERTIFICATE');
});

test('serve --workers 2: an on-demand path renegotiates (TLS 1.2 twin) before the upstream is called; without a certificate the upstream never sees it', async () => {
  const before = seen.length;
  // curl, TLS 1.2, certificate configured: the handshake asks for none (--client-auth none), the path does.
  const c = await run('curl', ['-sS', '--tls-max', '1.2', '--cacert', pki.rootCa, '--cert', pki.client, '--key', pki.clientKey,
    '--resolve', `localhost:${cliPort}:127.0.0.1`, '-X', 'POST', '--data-binary', 'body-before-renegotiation', `https://localhost:${cliPort}/admin/report`], { timeoutMs: 10_000 });
  const s = JSON.parse(c.stdout) as Seen;
  assert.equal(s.url, '/admin/report');
  assert.equal(s.sha256, sha256(Buffer.from('body-before-renegotiation')));
  assert.ok(Buffer.from(parseItem(s.headers['client-cert'] as string)[0] as ArrayBuffer).equals(der(pki.client)));
  // Encoded, doubled-slash and upper-case spellings of the path are the same path.
  for (const p of ['/admin/x', '/%61dmin/x', '//admin/x', '/ADMIN/x', '/x/../admin/x']) {
    const r = await ask(cliPort, p, { servername: 'localhost' });
    assert.equal(r.status, 403, p);
    assert.equal((JSON.parse(r.body.toString()) as { code: string }).code, 'CB_ERR_CLIENT_CERT_REQUIRED', p);
  }
  // A required path: 403 without an authorized certificate, whatever was forged.
  const req = await ask(cliPort, '/secure/a/b', { headers: FORGED });
  assert.equal((JSON.parse(req.body.toString()) as { code: string }).code, 'CB_ERR_CLIENT_CERT_REQUIRED');
  // A body over the limit on an on-demand path: 413 before any renegotiation, and the connection closes.
  const big = await ask(cliPort, '/admin/upload', { method: 'POST', servername: 'localhost', holdBody: true, headers: { 'content-type': 'application/octet-stream', 'content-length': String(2 * 1024 * 1024) } });
  assert.equal(big.status, 413);
  assert.equal((JSON.parse(big.body.toString()) as { code: string }).code, 'CB_ERR_BODY_TOO_LARGE');
  assert.equal(big.headers.connection, 'close');
  const urls = seen.slice(before).map((x) => x.url);
  assert.deepEqual(urls, ['/admin/report'], 'the upstream saw only the request that came with the certificate');
  // Other paths follow --client-auth none: proxied, no certificate.
  const open = await ask(cliPort, '/public', { cert: pki.client, key: pki.clientKey });
  assert.equal(json(open).headers['certbound-client-cert-flags'], 'NO_CERTIFICATE');
  // WebSocket on the TLS 1.2 twin (SNI localhost).
  const w = await wsEcho(cliPort, { servername: 'localhost' });
  assert.equal(w.echo, 'echo:hi');
  // A WebSocket on an on-demand path renegotiates too, then carries the certificate upstream.
  const od = await wsEcho(cliPort, { path: '/admin/ws', servername: 'localhost', cert: pki.client, key: pki.clientKey });
  assert.equal(od.echo, 'echo:hi');
  assert.ok(Buffer.from(parseItem(od.headers['client-cert'] as string)[0] as ArrayBuffer).equals(der(pki.client)));
  // Without a certificate the upgrade is refused before the upstream hears of it.
  const n = seen.length;
  await assert.rejects(wsEcho(cliPort, { path: '/admin/ws', servername: 'localhost' }), /upgrade answered 403/);
  await assert.rejects(wsEcho(cliPort, { path: '/secure/ws', headers: FORGED }), /upgrade answered 403/);
  assert.equal(seen.length, n);
});

test('serve: double-encoded dot segments, `;` dot segments and trailing slashes never reach the upstream without a certificate (HTTP and WebSocket)', async () => {
  const before = seen.length;
  const protectedPaths = ['/admin/%252e%252e', '/admin/x%252f..%252f..', '/admin/x%255c..%255c..', '/admin/%25252e%25252e', '/admin/..;x', '/%2561dmin/%25ZZ',
    '/api/v1/private/', '/api/v1/private%2f', '/api/private', '/api/v1/private.json', '/secure'];
  for (const p of protectedPaths) {
    const r = await ask(cliPort, p, { servername: 'localhost' });
    assert.equal(r.status, 403, p);
    assert.equal((JSON.parse(r.body.toString()) as { code: string }).code, 'CB_ERR_CLIENT_CERT_REQUIRED', p);
  }
  for (const p of ['/admin/%252e%252e', '/admin/..;x', '/api/v1/private/']) {
    await assert.rejects(wsEcho(cliPort, { path: p, servername: 'localhost' }), /upgrade answered 403/, p);
  }
  assert.deepEqual(seen.slice(before).map((x) => x.url), [], 'the upstream saw none of them');
  // With the certificate the on-demand spelling goes through unchanged; neighbours stay open.
  const ok = await ask(cliPort, '/admin/%252e%252e', { servername: 'localhost', cert: pki.client, key: pki.clientKey, maxVersion: 'TLSv1.2' });
  assert.equal(json(ok).url, '/admin/%252e%252e');
  for (const p of ['/administrator', '/api/v1/public']) assert.equal(json(await ask(cliPort, p)).url, p);
});

test('an https upstream: verified against --upstream-ca, with certbound\'s own client certificate on that leg', async () => {
  const { createServer: createHttpsServer } = await import('node:https');
  let peer: string | undefined;
  const secure = createHttpsServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN as string | undefined;
    res.end(JSON.stringify({ clientCert: req.headers['client-cert'] ?? null }));
  });
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  const port = (secure.address() as { port: number }).port;
  const viaTls = await startServer(undefined, 'optional', { upstream: { url: `https://127.0.0.1:${port}`, ca: readFileSync(pki.rootCa), cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) } });
  const noCa = await startServer(undefined, 'optional', { upstream: { url: `https://127.0.0.1:${port}` } });
  try {
    const r = await ask(viaTls.port, '/x', { cert: pki.client, key: pki.clientKey });
    assert.equal(r.status, 200);
    assert.equal(peer, 'dev-client', 'certbound presented its upstream certificate');
    assert.ok(Buffer.from(parseItem((JSON.parse(r.body.toString()) as { clientCert: string }).clientCert)[0] as ArrayBuffer).equals(der(pki.client)));
    // Without the CA the upstream's certificate does not verify: 502, nothing sent.
    const bad = await ask(noCa.port, '/x', { cert: pki.client, key: pki.clientKey });
    assert.equal(bad.status, 502);
    assert.equal((JSON.parse(bad.body.toString()) as { code: string }).code, 'CB_ERR_UPSTREAM_UNAVAILABLE');
  } finally {
    await viaTls.server.close();
    await noCa.server.close();
    secure.closeAllConnections();
    secure.close();
  }
});

test('path policy: prefixes and globs on the normalized path', () => {
  assert.equal(normalizePath('/%2561dmin//x/./y/../z;jsessionid=1?q'), '/admin/x/z');
  assert.equal(normalizePath('http://evil.example/Admin/x'), '/admin/x');
  assert.equal(normalizePath('/x/..%2fadmin\\y'), '/admin/y');
  const p = pathPolicy(['/admin/', '/api/*/private', '/**/secret'], ['/secure']);
  assert.ok(p);
  const table: [string, 'on-demand' | 'required' | 'default'][] = [
    ['/admin', 'on-demand'], ['/administrator', 'default'], ['/api/v1/private', 'on-demand'], ['/api/v1/x/private', 'default'],
    ['/a/b/secret', 'on-demand'], ['/secure/x', 'required'], ['/SECURE', 'required'], ['/securex', 'default'],
  ];
  for (const [url, want] of table) assert.equal(p(url), want, url);
});

test('path policy: every spelling a backend may read is judged, the strictest wins (table of the outside attack on issue 15)', () => {
  const p = pathPolicy(['/admin/'], ['/api/**/private', '/**/secret', '/files/*.pdf']);
  assert.ok(p);
  const table: [string, 'on-demand' | 'required' | 'default'][] = [
    // Dot segments encoded twice or more, after an encoded slash or backslash, with ;params (finding 1).
    ['/admin/%252e%252e', 'on-demand'], ['/admin/x%252f..%252f..', 'on-demand'], ['/admin/x%255c..%255c..', 'on-demand'],
    ['/admin/%25252e%25252e', 'on-demand'], ['/admin/files/payroll.csv/%252e%252e/%252e%252e', 'on-demand'], ['/admin/..;x', 'on-demand'],
    ['/admin/%2e%2e', 'on-demand'], ['/admin/..', 'on-demand'], ['/admin\\..\\', 'on-demand'], ['/x/../admin/', 'on-demand'], ['/x/..%2fadmin', 'on-demand'],
    // Globs: trailing slash, encoded slash, zero segments for /**/, format suffix, what is under (finding 2).
    ['/api/v1/private/', 'required'], ['/api/v1/private%2f', 'required'], ['/api/private', 'required'], ['/api/v1/private.json', 'required'],
    ['/api/a/b/private/x', 'required'], ['/secret', 'required'], ['/x/secret/', 'required'], ['/files/a.pdf/', 'required'], ['/files/a.PDF', 'required'],
    // A decode error does not stop the other escapes; four rounds; still encoded after that; NUL and control characters; trailing dots and spaces (finding 3).
    ['/%2561dmin/%25ZZ', 'on-demand'], ['/%25252561dmin/', 'on-demand'], ['/%252525252561dmin/', 'on-demand'], ['/pub%2525252525', 'on-demand'],
    ['/admin%00', 'on-demand'], ['/public%00', 'on-demand'], ['/public%0a', 'on-demand'], ['/admin%20/', 'on-demand'], ['/admin%09/', 'on-demand'], ['/admin./', 'on-demand'],
    ['/x/%c0%ae%c0%ae/admin', 'on-demand'], ['/x/%u002e%u002e/admin', 'on-demand'], ['http://evil.example/ADMIN/x', 'on-demand'], ['//admin', 'on-demand'], ['/admin;jsessionid=1', 'on-demand'],
    // Neighbours stay open.
    ['/public', 'default'], ['/administrator', 'default'], ['/api/v1/public', 'default'], ['/api/v1/privatex', 'default'], ['/', 'default'],
    ['/adminx/..', 'default'], ['/%2e%2e/public', 'default'], ['/secrets', 'default'], ['/files/a.pdfx', 'default'], ['/public%2520x', 'default'], ['/public?/admin/', 'default'],
  ];
  // `#` read as a fragment and as a character; a long path with something to fold is not read one way after another.
  table.push(['/public#/../admin', 'on-demand'], ['/admin#x', 'on-demand'], [`/public/${'a.'.repeat(1100)}`, 'on-demand'], [`/public/${'a'.repeat(3000)}`, 'default'], [`/public/${'a.'.repeat(1000)}`, 'default']);
  const wrong = table.filter(([url, want]) => p(url) !== want).map(([url, want]) => `${url}: ${p(url)}, expected ${want}`);
  assert.deepEqual(wrong, []);
  // Only required patterns: the strictest for a suspect path is required.
  const rq = pathPolicy([], ['/secure']);
  assert.equal(rq?.('/x%00'), 'required');
  assert.equal(rq?.('/x'), 'default');
});

test('serve flags of the front: refused when they would be ignored or cannot work (CB_ERR_INVALID_OPTION naming the flag)', () => {
  const bad: [string[], RegExp][] = [
    [['--upstream', 'ftp://127.0.0.1:21'], /--upstream: "ftp:\/\/127.0.0.1:21": only http:\/\/ and https:\/\/ upstreams/],
    [['--upstream', 'http://127.0.0.1:8080/app'], /--upstream: .*an origin only/],
    [['--upstream-ca', 'ca.pem'], /--upstream-ca: needs --upstream/],
    [['--on-demand-path', '/admin/'], /--on-demand-path: needs --upstream/],
    [['--upstream', 'http://127.0.0.1:8080', '--upstream-cert', 'c.pem', '--upstream-key', 'k.pem'], /--upstream-cert: is for an https:\/\/ --upstream/],
    [['--upstream', 'https://127.0.0.1:8443', '--upstream-cert', 'c.pem'], /--upstream-cert: --upstream-cert and --upstream-key go together/],
    [['--upstream', 'http://127.0.0.1:8080', '--require-path', 'admin'], /--require-path: "admin": a path prefix or glob starting with \//],
    [['--upstream', 'http://127.0.0.1:8080', '--on-demand-path', '/a/../b'], /--on-demand-path: .*no query, fragment, backslash or dot segment/],
  ];
  for (const [args, message] of bad) {
    assert.throws(() => serveConfigOf(args), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && message.test(err.message), args.join(' '));
  }
  const ok = serveConfigOf(['--upstream', 'https://127.0.0.1:8443', '--upstream-ca', 'ca.pem', '--on-demand-path', '/admin/', '--on-demand-path', '/**/private']);
  assert.deepEqual([ok.upstream, ok.upstreamCa, ok.onDemandPaths, ok.upstreamTimeout, ok.upstreamConnectTimeout], ['https://127.0.0.1:8443', ['ca.pem'], ['/admin/', '/**/private'], 60_000, 5_000]);
});
