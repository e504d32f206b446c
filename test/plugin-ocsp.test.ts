// The plugin's `ocsp` option on an app's own TLS server: the first retrieval finishes before
// ready(), openssl s_client -status gets the staple, ocspStapleOf(app) reads the state (an app
// without the option has none), and app.close() closes the stapler.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import Fastify from 'fastify';
import { certboundPlugin, ocspStapleOf } from '../src/server/plugin.js';
import { issueCertificate, OID } from '../src/tls/cert-builder.js';
import { startDevOcspResponder } from '../src/ocsp/responder.js';
import { isCertboundError } from '../src/errors.js';
import { createServer } from '../src/server/server.js';
import { resolveServeConfig } from '../src/server/config.js';
import { run } from './helpers/exec.js';

test('plugin ocsp option: stapled before ready, app.ocspStaple only where registered, closed in onClose', async (t) => {
  const ca = await issueCertificate({ subject: { commonName: 'plugin CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, port: 0 });
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });
  const app = Fastify({ https: { cert: leaf.pem, key: leaf.keyPem } });
  await app.register(certboundPlugin, { clientAuth: 'none', ocsp: { cert: leaf.pem, ca: ca.pem } });
  app.get('/', async () => 'ok');
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  const port = (app.server.address() as { port: number }).port;
  const staple = ocspStapleOf(app);
  assert.ok(staple, 'the option adds app.ocspStaple');
  const s = staple();
  assert.deepEqual([s.state, s.stapled, s.reason, s.certStatus, s.fingerprint], ['stapled', true, null, 'good', new X509Certificate(leaf.pem).fingerprint256.replace(/:/g, '').toLowerCase()]);
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-status'], { timeoutMs: 10_000 });
  assert.match(r.stdout, /Cert Status: good/);
  assert.equal(/Serial Number: ([0-9A-F]+)/.exec(r.stdout)?.[1], new X509Certificate(leaf.pem).serialNumber.toUpperCase());
  const before = responder.requests;
  await app.close();
  assert.equal(staple().stapled, false, 'closed with the app');
  assert.equal(responder.requests, before, 'no retrieval after close');

  // Without the option: no decoration; a bad option stops the registration with a code.
  const plain = Fastify({ https: { cert: leaf.pem, key: leaf.keyPem } });
  await plain.register(certboundPlugin, { clientAuth: 'none' });
  assert.equal(ocspStapleOf(plain), undefined);
  await plain.close();
  const http = Fastify();
  await assert.rejects(async () => { await http.register(certboundPlugin, { clientAuth: 'none', ocsp: { cert: leaf.pem } }); }, (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /TLS server/.test(err.message));
  // A misspelt key would turn persistence off without a word: refused, in the plugin and in createServer.
  await assert.rejects(async () => { await Fastify().register(certboundPlugin, { clientAuth: 'none', ocsp: { cert: leaf.pem, cachDir: '/tmp/x' } as never }); }, (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /ocsp.*cachDir/.test(err.message));
  assert.throws(() => createServer({ cert: leaf.pem, key: leaf.keyPem, clientAuth: 'none', logger: false, ocsp: { cachDir: '/tmp/x' } as never }), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /ocsp.*cachDir/.test(err.message));
  assert.throws(() => createServer({ cert: leaf.pem, key: leaf.keyPem, clientAuth: 'none', logger: false, ocsp: { url: 'ftp://responder' } }), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /ocsp.*url/.test(err.message));
  assert.throws(() => resolveServeConfig({ 'key-passphrase-file': '/tmp/pass' }), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /--key-passphrase-file/.test(err.message));
  assert.throws(() => resolveServeConfig({ 'ocsp-url': 'file:///etc/passwd' }), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /--ocsp-url/.test(err.message));
});
