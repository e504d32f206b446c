// The revocation checker's cache of decided results (a warm check is a map read): it answers
// the same leaf and issuer without asking again, and is dropped by a reload of the CRLs
// (replaceCrls), by clear(), by the nextUpdate of the data that decided, and is not kept when
// the responder could not answer; another leaf (a renegotiation to another certificate) or
// another issuer is checked anew; over real TLS, a session resumed after a reload of the CRLs
// is checked against the new ones. Real dev OCSP responder on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { issueCertificate, loadIssuer, OID } from '../src/tls/cert-builder.js';
import { createServer } from '../src/server/server.js';
import { devPki, read } from './helpers/pki.js';
import { toPem } from '../src/tls/pem.js';
import { CertStatus } from '../src/status.js';
import { buildCrl, startDevOcspResponder } from '../src/ocsp/responder.js';
import { fetchOcsp, type OcspFetcher } from '../src/ocsp/fetch.js';
import { serialHex } from '../src/ocsp/request.js';
import { CertCheckMode, createRevocationChecker } from '../src/ocsp/revocation.js';
import { freePort } from './helpers/exec.js';

test('decided results are reused until a reload, clear() or their nextUpdate; undecided ones never', async (t) => {
  const ca = await issueCertificate({ subject: { commonName: 'cache CA' }, ca: true });
  let now = Date.now();
  const responder = await startDevOcspResponder({ issuer: ca, validityMinutes: 60, now: () => now });
  let fetches = 0;
  const fetcher: OcspFetcher = (url, der, o) => { fetches++; return fetchOcsp(url, der, o); };
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'cache-leaf' }, issuer: ca, extKeyUsage: [OID.clientAuth], ocspUrl: responder.url });
  const other = await issueCertificate({ subject: { commonName: 'cache-other' }, issuer: ca, extKeyUsage: [OID.clientAuth], ocspUrl: responder.url });
  const checker = createRevocationChecker({ fetcher, now: () => now });

  const first = await checker.check([leaf.der, ca.der]);
  assert.deepEqual({ certFlags: first.certFlags, source: first.source, fromCache: first.fromCache }, { certFlags: 0, source: 'ocsp', fromCache: false });
  const warm = await checker.check([leaf.pem, ca.pem]);
  assert.deepEqual({ certFlags: warm.certFlags, source: warm.source, fromCache: warm.fromCache, nextUpdate: warm.nextUpdate }, { certFlags: 0, source: 'ocsp', fromCache: true, nextUpdate: first.nextUpdate });
  assert.equal(fetches, 1);
  assert.equal(responder.requests, 1);

  // Another leaf (what a renegotiation to another certificate brings) is asked for.
  responder.revoke(serialHex(other.certificate));
  assert.equal((await checker.check([other.der, ca.der])).certFlags, CertStatus.CERT_E_REVOKED);
  assert.equal(fetches, 2);

  // A revocation at the responder is seen once the cached answer is dropped: clear() ...
  responder.revoke(serialHex(leaf.certificate));
  assert.equal((await checker.check([leaf.der, ca.der])).certFlags, 0, 'still the cached good answer (until nextUpdate)');
  checker.clear();
  const afterClear = await checker.check([leaf.der, ca.der]);
  assert.deepEqual({ certFlags: afterClear.certFlags, fromCache: afterClear.fromCache }, { certFlags: CertStatus.CERT_E_REVOKED, fromCache: false });
  assert.equal(fetches, 3);

  // ... or its nextUpdate passing (one injected clock for the responder and the checker, an hour of validity).
  const fresh = await issueCertificate({ subject: { commonName: 'cache-fresh' }, issuer: ca, extKeyUsage: [OID.clientAuth], ocspUrl: responder.url });
  assert.equal((await checker.check([fresh.der, ca.der])).certFlags, 0);
  assert.equal(fetches, 4);
  now += 59 * 60_000;
  responder.revoke(serialHex(fresh.certificate));
  assert.deepEqual(await checker.check([fresh.der, ca.der]).then((r) => [r.certFlags, r.fromCache]), [0, true]);
  assert.equal(fetches, 4);
  now += 2 * 60_000;
  const past = await checker.check([fresh.der, ca.der]);
  assert.deepEqual({ certFlags: past.certFlags, fromCache: past.fromCache }, { certFlags: CertStatus.CERT_E_REVOKED, fromCache: false });
  assert.equal(fetches, 5);
});

test('a reload of the CRLs (replaceCrls) drops decisions made from the old ones', async () => {
  const ca = await issueCertificate({ subject: { commonName: 'crl cache CA' }, ca: true });
  const leaf = await issueCertificate({ subject: { commonName: 'crl-leaf' }, issuer: ca, extKeyUsage: [OID.clientAuth] });
  const empty = toPem(await buildCrl({ issuer: ca }), 'X509 CRL');
  const listing = toPem(await buildCrl({ issuer: ca, revoked: [{ serialHex: serialHex(leaf.certificate) }] }), 'X509 CRL');
  const checker = createRevocationChecker({ crls: [empty], fetchCrlDistributionPoints: false });
  assert.deepEqual(await checker.check([leaf.der, ca.der]).then((r) => [r.certFlags, r.source]), [0, 'crl']);
  assert.deepEqual(await checker.check([leaf.der, ca.der]).then((r) => [r.certFlags, r.source]), [0, 'crl']);
  checker.replaceCrls([listing]);
  const after = await checker.check([leaf.der, ca.der]);
  assert.deepEqual({ certFlags: after.certFlags, source: after.source }, { certFlags: CertStatus.CERT_E_REVOKED, source: 'crl' });
  checker.replaceCrls([empty]);
  assert.equal((await checker.check([leaf.der, ca.der])).certFlags, 0);

  // The same leaf with another issuer is not answered from the decision for the right one.
  const impostor = await issueCertificate({ subject: { commonName: 'crl cache CA' }, ca: true });
  const wrong = await checker.check([leaf.der, impostor.der]);
  assert.deepEqual({ certFlags: wrong.certFlags, reason: wrong.reason }, { certFlags: CertStatus.CRYPT_E_NO_REVOCATION_CHECK, reason: 'issuer-mismatch' });
});

