// What the hot-path work memoises or skips per request and per connection stays correct
// (docs/performance.md): real TLS 1.3 connections on 127.0.0.1 with the dev client certificate.
// - a silent logger gives requests the logger itself (no child), a route's own logLevel its child;
// - the route plan cached on the route config is judged again when the config changed since;
// - the certificate view's `x509` (parsed when read) is the leaf of the connection;
// - the channel binding asked for alone equals the one of all three.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { devPki } from './helpers/pki.js';
import { getOverTls } from './helpers/tls-get.js';

let server: CertboundServer;
let port: number;
let cert: string;
let key: string;
let clientDer: Buffer;

before(async () => {
  const pki = await devPki();
  cert = readFileSync(pki.client, 'utf8');
  key = readFileSync(pki.clientKey, 'utf8');
  clientDer = new X509Certificate(cert).raw;
  server = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'optional', logger: false, underPressure: false });
  const app = server.app;
  app.get('/log', async (request) => ({ same: request.log === app.log, level: request.log.level }));
  app.get('/log-info', { logLevel: 'info' }, async (request) => ({ same: request.log === app.log, level: request.log.level, reqId: (request.log as unknown as { bindings(): { reqId?: string } }).bindings().reqId === request.id }));
  // Its handler turns its own config into a certbound option the plugin never installed.
  app.get('/mutated', async (request) => {
    (request.routeOptions.config as { clientCertificate?: string }).clientCertificate = 'required';
    return { served: true };
  });
  // A frozen config object of the app's: the plugin's route plan goes on fastify's copy.
  app.get('/frozen', { config: Object.freeze({ note: 'frozen' }) }, async (request) => ({ note: (request.routeOptions.config as { note?: string }).note }));
  app.get('/x509', async (request) => {
    const c = request.clientCertificate();
    if (!c) return { certificate: null };
    const spread = { ...c };
    return {
      rawEqualsDer: c.x509.raw.equals(c.der),
      sameObject: c.x509 === c.x509,
      fingerprint: c.x509.fingerprint256.replace(/:/g, '').toLowerCase() === c.sha256,
      subject: c.x509.subject === c.subject,
      enumerable: Object.keys(c).includes('x509') && spread.x509 === c.x509,
      frozen: Object.isFrozen(c),
      der: c.der.toString('base64'),
    };
  });
  app.get('/bindings', async (request) => {
    const all = request.channelBindings();
    const hex = (v: { value?: Buffer }) => v.value?.toString('hex') ?? null;
    return {
      exporter: [hex(request.channelBinding('tls-exporter')), hex(all['tls-exporter'])],
      endPoint: [hex(request.channelBinding('tls-server-end-point')), hex(all['tls-server-end-point'])],
      unique: [request.channelBinding('tls-unique').reason ?? null, all['tls-unique'].reason ?? null],
    };
  });
  port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
});
after(() => server.close());

test('a silent logger: the request logs through it (no child per request); a route logLevel keeps its child', async () => {
  const silent = await getOverTls(port, '/log', { version: 'TLSv1.3', cert, key });
  assert.equal(silent.status, 200);
  assert.deepEqual(JSON.parse(silent.body), { same: true, level: 'silent' });
  const info = await getOverTls(port, '/log-info', { version: 'TLSv1.3', cert, key });
  assert.equal(info.status, 200);
  assert.deepEqual(JSON.parse(info.body), { same: false, level: 'info', reqId: true });
});

test('a route config changed after start-up is judged again: a certbound option the plugin did not install is refused', async () => {
  const first = await getOverTls(port, '/mutated', { version: 'TLSv1.3', cert, key });
  assert.equal(first.status, 200);
  assert.deepEqual(JSON.parse(first.body), { served: true });
  // The cached plan said "no option"; the config now says `required`, which no hook enforces.
  for (const who of [{ cert, key }, {}]) {
    const again = await getOverTls(port, '/mutated', { version: 'TLSv1.3', ...who });
    assert.equal(again.status, 500);
    assert.equal(JSON.parse(again.body).code, 'CB_ERR_ROUTE_UNGUARDED');
  }
});

test('a route whose config object is frozen registers and serves', async () => {
  const r = await getOverTls(port, '/frozen', { version: 'TLSv1.3', cert, key });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { note: 'frozen' });
});

test('the view\'s x509 is parsed from the leaf when read, once per view, and enumerable', async () => {
  const r = await getOverTls(port, '/x509', { version: 'TLSv1.3', cert, key });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { rawEqualsDer: true, sameObject: true, fingerprint: true, subject: true, enumerable: true, frozen: true, der: clientDer.toString('base64') });
});

test('request.channelBinding(type) computed alone equals request.channelBindings()[type]', async () => {
  const r = await getOverTls(port, '/bindings', { version: 'TLSv1.3', cert, key });
  assert.equal(r.status, 200);
  const b = JSON.parse(r.body) as { exporter: [string, string]; endPoint: [string, string]; unique: [string, string] };
  assert.match(b.exporter[0], /^[0-9a-f]{64}$/);
  assert.equal(b.exporter[0], b.exporter[1]);
  assert.match(b.endPoint[0], /^[0-9a-f]{64}$/);
  assert.equal(b.endPoint[0], b.endPoint[1]);
  assert.deepEqual(b.unique, ['tls13', 'tls13']);
});
