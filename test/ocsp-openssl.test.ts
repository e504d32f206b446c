// Against real peers: a real `openssl ocsp` responder feeds the stapler, and
// `openssl s_client -status` sees the staple from the very first handshake (a revoked
// certificate gets none). Our dev responder's answers are checked by `openssl ocsp`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import tls from 'node:tls';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { buildOcspRequest, parseCertificate, serialHex } from '../src/ocsp/request.js';
import { fetchOcsp } from '../src/ocsp/fetch.js';
import { createStapler, type OcspStapler } from '../src/ocsp/stapler.js';
import { issueResponderCertificate, startDevOcspResponder } from '../src/ocsp/responder.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

function opensslTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
}

function indexLine(c: IssuedCertificate, revokedAt?: Date): string {
  const serial = serialHex(c.certificate).toUpperCase().padStart(2, '0');
  const even = serial.length % 2 ? '0' + serial : serial;
  return [revokedAt ? 'R' : 'V', opensslTime(c.certificate.notAfter.value), revokedAt ? opensslTime(revokedAt) : '', even, 'unknown', `/CN=${c.certificate.subject.typesAndValues.at(-1)?.value.valueBlock.value as string}`].join('\t') + '\n';
}

/** Waits until the responder answers a real OCSP request (never a bare TCP probe: it wedges). */
async function waitForResponder(url: string, cert: IssuedCertificate, issuer: IssuedCertificate): Promise<void> {
  const req = await buildOcspRequest(parseCertificate(cert.der), parseCertificate(issuer.der));
  for (let i = 0; i < 100; i++) {
    const r = await fetchOcsp(url, req.der, { timeoutMs: 2000, method: 'POST' });
    if (r.ok) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('openssl ocsp did not come up');
}

interface OpensslPki { dir: string; ca: IssuedCertificate; good: IssuedCertificate; second: IssuedCertificate; revoked: IssuedCertificate; url: string; child: ChildProcess }

async function opensslResponder(t: { after(fn: () => unknown): void }): Promise<OpensslPki> {
  const dir = tempDir('certbound-ocsp-openssl-');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const ca = await issueCertificate({ subject: { commonName: 'openssl ocsp test CA' }, ca: true });
  const signer = await issueResponderCertificate(ca, { commonName: 'openssl ocsp responder' });
  const good = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost', '127.0.0.1'], ocspUrl: url });
  const second = await issueCertificate({ subject: { commonName: 'second.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['second.test'], ocspUrl: url });
  const revoked = await issueCertificate({ subject: { commonName: 'revoked.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['revoked.test'], ocspUrl: url });
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  writeFileSync(join(dir, 'r.pem'), signer.pem);
  writeFileSync(join(dir, 'r.key'), signer.keyPem);
  writeFileSync(join(dir, 'index.txt'), indexLine(good) + indexLine(second) + indexLine(revoked, new Date(Date.now() - 60_000)));
  writeFileSync(join(dir, 'index.txt.attr'), 'unique_subject = no\n');
  const child = spawn('openssl', ['ocsp', '-index', join(dir, 'index.txt'), '-port', String(port), '-rsigner', join(dir, 'r.pem'), '-rkey', join(dir, 'r.key'), '-CA', join(dir, 'ca.pem'), '-nmin', '60', '-ignore_err'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  t.after(() => { child.kill('SIGKILL'); });
  await waitForResponder(url, good, ca).catch((err: Error) => { throw new Error(`${err.message}: ${stderr}`); });
  return { dir, ca, good, second, revoked, url, child };
}

async function listen(server: https.Server, t: { after(fn: () => unknown): void }): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  return (server.address() as AddressInfo).port;
}

test('openssl ocsp responder → stapler → s_client -status sees the staple on the first handshake; revoked gets none', async (t) => {
  const pki = await opensslResponder(t);
  const stapler: OcspStapler = createStapler({ cacheDir: join(pki.dir, 'staples') });
  t.after(() => stapler.close());
  const revokedEvents: string[] = [];
  stapler.on('revoked', (u) => revokedEvents.push(u.cert));
  const goodState = await stapler.add([pki.good.pem, pki.ca.pem]);
  const revokedState = await stapler.add([pki.revoked.pem, pki.ca.pem]);
  assert.equal((await stapler.add(pki.second.pem + pki.ca.pem))?.stapled, true, 'PEM chain in one string');
  assert.equal(goodState?.stapled, true);
  assert.equal(goodState?.certStatus, 'good');
  assert.equal(revokedState?.stapled, false);
  assert.equal(revokedState?.certStatus, 'revoked');
  assert.deepEqual(revokedEvents, ['revoked.test']);

  const revokedCtx = tls.createSecureContext({ cert: pki.revoked.pem + pki.ca.pem, key: pki.revoked.keyPem });
  const secondCtx = tls.createSecureContext({ cert: pki.second.pem + pki.ca.pem, key: pki.second.keyPem });
  const server = https.createServer({
    cert: pki.good.pem + pki.ca.pem,
    key: pki.good.keyPem,
    SNICallback: (name, cb) => cb(null, name === 'revoked.test' ? revokedCtx : name === 'second.test' ? secondCtx : undefined),
  }, (_req, res) => res.end('ok'));
  stapler.attach(server);
  const port = await listen(server, t);

  const first = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-status', '-CAfile', join(pki.dir, 'ca.pem')], { timeoutMs: 10_000 });
  assert.match(first.stdout, /OCSP Response Status: successful/);
  assert.match(first.stdout, /Cert Status: good/);
  assert.match(first.stdout, /Responder Id: .*CN = openssl ocsp responder/);

  const rev = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'revoked.test', '-status', '-CAfile', join(pki.dir, 'ca.pem')], { timeoutMs: 10_000 });
  assert.match(rev.stdout, /OCSP response: no response sent/);
  assert.match(rev.stdout, /CN = revoked.test/, 'the SNI context served the revoked certificate');
  // Another certificate on another SNI context gets its own staple (keyed by the certificate).
  const sec = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'second.test', '-status', '-CAfile', join(pki.dir, 'ca.pem')], { timeoutMs: 10_000 });
  assert.match(sec.stdout, /Cert Status: good/);
  assert.match(sec.stdout, /subject=CN = second.test/);
  const serialOf = (out: string) => /Serial Number: ([0-9A-F]+)/.exec(out)?.[1];
  assert.equal(serialOf(sec.stdout), serialHex(pki.second.certificate).toUpperCase());
  assert.equal(serialOf(first.stdout), serialHex(pki.good.certificate).toUpperCase());
  const m = stapler.metrics();
  assert.equal(m.revoked, 1);
  assert.equal(m.handshakesStapled, 2);
  assert.equal(m.handshakesUnstapled, 1);
  assert.equal(m.byReason['cert-revoked'], 1);
});

test('dev responder answers verify with openssl ocsp (-url query and -respin -verify_other)', async (t) => {
  const dir = tempDir('certbound-ocsp-dev-');
  const ca = await issueCertificate({ subject: { commonName: 'dev responder test CA' }, ca: true });
  const signer = await issueResponderCertificate(ca);
  const responder = await startDevOcspResponder({ issuer: ca, responder: signer, validityMinutes: 5 });
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'leaf.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: responder.url });
  const gone = await issueCertificate({ subject: { commonName: 'gone.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: responder.url });
  responder.revoke(serialHex(gone.certificate));
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  writeFileSync(join(dir, 'r.pem'), signer.pem);
  writeFileSync(join(dir, 'leaf.pem'), leaf.pem);
  writeFileSync(join(dir, 'gone.pem'), gone.pem);

  const q = await run('openssl', ['ocsp', '-issuer', join(dir, 'ca.pem'), '-cert', join(dir, 'leaf.pem'), '-url', responder.url, '-CAfile', join(dir, 'ca.pem'), '-respout', join(dir, 'leaf.der'), '-resp_text'], { timeoutMs: 10_000 });
  assert.match(q.stderr + q.stdout, /Response verify OK/);
  assert.match(q.stdout, /leaf.pem: good/);
  assert.match(q.stdout, /Responder Id: .*CN = certbound dev OCSP responder/);
  assert.match(q.stdout, /WARNING|Nonce/, 'openssl sends a nonce by default');

  const qr = await run('openssl', ['ocsp', '-issuer', join(dir, 'ca.pem'), '-cert', join(dir, 'gone.pem'), '-url', responder.url, '-CAfile', join(dir, 'ca.pem')], { timeoutMs: 10_000 });
  assert.match(qr.stderr + qr.stdout, /Response verify OK/);
  assert.match(qr.stdout, /gone.pem: revoked/);

  // The saved response, verified offline with the responder certificate given explicitly.
  const v = await run('openssl', ['ocsp', '-respin', join(dir, 'leaf.der'), '-no_nonce', '-CAfile', join(dir, 'ca.pem'), '-verify_other', join(dir, 'r.pem'), '-issuer', join(dir, 'ca.pem'), '-cert', join(dir, 'leaf.pem')], { timeoutMs: 10_000 });
  assert.match(v.stderr + v.stdout, /Response verify OK/);
  assert.match(v.stdout, /This Update: .*\n\s*Next Update: /);

  // A CA that is not the issuer must not accept it.
  const other = await issueCertificate({ subject: { commonName: 'someone else' }, ca: true });
  writeFileSync(join(dir, 'other.pem'), other.pem);
  const bad = await run('openssl', ['ocsp', '-respin', join(dir, 'leaf.der'), '-no_nonce', '-CAfile', join(dir, 'other.pem'), '-issuer', join(dir, 'ca.pem'), '-cert', join(dir, 'leaf.pem')], { timeoutMs: 10_000 });
  assert.doesNotMatch(bad.stderr + bad.stdout, /Response verify OK/);
});
