// The plugin as fastify users expect it, on one real TLS server in `require` mode: refusals go
// through fastify's error handling (@fastify/error, CB_ERR_* code and statusCode), the default
// answer keeps certbound's JSON body and closes the connection, an app's error handler never
// lets a refused request through, and every log line of a request (fastify's 'incoming
// request' included) carries the connection id and openssl's SHA-1 thumbprint of the client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { certboundPlugin } from '../src/server/plugin.js';
import { isCertboundError } from '../src/errors.js';
import { CertStatus } from '../src/status.js';
import type { DevPkiPaths } from '../src/tls/dev-pki.js';
import { devPki } from './helpers/pki.js';
import { run } from './helpers/exec.js';

let pki: DevPkiPaths;
let app: FastifyInstance;
let port: number;
const rawLines: string[] = [];
const handled: Array<{ code: unknown; statusCode: unknown; certFlagsName: unknown; certbound: boolean }> = [];
let customRan = 0;

before(async () => {
  pki = await devPki();
  app = Fastify({
    logger: { level: 'info', stream: { write: (line: string) => { rawLines.push(line); } } },
    https: { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), requestCert: true, rejectUnauthorized: false },
  });
  await app.register(certboundPlugin, { clientAuth: 'require' });
  app.get('/id', async (request) => ({ id: request.connectionId }));
  // An encapsulated part of the app with its own error handler, which answers 200.
  await app.register(async (child) => {
    child.setErrorHandler((error: { code?: unknown; statusCode?: unknown; certFlagsName?: unknown }, _request, reply) => {
      handled.push({ code: error.code, statusCode: error.statusCode, certFlagsName: error.certFlagsName, certbound: isCertboundError(error) });
      return reply.code(200).send({ custom: true });
    });
    child.get('/custom', async () => { customRan++; return 'the handler ran'; });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
});
after(() => app?.close());

interface RawExchange { responses: Array<{ status: number; headers: Record<string, string>; body: string }>; ended: boolean }

/**
 * Two pipelined GETs on one real TLS connection; reads until the server ends it, or until both
 * are answered (`ended` false then), within 5 s.
 */
function pipelined(path: string, creds?: { cert: string; key: string }, to = port, request = `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: to, servername: 'localhost', ca: readFileSync(pki.rootCa), ...(creds ? { cert: readFileSync(creds.cert), key: readFileSync(creds.key) } : {}) });
    let data = '';
    const timer = setTimeout(() => { socket.destroy(); finish(false); }, 5000);
    const parse = () => {
      const responses: RawExchange['responses'] = [];
      let rest = data;
      while (rest.length > 0) {
        const head = rest.indexOf('\r\n\r\n');
        if (head < 0) break;
        const [statusLine = '', ...headerLines] = rest.slice(0, head).split('\r\n');
        const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        const length = Number(headers['content-length'] ?? 0);
        responses.push({ status: Number(statusLine.split(' ')[1]), headers, body: rest.slice(head + 4, head + 4 + length) });
        if (rest.length < head + 4 + length) break;
        rest = rest.slice(head + 4 + length);
      }
      return responses;
    };
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ responses: parse(), ended });
    };
    socket.on('secureConnect', () => socket.write(request + request));
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      if (parse().length === 2) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('error', reject);
  });
}

test('default answer of a refusal: the exact JSON body of before, Connection: close, and the connection ends (the pipelined request is never answered)', async () => {
  const untrusted = await pipelined('/id', { cert: pki.clientUntrusted, key: pki.clientUntrustedKey });
  assert.equal(untrusted.ended, true, 'the server ended the connection');
  assert.equal(untrusted.responses.length, 1);
  const [r] = untrusted.responses;
  assert.equal(r?.status, 403);
  assert.equal(r?.headers.connection, 'close');
  assert.equal(r?.headers['content-type'], 'application/json; charset=utf-8');
  // CERT_E_UNTRUSTEDCA is 0x800B0112 in winerror.h.
  assert.equal(CertStatus.CERT_E_UNTRUSTEDCA, 0x800b0112);
  assert.equal(r?.body, '{"statusCode":403,"code":"CB_ERR_CLIENT_CERT_UNTRUSTED","error":"Forbidden","message":"The client certificate did not verify (CERT_E_UNTRUSTEDCA)","certFlags":2148204818,"certFlagsName":"CERT_E_UNTRUSTEDCA"}');

  const none = await pipelined('/id');
  assert.equal(none.ended, true);
  assert.deepEqual(none.responses.map((x) => [x.status, x.headers.connection, x.body]), [[403, 'close', '{"statusCode":403,"code":"CB_ERR_CLIENT_CERT_REQUIRED","error":"Forbidden","message":"A client certificate is required"}']]);
});

test('an app\'s setErrorHandler sees the refusal with its code and statusCode; its 200 does not run the route, and the connection still ends', async () => {
  handled.length = 0;
  const untrusted = await pipelined('/custom', { cert: pki.clientUntrusted, key: pki.clientUntrustedKey });
  assert.equal(untrusted.ended, true, 'the server ended the connection');
  assert.deepEqual(untrusted.responses.map((x) => [x.status, x.headers.connection, x.body]), [[200, 'close', '{"custom":true}']]);
  const none = await pipelined('/custom');
  assert.equal(none.ended, true);
  assert.deepEqual(none.responses.map((x) => [x.status, x.body]), [[200, '{"custom":true}']]);
  // The request pipelined behind a refusal may reach the app before the connection ends: it is refused too.
  assert.deepEqual([...new Set(handled.map((h) => JSON.stringify(h)))].map((h) => JSON.parse(h) as unknown), [
    { code: 'CB_ERR_CLIENT_CERT_UNTRUSTED', statusCode: 403, certFlagsName: 'CERT_E_UNTRUSTEDCA', certbound: true },
    { code: 'CB_ERR_CLIENT_CERT_REQUIRED', statusCode: 403, certbound: true },
  ]);
  assert.equal(customRan, 0, 'the route handler never ran');
  // An authorized client is served by the route itself.
  const good = await pipelined('/custom', { cert: pki.client, key: pki.clientKey });
  assert.deepEqual(good.responses.map((x) => [x.status, x.body]), [[200, 'the handler ran'], [200, 'the handler ran']]);
  assert.equal(customRan, 2);
});

test('every log line of a request carries connectionId (decimal string) and openssl\'s SHA-1 thumbprint, fastify\'s "incoming request" included', async () => {
  rawLines.length = 0;
  const fp = await run('openssl', ['x509', '-in', pki.client, '-noout', '-fingerprint', '-sha1']);
  assert.equal(fp.code, 0, fp.stderr);
  const thumbprint = fp.stdout.trim().replace(/^.*=/, '').replace(/:/g, '').toLowerCase();
  assert.match(thumbprint, /^[0-9a-f]{40}$/);
  const good = await pipelined('/id', { cert: pki.client, key: pki.clientKey });
  assert.equal(good.responses.length, 2);
  const id = (JSON.parse(good.responses[0]?.body ?? '') as { id: string }).id;
  assert.match(id, /^[1-9]\d*$/);
  assert.equal(JSON.parse(good.responses[1]?.body ?? '').id, id, 'one connection, one id');
  const lines = rawLines.filter((l) => l.includes('"reqId"'));
  const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
  assert.deepEqual(msgs.sort(), ['incoming request', 'incoming request', 'request completed', 'request completed']);
  for (const raw of lines) {
    const line = JSON.parse(raw) as Record<string, unknown>;
    assert.equal(line.connectionId, id, `${line.msg as string}: ${raw}`);
    assert.equal(line.thumbprint, thumbprint, `${line.msg as string}: ${raw}`);
    assert.equal(raw.split('"connectionId"').length, 2, `bound once: ${raw}`);
  }
});

test('an app\'s setErrorHandler also sees 413 CB_ERR_BODY_TOO_LARGE (the connection still ends) and 500 CB_ERR_ROUTE_UNGUARDED; no handler runs', async (t) => {
  const seen: Array<[unknown, unknown]> = [];
  let ran = 0;
  const app2 = Fastify({ https: { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), requestCert: true, rejectUnauthorized: false } });
  // The error handler first: a route keeps the handler of when it was declared (fastify's rule).
  app2.setErrorHandler((error: Error & { code?: unknown; statusCode?: number }, _request, reply) => {
    seen.push([error.code, error.statusCode]);
    return reply.code(error.statusCode ?? 500).send({ seen: error.code });
  });
  app2.get('/early', { config: { clientCertificate: 'required' } }, async () => { ran++; return 'early'; });
  await app2.register(certboundPlugin, { clientAuth: 'optional' });
  app2.get('/od', { bodyLimit: 10, config: { clientCertificate: 'on-demand' } }, async () => { ran++; return 'od'; });
  await app2.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app2.close());
  const to = (app2.server.address() as AddressInfo).port;
  // A GET with a body: fastify does not read it, the on-demand route must (before asking for a certificate).
  const big = await pipelined('/od', undefined, to, `GET /od HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n${'x'.repeat(100)}`);
  assert.equal(big.ended, true, 'the connection ends after a body too large');
  assert.deepEqual(big.responses.map((x) => [x.status, x.headers.connection, x.body]), [[413, 'close', '{"seen":"CB_ERR_BODY_TOO_LARGE"}']]);
  const early = await pipelined('/early', { cert: pki.client, key: pki.clientKey }, to);
  assert.deepEqual(early.responses.map((x) => [x.status, x.body]), [[500, '{"seen":"CB_ERR_ROUTE_UNGUARDED"}'], [500, '{"seen":"CB_ERR_ROUTE_UNGUARDED"}']]);
  // (The request pipelined behind the 413 may reach the app before the connection ends: refused the same way.)
  assert.deepEqual([...new Set(seen.map((x) => x.join(' ')))], ['CB_ERR_BODY_TOO_LARGE 413', 'CB_ERR_ROUTE_UNGUARDED 500']);
  assert.equal(ran, 0, 'no handler ran');
});
