// Client-certificate revocation with HTTP.sys's modes: good, revoked by OCSP and by CRL
// (loaded file and fetched distribution point), responder down with soft and hard fail,
// cached only, freshness time, once per connection over a real TLS connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import tls from 'node:tls';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { toPem } from '../src/tls/pem.js';
import { CertStatus } from '../src/status.js';
import { buildCrl, issueResponderCertificate, startDevOcspResponder, type DevOcspResponder } from '../src/ocsp/responder.js';
import { serialHex } from '../src/ocsp/request.js';
import { CertCheckMode, createRevocationChecker } from '../src/ocsp/revocation.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

interface Pki {
  ca: IssuedCertificate; responder: DevOcspResponder; crlUrl: string; downUrl: string; crlRequests: () => number;
  good: IssuedCertificate; revokedOcsp: IssuedCertificate; revokedCrl: IssuedCertificate; crlOnlyGood: IssuedCertificate; offline: IssuedCertificate;
}

async function pki(t: { after(fn: () => unknown): void }): Promise<Pki> {
  const ca = await issueCertificate({ subject: { commonName: 'revocation client CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, responder: await issueResponderCertificate(ca), validityMinutes: 60 });
  t.after(() => responder.close());
  const client = (cn: string, extra: { ocspUrl?: string; crlUrl?: string }) => issueCertificate({ subject: { commonName: cn }, issuer: ca, extKeyUsage: [OID.clientAuth], ...extra });
  let crlBody: Buffer = Buffer.alloc(0);
  let crlRequests = 0;
  const crlServer = http.createServer((_req, res) => { crlRequests++; res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(crlBody); });
  await new Promise<void>((resolve) => crlServer.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { crlServer.close(() => resolve()); crlServer.closeAllConnections(); }));
  const crlUrl = `http://127.0.0.1:${(crlServer.address() as AddressInfo).port}/ca.crl`;
  const downUrl = `http://127.0.0.1:${await freePort()}/`;
  const good = await client('good', { ocspUrl: responder.url });
  const revokedOcsp = await client('revoked-ocsp', { ocspUrl: responder.url });
  const revokedCrl = await client('revoked-crl', { crlUrl });
  const crlOnlyGood = await client('crl-good', { crlUrl });
  const offline = await client('offline', { ocspUrl: downUrl });
  responder.revoke(serialHex(revokedOcsp.certificate));
  crlBody = await buildCrl({ issuer: ca, revoked: [{ serialHex: serialHex(revokedCrl.certificate) }] });
  return { ca, responder, crlUrl, downUrl, crlRequests: () => crlRequests, good, revokedOcsp, revokedCrl, crlOnlyGood, offline };
}

test('OCSP: good, revoked; results cached; cached-only and freshness time', async (t) => {
  const p = await pki(t);
  let now = Date.now();
  const checker = createRevocationChecker({ now: () => now });
  const good = await checker.check([p.good.der, p.ca.der]);
  assert.deepEqual({ certFlags: good.certFlags, source: good.source, fromCache: good.fromCache }, { certFlags: 0, source: 'ocsp', fromCache: false });
  const revoked = await checker.check([p.revokedOcsp.pem, p.ca.pem]);
  assert.equal(revoked.certFlags, CertStatus.CERT_E_REVOKED);
  assert.equal(revoked.certFlags, 0x800b010c);
  assert.equal(revoked.source, 'ocsp');
  assert.ok(revoked.revocationTime);
  assert.equal(p.responder.requests, 2);

  // Cached until nextUpdate: no new request, also in cached-only mode.
  assert.equal((await checker.check([p.good.der, p.ca.der])).fromCache, true);
  const cachedOnly = await checker.check([p.revokedOcsp.der, p.ca.der], { certCheckMode: CertCheckMode.CACHED_ONLY });
  assert.equal(cachedOnly.certFlags, CertStatus.CERT_E_REVOKED);
  assert.equal(cachedOnly.fromCache, true);
  assert.equal(p.responder.requests, 2);

  // Cached only with nothing cached: no retrieval, CRYPT_E_NO_REVOCATION_CHECK (hard fail).
  const fresh = createRevocationChecker({ certCheckMode: CertCheckMode.CACHED_ONLY });
  const none = await fresh.check([p.good.der, p.ca.der]);
  assert.equal(none.certFlags, CertStatus.CRYPT_E_NO_REVOCATION_CHECK);
  assert.equal(none.certFlags, 0x80092012);
  assert.equal(none.reason, 'not-cached');
  assert.equal(p.responder.requests, 2);

  // Freshness time: a cached answer older than it is fetched again.
  now += 5_000;
  const fr = await checker.check([p.good.der, p.ca.der], { certCheckMode: CertCheckMode.FRESHNESS_TIME });
  assert.equal(fr.fromCache, true, 'freshness 0: only when it expires');
  const strict = createRevocationChecker({ now: () => now, certCheckMode: CertCheckMode.FRESHNESS_TIME, revocationFreshnessTimeSeconds: 2 });
  await strict.check([p.good.der, p.ca.der]);
  now += 3_000;
  const refetched = await strict.check([p.good.der, p.ca.der]);
  assert.equal(refetched.fromCache, false);
  assert.equal(p.responder.requests, 4);

  // No check at all.
  const skip = await createRevocationChecker({ certCheckMode: CertCheckMode.NO_REVOCATION_CHECK }).check([p.revokedOcsp.der, p.ca.der]);
  assert.deepEqual({ certFlags: skip.certFlags, source: skip.source }, { certFlags: 0, source: 'skipped' });
});

test('CRL: fetched distribution point and loaded file', async (t) => {
  const p = await pki(t);
  const checker = createRevocationChecker();
  const revoked = await checker.check([p.revokedCrl.der, p.ca.der]);
  assert.deepEqual({ certFlags: revoked.certFlags, source: revoked.source }, { certFlags: CertStatus.CERT_E_REVOKED, source: 'crl' });
  const good = await checker.check([p.crlOnlyGood.der, p.ca.der]);
  assert.deepEqual({ certFlags: good.certFlags, source: good.source, fromCache: good.fromCache }, { certFlags: 0, source: 'crl', fromCache: true });
  assert.equal(p.crlRequests(), 1, 'the CRL was fetched once and cached');

  // A loaded CRL file (PEM), no fetching: also the cached-only source.
  const crlPem = toPem(await buildCrl({ issuer: p.ca, revoked: [{ serialHex: serialHex(p.revokedCrl.certificate) }] }), 'X509 CRL');
  const loaded = createRevocationChecker({ crls: [crlPem], fetchCrlDistributionPoints: false, certCheckMode: CertCheckMode.CACHED_ONLY });
  assert.equal((await loaded.check([p.revokedCrl.der, p.ca.der])).certFlags, CertStatus.CERT_E_REVOKED);
  assert.equal((await loaded.check([p.crlOnlyGood.der, p.ca.der])).certFlags, 0);
  assert.equal(p.crlRequests(), 1);

  // A CRL signed by someone else is not used.
  const other = await issueCertificate({ subject: { commonName: 'revocation client CA' }, ca: true });
  const forged = createRevocationChecker({ crls: [await buildCrl({ issuer: other })], fetchCrlDistributionPoints: false });
  const f = await forged.check([p.revokedCrl.der, p.ca.der]);
  assert.equal(f.source, 'none');
  assert.equal(f.certFlags, CertStatus.CRYPT_E_NO_REVOCATION_CHECK);
});

test('responder down: soft fail keeps certFlags 0, hard fail reports CRYPT_E_REVOCATION_OFFLINE', async (t) => {
  const p = await pki(t);
  const hard = await createRevocationChecker({ failMode: 'hard', urlRetrievalTimeoutMs: 1000 }).check([p.offline.der, p.ca.der]);
  assert.equal(hard.certFlags, CertStatus.CRYPT_E_REVOCATION_OFFLINE);
  assert.equal(hard.certFlags, 0x80092013);
  assert.equal(hard.revocationStatus, CertStatus.CRYPT_E_REVOCATION_OFFLINE);
  assert.equal(hard.reason, 'fetch-refused');
  const soft = await createRevocationChecker({ failMode: 'soft', urlRetrievalTimeoutMs: 1000 }).check([p.offline.der, p.ca.der]);
  assert.equal(soft.certFlags, 0);
  assert.equal(soft.revocationStatus, CertStatus.CRYPT_E_REVOCATION_OFFLINE);

  // A hanging responder: cut at DefaultRevocationUrlRetrievalTimeout.
  const hang = http.createServer(() => { /* never answers */ });
  await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { hang.close(() => resolve()); hang.closeAllConnections(); }));
  const slow = await issueCertificate({ subject: { commonName: 'slow' }, issuer: p.ca, extKeyUsage: [OID.clientAuth], ocspUrl: `http://127.0.0.1:${(hang.address() as AddressInfo).port}/` });
  const started = Date.now();
  const timedOut = await createRevocationChecker({ urlRetrievalTimeoutMs: 300 }).check([slow.der, p.ca.der]);
  assert.ok(Date.now() - started < 2000);
  assert.equal(timedOut.reason, 'fetch-timeout');
  assert.equal(timedOut.certFlags, CertStatus.CRYPT_E_REVOCATION_OFFLINE);
});

