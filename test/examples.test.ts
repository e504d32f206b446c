// Every example in examples/ runs with its one command and does what its header says.
// (channel-bound-auth and client-download have their own tests.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';

const repo = resolve(import.meta.dirname, '..');
// The tsx loader by absolute URL: the examples run with a temporary directory as cwd.
const tsx = import.meta.resolve('tsx');
const example = (name: string) => run(process.execPath, ['--import', tsx, resolve(repo, 'examples', name)], { cwd: tempDir('certbound-example-'), timeoutMs: 60_000 });

test('examples/mtls-json-api.ts: the dev client is mapped to alice and lists orders', async () => {
  const r = await example('mtls-json-api.ts');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /GET \/api\/orders as the dev client → 200 .*"by":"alice"/);
});

test('examples/fastify-plugin.ts: the plugin on an existing fastify app refuses and admits', async () => {
  const r = await example('fastify-plugin.ts');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /GET \/public without a certificate → 200 \{"connectionId":"\d+"\}/);
  assert.match(r.stdout, /GET \/private without a certificate → 403 .*CB_ERR_CLIENT_CERT_REQUIRED/);
  assert.match(r.stdout, /GET \/private with the dev client certificate → 200 .*CN=dev-client.*"certFlags":0/);
});

test('examples/on-demand-route.ts: the certificate arrives on the second handshake', async () => {
  const r = await example('on-demand-route.ts');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /GET \/ {6}→ 200/);
  assert.match(r.stdout, /GET \/admin → 200 .*CN=dev-client.*"handshakes":2/);
});

test('examples/front.ts: the backend reads the certificate certbound passed on, never the forged one', async () => {
  const r = await example('front.ts');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /with the certificate {4}\/api\/orders → 200 \{"path":"\/api\/orders","subject":"O=certbound dev, OU=users, CN=dev-client","flags":"OK","forwardedFor":"127.0.0.1"\}/);
  assert.match(r.stdout, /without a certificate {3}\/api\/orders → 200 \{"path":"\/api\/orders","subject":null,"flags":"NO_CERTIFICATE","forwardedFor":"127.0.0.1"\}/);
  assert.match(r.stdout, /without a certificate {3}\/admin\/ {5}→ 403 .*CB_ERR_CLIENT_CERT_REQUIRED/);
});

test('examples/ocsp-stapling.ts: openssl s_client sees a good staple on the first handshake', async () => {
  const r = await example('ocsp-stapling.ts');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /staple state: \{"state":"stapled","stapled":true,"reason":null,"certStatus":"good"/);
  assert.match(r.stdout, /first handshake: response successful, cert good/);
});
