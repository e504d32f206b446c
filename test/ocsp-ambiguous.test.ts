// Responses that answer for our certificate more than once (good then revoked, good then
// unknown, the same status twice, once per CertID hash) are refused as 'ambiguous' wherever
// verifyOcspResponse decides: the staple (never handed out, also not over TLS; the older good
// staple is dropped), and client-certificate revocation (never a pass, whatever the fail mode
// or a CRL says). A response with other certificates' answers but none for ours stays
// 'certid-mismatch'; one with ours exactly once among others is fine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { issueCertificate, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { cryptoEngine, pkijs } from '../src/tls/pkijs-engine.js';
import { buildCrl, buildOcspResponse, issueResponderCertificate, type SingleAnswer } from '../src/ocsp/responder.js';
import { certIdFor, parseCertificate, serialHex } from '../src/ocsp/request.js';
import { verifyOcspResponse } from '../src/ocsp/validate.js';
import { closeServerOcspResponse, getServerOcspResponseContext, openServerOcspResponse, OcspHandleStatus, type OcspTimers, type OcspUpdate } from '../src/ocsp/handle.js';
import { createStapler } from '../src/ocsp/stapler.js';
import { FileStapleStorage } from '../src/ocsp/storage.js';
import { createRevocationChecker } from '../src/ocsp/revocation.js';
import { CertStatus } from '../src/status.js';
import { run } from './helpers/exec.js';
import { devPki, tempDir } from './helpers/pki.js';
import { get, startServer } from './helpers/server.js';

const H = 3600_000;
const inertTimers: OcspTimers = { setTimeout: () => ({}), clearTimeout: () => {} };

/** An OCSP responder on 127.0.0.1 that answers every request with `body()`. */
async function fixedResponder(t: { after(fn: () => unknown): void }, body: () => Buffer): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => { requests++; res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body()); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, requests: () => requests };
}

function capture(): { lines: Array<Record<string, unknown>>; logger: pino.Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _e, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } }));
  return { lines, logger };
}

async function sha256CertId(cert: IssuedCertificate, issuer: IssuedCertificate): Promise<pkijs.CertID> {
  const id = new pkijs.CertID();
  await id.createForCertificate(cert.certificate, { hashAlgorithm: 'SHA-256', issuerCertificate: issuer.certificate }, cryptoEngine());
  return id;
}