test('once per connection, after the handshake, over real TLS with openssl s_client as the client', async (t) => {
  const p = await pki(t);
  const dir = tempDir('certbound-revocation-');
  const server = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: p.ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'] });
  const checker = createRevocationChecker();
  const srv = tls.createServer({ cert: server.pem, key: server.keyPem, ca: p.ca.pem, requestCert: true, rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, (socket) => {
    const peer = socket.getPeerCertificate(true);
    const chain = [peer.raw, peer.issuerCertificate?.raw ?? p.ca.der];
    // Twice on the same connection: one check.
    void Promise.all([checker.checkOnce(socket, chain), checker.checkOnce(socket, chain)]).then(([a, b]) => {
      socket.end(`certFlags=0x${(a.certFlags >>> 0).toString(16)} same=${String(a === b)}\n`);
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  const port = (srv.address() as AddressInfo).port;
  const ask = async (c: IssuedCertificate, name: string) => {
    writeFileSync(join(dir, `${name}.pem`), c.pem);
    writeFileSync(join(dir, `${name}.key`), c.keyPem);
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', join(dir, `${name}.pem`), '-key', join(dir, `${name}.key`), '-quiet', '-ign_eof'], { timeoutMs: 10_000 });
    return r.stdout;
  };
  const before = p.responder.requests;
  assert.match(await ask(p.good, 'good'), /certFlags=0x0 same=true/);
  assert.match(await ask(p.revokedOcsp, 'revoked'), /certFlags=0x800b010c same=true/);
  assert.equal(p.responder.requests - before, 2, 'one OCSP request per connection');
});

test('checkOnce: one check per connection and leaf; another leaf on the same connection is checked anew', async (t) => {
  const p = await pki(t);
  const checker = createRevocationChecker();
  const connection = {};
  const before = p.responder.requests;
  const a = checker.checkOnce(connection, [p.good.der, p.ca.der]);
  assert.equal(checker.checkOnce(connection, [p.good.pem, p.ca.pem]), a, 'same Promise, DER or PEM');
  assert.equal((await a).certFlags, 0);
  const b = await checker.checkOnce(connection, [p.revokedOcsp.der, p.ca.der]);
  assert.equal(b.certFlags, CertStatus.CERT_E_REVOKED);
  assert.equal(p.responder.requests - before, 2);
});
