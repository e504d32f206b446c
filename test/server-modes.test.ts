// The four client-certificate modes and every CertFlags verdict, from real certificates, over
// real TLS with Node's https client, curl and openssl s_client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CertStatus } from '../src/status.js';
import { issueCertificate, issueCrl, loadIssuer, OID } from '../src/tls/cert-builder.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { get, startServer } from './helpers/server.js';

interface Info { clientCertificate: null | { certFlags: number; certFlagsName: string; sha1: string; chainLength: number; subject: string } }

async function curl(port: number, path: string, cert?: string, key?: string) {
  const pki = await devPki();
  const args = ['-s', '-S', '--max-time', '10', '--cacert', pki.rootCa, '--resolve', `localhost:${port}:127.0.0.1`, '-w', '\n%{http_code}'];
  if (cert) args.push('--cert', cert, '--key', key ?? '');
  args.push(`https://localhost:${port}${path}`);
  const r = await run('curl', args);
  const lines = r.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: lines.join('\n'), exit: r.code, stderr: r.stderr };
}

async function sClient(port: number, path: string, cert?: string, key?: string) {
  const pki = await devPki();
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', pki.rootCa, '-quiet', '-verify_return_error'];
  if (cert) args.push('-cert', cert, '-key', key ?? '');
  const r = await run('openssl', args, { input: `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, timeoutMs: 10_000 });
  const m = /^HTTP\/1\.1 (\d{3})/m.exec(r.stdout);
  const body = r.stdout.split('\r\n\r\n').slice(1).join('\r\n\r\n');
  return { status: m ? Number(m[1]) : 0, body, stderr: r.stderr };
}

const sha1Of = (pemPath: string) => new X509Certificate(readFileSync(pemPath)).fingerprint.replace(/:/g, '').toLowerCase();

test('mode none: no certificate is asked for, even from a client that has one', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none');
  const node = await get(port, '/connection', { cert: pki.client, key: pki.clientKey });
  assert.equal(node.status, 200);
  assert.equal((node.json() as Info).clientCertificate, null);
  const c = await curl(port, '/connection', pki.client, pki.clientKey);
  assert.equal(c.status, 200);
  assert.equal((JSON.parse(c.body) as Info).clientCertificate, null);
  const s = await sClient(port, '/connection', pki.client, pki.clientKey);
  assert.equal(s.status, 200);
  assert.equal((JSON.parse(s.body) as Info).clientCertificate, null);
});

test('mode optional: none is fine, a good certificate is verified, a bad one is refused with 403 and its verdict', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'optional');
  const none = await get(port, '/connection');
  assert.equal(none.status, 200);
  assert.equal((none.json() as Info).clientCertificate, null);

  for (const client of ['node', 'curl', 's_client'] as const) {
    const call = client === 'node'
      ? async (c: string, k: string) => { const r = await get(port, '/connection', { cert: c, key: k }); return { status: r.status, body: r.body }; }
      : client === 'curl' ? (c: string, k: string) => curl(port, '/connection', c, k) : (c: string, k: string) => sClient(port, '/connection', c, k);
    const good = await call(pki.client, pki.clientKey);
    assert.equal(good.status, 200, `${client}: ${good.body}`);
    const info = JSON.parse(good.body) as Info;
    assert.equal(info.clientCertificate?.certFlags, 0, client);
    assert.equal(info.clientCertificate?.sha1, sha1Of(pki.client), client);

    const expired = await call(pki.clientExpired, pki.clientExpiredKey);
    assert.equal(expired.status, 403, client);
    const body = JSON.parse(expired.body) as { code: string; certFlags: number; certFlagsName: string };
    assert.equal(body.code, 'CB_ERR_CLIENT_CERT_UNTRUSTED');
    assert.equal(body.certFlags, CertStatus.CERT_E_EXPIRED);
    assert.equal(body.certFlagsName, 'CERT_E_EXPIRED');
  }
  const wrong = await get(port, '/connection', { cert: pki.clientWrongUsage, key: pki.clientWrongUsageKey });
  assert.equal(wrong.status, 403);
  assert.equal((wrong.json() as { certFlagsName: string }).certFlagsName, 'CERT_E_WRONG_USAGE');
});

test('mode require: a trusted certificate gets in; none or a bad one never reaches the application', async (t) => {
  const pki = await devPki();
  let reached = 0;
  const { server, port } = await startServer(t, 'require');
  server.server.on('request', () => { reached += 1; });
  const good = await get(port, '/connection', { cert: pki.client, key: pki.clientKey });
  assert.equal(good.status, 200);
  assert.equal((good.json() as Info).clientCertificate?.certFlags, 0);
  reached = 0;
  await assert.rejects(get(port, '/connection'), 'a client without a certificate is refused');
  await assert.rejects(get(port, '/connection', { cert: pki.clientExpired, key: pki.clientExpiredKey }));
  await assert.rejects(get(port, '/connection', { cert: pki.clientUntrusted, key: pki.clientUntrustedKey, maxVersion: 'TLSv1.2' }));
  const c = await curl(port, '/connection');
  assert.notEqual(c.status, 200);
  const s = await sClient(port, '/connection');
  assert.equal(s.status, 0, 's_client without a certificate gets no HTTP answer');
  const okCurl = await curl(port, '/connection', pki.client, pki.clientKey);
  assert.equal(okCurl.status, 200);
  assert.equal(reached, 1, 'only the good curl request reached the application');
});

test('mode accept-untrusted: every certificate gets in with its CERT_E_* verdict', async (t) => {
  const pki = await devPki();
  const dir = tempDir();
  // A client that sends its untrusted root along (SELF_SIGNED_CERT_IN_CHAIN), and a self-signed one.
  const withRoot = join(dir, 'untrusted-with-root.pem');
  writeFileSync(withRoot, readFileSync(pki.clientUntrusted, 'utf8') + readFileSync(pki.untrustedCa, 'utf8'));
  const { port } = await startServer(t, 'accept-untrusted');
  const cases: [string, string, string, number][] = [
    ['valid', pki.client, pki.clientKey, CertStatus.OK],
    ['expired', pki.clientExpired, pki.clientExpiredKey, CertStatus.CERT_E_EXPIRED],
    ['issued by an untrusted CA', pki.clientUntrusted, pki.clientUntrustedKey, CertStatus.CERT_E_UNTRUSTEDCA],
    ['chain to an untrusted root', withRoot, pki.clientUntrustedKey, CertStatus.CERT_E_UNTRUSTEDROOT],
    ['self-signed', pki.untrustedCa, pki.untrustedCaKey, CertStatus.CERT_E_UNTRUSTEDROOT],
    ['without clientAuth usage', pki.clientWrongUsage, pki.clientWrongUsageKey, CertStatus.CERT_E_WRONG_USAGE],
  ];
  for (const [name, cert, key, flags] of cases) {
    const r = await get(port, '/connection', { cert, key });
    assert.equal(r.status, 200, name);
    assert.equal((r.json() as Info).clientCertificate?.certFlags, flags, name);
    const c = await curl(port, '/connection', cert, key);
    assert.equal((JSON.parse(c.body) as Info).clientCertificate?.certFlags, flags, `curl: ${name}`);
  }
  const none = await get(port, '/connection');
  assert.equal((none.json() as Info).clientCertificate, null);
});

test('CERT_E_REVOKED for a certificate on a loaded CRL; others on the same server stay good', async (t) => {
  const pki = await devPki();
  const dir = tempDir();
  const root = await loadIssuer(readFileSync(pki.rootCa, 'utf8'), readFileSync(pki.rootCaKey, 'utf8'));
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const victim = await issueCertificate({ subject: { commonName: 'revoked-client' }, issuer: clientCa, extKeyUsage: [OID.clientAuth] });
  writeFileSync(join(dir, 'revoked.pem'), victim.pem);
  writeFileSync(join(dir, 'revoked.key'), victim.keyPem);
  // Node checks a CRL for every CA of the chain: one per CA, one per array element.
  const crl = [await issueCrl({ issuer: root }), await issueCrl({ issuer: clientCa, revoked: [victim] })];
  const { port } = await startServer(t, 'accept-untrusted', { crl });
  const revoked = await get(port, '/connection', { cert: join(dir, 'revoked.pem'), key: join(dir, 'revoked.key') });
  assert.equal((revoked.json() as Info).clientCertificate?.certFlags, CertStatus.CERT_E_REVOKED);
  const good = await get(port, '/connection', { cert: pki.client, key: pki.clientKey });
  assert.equal((good.json() as Info).clientCertificate?.certFlags, 0);
  // openssl agrees that the CRL revokes it.
  writeFileSync(join(dir, 'crl.pem'), crl.join(''));
  const v = await run('openssl', ['verify', '-crl_check_all', '-CAfile', pki.caBundle, '-CRLfile', join(dir, 'crl.pem'), join(dir, 'revoked.pem')]);
  assert.match(v.stdout + v.stderr, /certificate revoked/);
});

test('the chain is captured at the handshake: leaf, intermediate and root', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'optional');
  const r = await get(port, '/connection', { cert: pki.client, key: pki.clientKey });
  const info = r.json() as Info;
  assert.equal(info.clientCertificate?.chainLength, 3);
  assert.match(info.clientCertificate?.subject ?? '', /CN=dev-client/);
});

test('GET / is an HTML page about the connection; /healthz answers', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'optional');
  const page = await get(port, '/', { cert: pki.client, key: pki.clientKey });
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(page.body, /dev-client/);
  assert.match(page.body, new RegExp(sha1Of(pki.client)));
  assert.match(page.body, /Trusted \(certFlags 0\)/);
  assert.doesNotMatch(page.body, /<script/i);
  const health = await get(port, '/healthz');
  assert.equal(health.status, 200);
  assert.deepEqual(health.json(), { status: 'ok' });
});