test('an answer decided after the responder failed is not kept: the responder is asked at every check', async () => {
  const ca = await issueCertificate({ subject: { commonName: 'down cache CA' }, ca: true });
  const leaf = await issueCertificate({ subject: { commonName: 'down-leaf' }, issuer: ca, extKeyUsage: [OID.clientAuth], ocspUrl: `http://127.0.0.1:${await freePort()}/` });
  let fetches = 0;
  const fetcher: OcspFetcher = (url, der, o) => { fetches++; return fetchOcsp(url, der, { ...o, timeoutMs: 2000 }); };
  const checker = createRevocationChecker({ fetcher, crls: [toPem(await buildCrl({ issuer: ca }), 'X509 CRL')], fetchCrlDistributionPoints: false });
  for (let i = 1; i <= 2; i++) {
    const r = await checker.check([leaf.der, ca.der]);
    assert.deepEqual({ certFlags: r.certFlags, source: r.source, reason: r.reason }, { certFlags: 0, source: 'crl', reason: null });
    assert.equal(fetches, i);
  }
  // The freshness-time mode is never answered from the decision cache either.
  const freshness = createRevocationChecker({ crls: [toPem(await buildCrl({ issuer: ca }), 'X509 CRL')], fetchCrlDistributionPoints: false, ocsp: false, certCheckMode: CertCheckMode.FRESHNESS_TIME, revocationFreshnessTimeSeconds: 60 });
  assert.equal((await freshness.check([leaf.der, ca.der])).fromCache, true, 'a loaded CRL is cached data');
  assert.equal((await freshness.check([leaf.der, ca.der])).source, 'crl');
});

test('over TLS: a connection after replaceCrls, fresh or resumed from a session of before, is refused as revoked', async (t) => {
  const pki = await devPki();
  const clientCa = await loadIssuer(read(pki.clientCa), read(pki.clientCaKey));
  const leaf = new X509Certificate(read(pki.client));
  const checker = createRevocationChecker({ crls: [toPem(await buildCrl({ issuer: clientCa }), 'X509 CRL')], fetchCrlDistributionPoints: false, ocsp: false });
  const server = createServer({ cert: read(pki.server), key: read(pki.serverKey), ca: read(pki.caBundle), clientAuth: 'optional', revocation: checker, logger: false });
  server.app.get('/flags', async (request) => ({ certFlags: request.clientCertificate()?.certFlags ?? null, source: request.clientCertificate()?.revocation?.source ?? null }));
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => server.close());
  const ask = (session?: Buffer) => new Promise<{ reused: boolean; status: number; body: string; session: Buffer | undefined }>((resolve, reject) => {
    let ticket: Buffer | undefined;
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(pki.rootCa), cert: read(pki.client), key: read(pki.clientKey), maxVersion: 'TLSv1.2', ...(session ? { session } : {}) }, () => {
      s.write('GET /flags HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    s.on('session', (b: Buffer) => { ticket = b; });
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      resolve({ reused: s.isSessionReused(), status: Number(text.slice(9, 12)), body: text.slice(text.indexOf('\r\n\r\n') + 4), session: ticket });
    });
    s.on('error', reject);
  });
  const first = await ask();
  assert.deepEqual([first.status, JSON.parse(first.body)], [200, { certFlags: 0, source: 'crl' }]);
  const warm = await ask();
  assert.deepEqual([warm.status, JSON.parse(warm.body)], [200, { certFlags: 0, source: 'crl' }]);
  assert.ok(first.session, 'the server issued a session');

  checker.replaceCrls([toPem(await buildCrl({ issuer: clientCa, revoked: [{ serialHex: leaf.serialNumber }] }), 'X509 CRL')]);
  const resumed = await ask(first.session);
  assert.equal(resumed.reused, true, 'the session of before was resumed');
  const refused = (body: string) => { const b = JSON.parse(body) as { code: string; certFlags: number; certFlagsName: string }; return [b.code, b.certFlags, b.certFlagsName]; };
  assert.deepEqual([resumed.status, ...refused(resumed.body)], [403, 'CB_ERR_CLIENT_CERT_UNTRUSTED', CertStatus.CERT_E_REVOKED, 'CERT_E_REVOKED']);
  const fresh = await ask();
  assert.deepEqual([fresh.reused, fresh.status, ...refused(fresh.body)], [false, 403, 'CB_ERR_CLIENT_CERT_UNTRUSTED', CertStatus.CERT_E_REVOKED, 'CERT_E_REVOKED']);
});
