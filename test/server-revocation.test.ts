// Client-certificate revocation wired into the server: the check runs once per connection
// after the handshake and its verdict lands in certFlags (HTTP.sys's CERT_E_REVOKED).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertStatus } from '../src/status.js';
import { issueCertificate, issueCrl, loadIssuer, OID } from '../src/tls/cert-builder.js';
import { devPki, tempDir } from './helpers/pki.js';
import { get, startServer } from './helpers/server.js';

interface Info { clientCertificate: null | { certFlags: number; certFlagsName: string; revocation: null | { status: number; source: string } } }

test('a certificate on the client CA\'s CRL gets CERT_E_REVOKED; a good one passes with the CRL as source', async (t) => {
  const pki = await devPki();
  const dir = tempDir();
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const victim = await issueCertificate({ subject: { commonName: 'revoked-by-crl' }, issuer: clientCa, extKeyUsage: [OID.clientAuth] });
  writeFileSync(join(dir, 'v.pem'), victim.pem);
  writeFileSync(join(dir, 'v.key'), victim.keyPem);
  const crl = await issueCrl({ issuer: clientCa, revoked: [victim] });
  const revocation = { crls: [crl], ocsp: false, fetchCrlDistributionPoints: false };

  const accept = await startServer(t, 'accept-untrusted', { revocation });
  const revoked = (await get(accept.port, '/connection', { cert: join(dir, 'v.pem'), key: join(dir, 'v.key') })).json() as Info;
  assert.equal(revoked.clientCertificate?.certFlags, CertStatus.CERT_E_REVOKED);
  assert.equal(revoked.clientCertificate?.revocation?.source, 'crl');
  const good = (await get(accept.port, '/connection', { cert: pki.client, key: pki.clientKey })).json() as Info;
  assert.equal(good.clientCertificate?.certFlags, 0);
  assert.deepEqual(good.clientCertificate?.revocation, { status: 0, source: 'crl', reason: null });

  // optional mode refuses the revoked one with its verdict.
  const optional = await startServer(t, 'optional', { revocation });
  const refused = await get(optional.port, '/connection', { cert: join(dir, 'v.pem'), key: join(dir, 'v.key') });
  assert.equal(refused.status, 403);
  assert.equal((refused.json() as { certFlagsName: string }).certFlagsName, 'CERT_E_REVOKED');
});

test('hard fail: no revocation data for the certificate gives CRYPT_E_NO_REVOCATION_CHECK; soft fail lets it through', async (t) => {
  const pki = await devPki();
  const hard = await startServer(t, 'accept-untrusted', { revocation: { ocsp: false, fetchCrlDistributionPoints: false } });
  const h = (await get(hard.port, '/connection', { cert: pki.client, key: pki.clientKey })).json() as Info;
  assert.equal(h.clientCertificate?.certFlagsName, 'CRYPT_E_NO_REVOCATION_CHECK');
  const soft = await startServer(t, 'accept-untrusted', { revocation: { ocsp: false, fetchCrlDistributionPoints: false, failMode: 'soft' } });
  const s = (await get(soft.port, '/connection', { cert: pki.client, key: pki.clientKey })).json() as Info;
  assert.equal(s.clientCertificate?.certFlags, 0);
  assert.equal(s.clientCertificate?.revocation?.status, CertStatus.CRYPT_E_NO_REVOCATION_CHECK, 'the status is still reported');
});

test('certbound serve --client-revocation check: hard fail reports CRYPT_E_NO_REVOCATION_CHECK for a certificate without revocation data', async (t) => {
  const pki = await devPki();
  const { serve } = await import('../src/server/cli.js');
  const common = ['--port', '0', '--log-level', 'silent', '--workers', '1', '--client-auth', 'accept-untrusted', '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--client-revocation', 'check'];
  for (const [mode, want] of [['hard', 'CRYPT_E_NO_REVOCATION_CHECK'], ['soft', 'OK']] as const) {
    const server = await serve([...common, '--revocation-fail-mode', mode]);
    assert.ok(server, 'serve returned the running server');
    t.after(() => server.close());
    const port = (server.server.address() as { port: number }).port;
    const info = (await get(port, '/connection', { cert: pki.client, key: pki.clientKey })).json() as Info;
    assert.equal(info.clientCertificate?.certFlagsName, want, mode);
  }
});