test('verifyOcspResponse: our CertID more than once is ambiguous; missing is certid-mismatch; once among others is good', async () => {
  const ca = await issueCertificate({ subject: { commonName: 'ambiguous CA' }, ca: true });
  const signer = await issueResponderCertificate(ca);
  const leaf = await issueCertificate({ subject: { commonName: 'ambiguous.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: 'http://127.0.0.1:9/' });
  const other1 = await issueCertificate({ subject: { commonName: 'other1.test' }, issuer: ca, extKeyUsage: [OID.serverAuth] });
  const other2 = await issueCertificate({ subject: { commonName: 'other2.test' }, issuer: ca, extKeyUsage: [OID.serverAuth] });
  const [ours, o1, o2, ours256] = await Promise.all([
    certIdFor(leaf.certificate, ca.certificate), certIdFor(other1.certificate, ca.certificate), certIdFor(other2.certificate, ca.certificate), sha256CertId(leaf, ca),
  ]);
  const now = Date.now();
  const a = (certId: pkijs.CertID, status: SingleAnswer['status'] = 'good'): SingleAnswer => ({
    certId, status, thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 2 * H), ...(status === 'revoked' ? { revocationTime: new Date(now - H) } : {}),
  });
  const cases: Array<[string, SingleAnswer[], { ok: true; certStatus: string } | { ok: false; reason: string; detail: string }]> = [
    ['good, then revoked', [a(ours), a(ours, 'revoked')], { ok: false, reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, revoked)' }],
    ['revoked, then good', [a(ours, 'revoked'), a(ours)], { ok: false, reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (revoked, good)' }],
    ['good, then unknown', [a(ours), a(ours, 'unknown')], { ok: false, reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, unknown)' }],
    ['good twice', [a(ours), a(ours)], { ok: false, reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, good)' }],
    ['good by SHA-1 CertID, revoked by SHA-256 CertID', [a(ours), a(ours256, 'revoked')], { ok: false, reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, revoked)' }],
    ['ours twice among others', [a(o1), a(ours), a(o2, 'revoked'), a(ours, 'revoked')], { ok: false, reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, revoked)' }],
    ['others only, ours missing', [a(o1), a(o2, 'revoked')], { ok: false, reason: 'certid-mismatch', detail: 'no SingleResponse for this certificate\'s CertID' }],
    ['ours once among others (revoked ones)', [a(o1, 'revoked'), a(ours), a(o2, 'unknown')], { ok: true, certStatus: 'good' }],
    ['ours once by SHA-256 CertID', [a(ours256)], { ok: true, certStatus: 'good' }],
  ];
  for (const [name, responses, want] of cases) {
    const der = await buildOcspResponse({ signer, responses });
    const v = await verifyOcspResponse(der, { cert: leaf.certificate, issuer: ca.certificate, now });
    assert.deepEqual(v.ok ? { ok: true, certStatus: v.response.certStatus } : { ok: false, reason: v.reason, detail: v.detail }, want, name);
  }
});

test('stapling: an ambiguous answer is refused, logged and counted, never stapled over TLS; the older good staple is dropped', async (t) => {
  const dir = tempDir('certbound-ocsp-ambiguous-');
  const ca = await issueCertificate({ subject: { commonName: 'ambiguous staple CA' }, ca: true });
  const signer = await issueResponderCertificate(ca);
  let body: Buffer = Buffer.alloc(0);
  const responder = await fixedResponder(t, () => body);
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });
  const certId = await certIdFor(leaf.certificate, ca.certificate);
  const now = Date.now();
  const answer = (status: SingleAnswer['status']): SingleAnswer => ({ certId, status, thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 2 * H), ...(status === 'revoked' ? { revocationTime: new Date(now - H) } : {}) });
  const good = await buildOcspResponse({ signer, responses: [answer('good')] });
  const goodRevoked = await buildOcspResponse({ signer, responses: [answer('good'), answer('revoked')] });
  const goodUnknown = await buildOcspResponse({ signer, responses: [answer('good'), answer('unknown')] });

  // A fresh stapler against a responder that says "good, then revoked": nothing to staple.
  body = goodRevoked;
  const { lines, logger } = capture();
  const stapler = createStapler({ logger, settings: { SrvOcspRespUrlRetrievalTimeoutMilliseconds: 2000 } });
  t.after(() => stapler.close());
  const state = await stapler.add([leaf.der, ca.der]);
  assert.equal(state?.stapled, false);
  assert.equal(state?.lastOutcome, 'refused');
  assert.equal(state?.lastReason, 'ambiguous');
  assert.equal(stapler.stapleFor(leaf.der), undefined);
  const m = stapler.metrics();
  assert.deepEqual({ updates: m.updates, refused: m.refused, stapled: m.stapled, revoked: m.revoked, byReason: m.byReason }, { updates: 1, refused: 1, stapled: 0, revoked: 0, byReason: { ambiguous: 1 } });
  const refusedLines = lines.filter((l) => l.event === 'ocsp-update');
  assert.equal(refusedLines.length, 1, 'one log line');
  assert.deepEqual(
    { level: refusedLines[0]?.level, outcome: refusedLines[0]?.outcome, reason: refusedLines[0]?.reason, detail: refusedLines[0]?.detail, serving: refusedLines[0]?.serving },
    { level: 40, outcome: 'refused', reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, revoked)', serving: false },
  );

  // Over real TLS: openssl s_client -status gets no staple.
  const server = https.createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem }, (_req, res) => res.end('ok'));
  stapler.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  const sClient = () => run('openssl', ['s_client', '-connect', `127.0.0.1:${(server.address() as AddressInfo).port}`, '-servername', 'localhost', '-status', '-CAfile', join(dir, 'ca.pem')], { timeoutMs: 10_000 });
  const r = await sClient();
  assert.match(r.stdout, /OCSP response: no response sent/);
  assert.doesNotMatch(r.stdout, /Cert Status/);
  assert.equal(stapler.metrics().handshakesUnstapled, 1);

  // A handle that holds a good staple (persisted too) loses it on "good, then unknown".
  body = good;
  const storage = new FileStapleStorage(join(dir, 'staples'));
  const updates: OcspUpdate[] = [];
  const opened = await openServerOcspResponse([leaf.der, ca.der], 0, { timers: inertTimers, storage, onUpdate: (u) => updates.push(u) });
  const handle = opened.handle;
  assert.ok(handle);
  t.after(() => closeServerOcspResponse(handle));
  assert.equal(getServerOcspResponseContext(handle).status, OcspHandleStatus.NO_ERROR);
  assert.deepEqual(await storage.list(), [handle.fingerprint]);
  body = goodUnknown;
  await handle.refresh();
  assert.deepEqual(updates.map((u) => [u.outcome, u.reason, u.serving]), [['stapled', null, true], ['refused', 'ambiguous', false]]);
  assert.equal(getServerOcspResponseContext(handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE, 'the older good staple is no longer handed out');
  assert.deepEqual(await storage.list(), [], 'nor kept for the next start');
});

test('client revocation: an ambiguous OCSP answer is never a pass (hard or soft fail, CRL "good" or not); a CRL "revoked" still decides', async (t) => {
  const ca = await issueCertificate({ subject: { commonName: 'ambiguous client CA' }, ca: true });
  const signer = await issueResponderCertificate(ca);
  const now = Date.now();
  const mk = (certId: pkijs.CertID, status: SingleAnswer['status']): SingleAnswer => ({ certId, status, thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + H), ...(status === 'revoked' ? { revocationTime: new Date(now - H) } : {}) });
  let body: Buffer = Buffer.alloc(0);
  const responder = await fixedResponder(t, () => body);
  let crl: Buffer = Buffer.alloc(0);
  const crlServer = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(crl));
  await new Promise<void>((resolve) => crlServer.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { crlServer.close(() => resolve()); crlServer.closeAllConnections(); }));
  const crlUrl = `http://127.0.0.1:${(crlServer.address() as AddressInfo).port}/ca.crl`;
  const client = await issueCertificate({ subject: { commonName: 'ambiguous client' }, issuer: ca, extKeyUsage: [OID.clientAuth], ocspUrl: responder.url, crlUrl });
  const certId = await certIdFor(client.certificate, ca.certificate);
  const setAnswers = async (f: (id: pkijs.CertID) => SingleAnswer[]) => { body = await buildOcspResponse({ signer, responses: f(certId) }); };

  await setAnswers((id) => [mk(id, 'good'), mk(id, 'revoked')]);
  crl = await buildCrl({ issuer: ca });
  const results: Array<[string, unknown]> = [];
  const { lines, logger } = capture();
  for (const failMode of ['hard', 'soft'] as const) {
    for (const useCrl of [false, true]) {
      const checker = createRevocationChecker({ failMode, fetchCrlDistributionPoints: useCrl, logger });
      const r = await checker.check([client.der, ca.der]);
      results.push([`${failMode}${useCrl ? ' + CRL good' : ''}`, { certFlags: r.certFlags, revocationStatus: r.revocationStatus, source: r.source, reason: r.reason }]);
    }
  }
  const undecided = { certFlags: CertStatus.CRYPT_E_REVOCATION_OFFLINE, revocationStatus: CertStatus.CRYPT_E_REVOCATION_OFFLINE, source: 'none', reason: 'ambiguous' };
  assert.deepEqual(results, [['hard', undecided], ['hard + CRL good', undecided], ['soft', undecided], ['soft + CRL good', undecided]]);
  assert.equal(lines.length, 4, 'one log line per refused response');
  for (const l of lines) {
    assert.deepEqual({ level: l.level, event: l.event, outcome: l.outcome, reason: l.reason, detail: l.detail, serial: l.serial, url: l.url }, {
      level: 40, event: 'revocation-ocsp', outcome: 'refused', reason: 'ambiguous', detail: '2 SingleResponses for this certificate\'s CertID (good, revoked)', serial: serialHex(client.certificate), url: responder.url,
    });
  }

  // "good, then unknown" as well; a CRL that lists the certificate still makes it revoked.
  await setAnswers((id) => [mk(id, 'good'), mk(id, 'unknown')]);
  const unknownDup = await createRevocationChecker({ failMode: 'soft', fetchCrlDistributionPoints: false }).check([client.der, ca.der]);
  assert.deepEqual({ certFlags: unknownDup.certFlags, reason: unknownDup.reason }, { certFlags: CertStatus.CRYPT_E_REVOCATION_OFFLINE, reason: 'ambiguous' });
  crl = await buildCrl({ issuer: ca, revoked: [{ serialHex: serialHex(client.certificate) }] });
  const byCrl = await createRevocationChecker({ failMode: 'soft' }).check([client.der, ca.der]);
  assert.deepEqual({ certFlags: byCrl.certFlags, source: byCrl.source }, { certFlags: CertStatus.CERT_E_REVOKED, source: 'crl' });

  // Control: the same responder answering once is a pass.
  await setAnswers((id) => [mk(id, 'good')]);
  const once = await createRevocationChecker({ fetchCrlDistributionPoints: false }).check([client.der, ca.der]);
  assert.deepEqual({ certFlags: once.certFlags, source: once.source }, { certFlags: 0, source: 'ocsp' });
});

test('server: a client certificate whose responder answers "good, then revoked" is refused over TLS, and the server logs why', async (t) => {
  const pki = await devPki();
  const dir = tempDir();
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const signer = await issueResponderCertificate(clientCa);
  let body: Buffer = Buffer.alloc(0);
  const responder = await fixedResponder(t, () => body);
  const client = await issueCertificate({ subject: { commonName: 'ambiguous-client' }, issuer: clientCa, extKeyUsage: [OID.clientAuth], ocspUrl: responder.url });
  writeFileSync(join(dir, 'c.pem'), client.pem);
  writeFileSync(join(dir, 'c.key'), client.keyPem);
  const certId = await certIdFor(parseCertificate(client.der), clientCa.certificate);
  const now = Date.now();
  body = await buildOcspResponse({ signer, responses: [
    { certId, status: 'good', thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + H) },
    { certId, status: 'revoked', revocationTime: new Date(now - H), thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + H) },
  ] });
  const { lines, logger } = capture();
  const optional = await startServer(t, 'optional', { logger, revocation: { fetchCrlDistributionPoints: false, failMode: 'soft' } });
  const refused = await get(optional.port, '/connection', { cert: join(dir, 'c.pem'), key: join(dir, 'c.key') });
  assert.equal(refused.status, 403);
  assert.deepEqual((refused.json() as { code: string; certFlagsName: string }).certFlagsName, 'CRYPT_E_REVOCATION_OFFLINE');
  assert.equal((refused.json() as { code: string }).code, 'CB_ERR_CLIENT_CERT_UNTRUSTED');
  assert.equal(responder.requests(), 1);
  const why = lines.filter((l) => l.event === 'revocation-ocsp');
  assert.deepEqual(why.map((l) => [l.component, l.reason, l.serial]), [['revocation', 'ambiguous', serialHex(client.certificate)]]);
});
