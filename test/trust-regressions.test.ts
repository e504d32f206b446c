// One regression test per finding of the trust redesign (docs/architecture.md): each failed
// open on the code before it. Real TLS on 127.0.0.1; the forged and revoked certificates are
// made here with the project's certificate builder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { certboundPlugin } from '../src/server/plugin.js';
import { serve } from '../src/server/cli.js';
import { receiveClientCertificate, receiveClientCertificateAsync, type ReceiveResult } from '../src/server/receive.js';
import { negotiateClientCertificate } from '../src/server/negotiate.js';
import { issueCertificate, issueCrl, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { buildCrl } from '../src/ocsp/responder.js';
import { serialHex } from '../src/ocsp/request.js';
import { CertStatus, Win32 } from '../src/status.js';
import { servableRelayedStaple } from '../src/server/cluster.js';
import { isCertboundError } from '../src/errors.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { get, startServer } from './helpers/server.js';

interface Refused { code: string; certFlagsName?: string }
interface Cert { identity: string | null; authorized: boolean; reason: string; certFlags: number; certFlagsName: string; deniedByMapper: boolean; revocation: { source: string } | null }

/** Writes a certificate and its key to files (for clients that take paths). */
function files(dir: string, name: string, c: IssuedCertificate): { cert: string; key: string } {
  writeFileSync(join(dir, `${name}.pem`), c.pem);
  writeFileSync(join(dir, `${name}.key`), c.keyPem, { mode: 0o600 });
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

/** A client certificate of the dev client CA, and that CA's CRL listing it. */
async function revokedByDevCa(dir: string, commonName: string) {
  const pki = await devPki();
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const victim = await issueCertificate({ subject: { commonName }, issuer: clientCa, extKeyUsage: [OID.clientAuth] });
  return { victim, v: files(dir, 'victim', victim), crl: await issueCrl({ issuer: clientCa, revoked: [victim] }) };
}

/** A client CA whose CRL distribution point (a loopback HTTP server) lists `revoked`. */
async function crlDpPki(t: { after(fn: () => unknown): void }) {
  const dir = tempDir();
  const ca = await issueCertificate({ subject: { commonName: 'crl-dp client CA' }, ca: true });
  let crl: Buffer = Buffer.alloc(0);
  const srv = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(crl));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  const crlUrl = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/ca.crl`;
  const good = await issueCertificate({ subject: { commonName: 'crl-good' }, issuer: ca, extKeyUsage: [OID.clientAuth], crlUrl });
  const revoked = await issueCertificate({ subject: { commonName: 'crl-revoked' }, issuer: ca, extKeyUsage: [OID.clientAuth], crlUrl });
  crl = await buildCrl({ issuer: ca, revoked: [{ serialHex: serialHex(revoked.certificate) }] });
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  return { caFile: join(dir, 'ca.pem'), good: files(dir, 'good', good), revoked: files(dir, 'revoked', revoked) };
}

test('finding 1: serve --client-auth require --client-revocation check refuses a revoked certificate (403, then close) on /connection and /whoami', async (t) => {
  const pki = await devPki();
  const p = await crlDpPki(t);
  const server = await serve(['--port', '0', '--log-level', 'silent', '--workers', '1', '--client-auth', 'require', '--client-revocation', 'check',
    '--cert', pki.server, '--key', pki.serverKey, '--ca', p.caFile]);
  assert.ok(server);
  t.after(() => server.close());
  const port = (server.server.address() as AddressInfo).port;
  for (const path of ['/connection', '/whoami', '/']) {
    const r = await get(port, path, p.revoked);
    assert.equal(r.status, 403, `${path}: ${r.body}`);
    assert.deepEqual([(r.json() as Refused).code, (r.json() as Refused).certFlagsName], ['CB_ERR_CLIENT_CERT_UNTRUSTED', 'CERT_E_REVOKED'], path);
    assert.equal(r.headers.connection, 'close', 'require mode ends the connection after the refusal');
  }
  const ok = await get(port, '/connection', p.good);
  assert.equal(ok.status, 200);
  const c = (ok.json() as { clientCertificate: Cert }).clientCertificate;
  assert.deepEqual([c.authorized, c.reason, c.certFlags, c.revocation?.source], [true, 'authorized', 0, 'crl']);
});

test('finding 2: receiveClientCertificate (every form), negotiateClientCertificate and request.negotiateClientCertificate() read the revocation verdict', async (t) => {
  const dir = tempDir();
  const { v, crl } = await revokedByDevCa(dir, 'revoked-by-crl');
  const outside: Promise<[ReceiveResult, ReceiveResult]>[] = [];
  const started = await startServer(t, 'accept-untrusted', { revocation: { crls: [crl], ocsp: false, fetchCrlDistributionPoints: false } }, ({ app, server, queue }) => {
    // Before any request: the synchronous form fails closed while the check runs; the
    // overlapped form waits for it.
    server.on('secureConnection', (s) => {
      setImmediate(() => {
        const entry = [...app.certbound.registry.entries()].find((e) => e.socket === s);
        if (!entry) return;
        const sync = receiveClientCertificate(queue, entry.id, 0, 4096);
        outside.push(receiveClientCertificateAsync(queue, entry.id, 0, 4096).then((async) => [sync, async]));
      });
    });
    app.get('/negotiate', async (request) => {
      const mine = await request.negotiateClientCertificate();
      const iis = await negotiateClientCertificate(request);
      return { mine: { authorized: mine.authorized, certFlags: mine.certificate?.certFlags, source: mine.certificate?.revocation?.source }, iis: { authorized: iis.authorized, certFlags: iis.certificate?.certFlags } };
    });
  });
  const r = await get(started.port, '/negotiate', v);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(r.json(), { mine: { authorized: false, certFlags: CertStatus.CERT_E_REVOKED, source: 'crl' }, iis: { authorized: false, certFlags: CertStatus.CERT_E_REVOKED } });
  assert.equal(outside.length, 1);
  const [sync, async] = await (outside[0] as Promise<[ReceiveResult, ReceiveResult]>);
  assert.equal(sync.status, Win32.NO_ERROR);
  assert.equal(sync.certInfo?.certFlags, CertStatus.CRYPT_E_NO_REVOCATION_CHECK, 'not yet checked: fails closed');
  assert.equal(sync.certInfo?.authorized, false);
  assert.equal(sync.certInfo?.reason, 'revocation-pending');
  assert.equal(async.certInfo?.certFlags, CertStatus.CERT_E_REVOKED, 'the overlapped form completes with the checked verdict');
  assert.equal(async.certInfo?.authorized, false);
  assert.equal(async.certInfo?.reason, 'revoked');
});

test('finding 3: required and on-demand routes reached without TLS answer 403 CB_ERR_TLS_REQUIRED and never run their handler', async (t) => {
  for (const clientAuth of ['optional', 'require'] as const) {
    const app = Fastify();
    let ran = 0;
    await app.register(certboundPlugin, { clientAuth });
    app.get('/od', { config: { clientCertificate: 'on-demand' } }, async () => { ran++; return 'od'; });
    app.post('/od', { config: { clientCertificate: 'on-demand' } }, async () => { ran++; return 'od'; });
    app.get('/req', { config: { clientCertificate: 'required' } }, async () => { ran++; return 'req'; });
    app.get('/plain', async () => 'plain');
    await app.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => app.close());
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    for (const [method, path] of [['GET', '/od'], ['POST', '/od'], ['GET', '/req']] as const) {
      const r = await fetch(base + path, { method, ...(method === 'POST' ? { body: 'x' } : {}) });
      assert.equal(r.status, 403, `${clientAuth} ${method} ${path}`);
      assert.equal(((await r.json()) as Refused).code, 'CB_ERR_TLS_REQUIRED');
    }
    const plain = await fetch(`${base}/plain`);
    assert.equal(plain.status, clientAuth === 'require' ? 403 : 200, `plain route in ${clientAuth} mode`);
    assert.equal(ran, 0, 'no handler ran');
  }
});

test('finding 4: routes the plugin never saw are refused; unknown route and plugin option values stop start-up', async (t) => {
  const early = Fastify();
  let ran = 0;
  early.get('/early', { config: { clientCertificate: 'required' } }, async () => { ran++; return 'served'; });
  early.get('/early-binding', { config: { channelBinding: true } }, async () => { ran++; return 'served'; });
  await early.register(certboundPlugin, {});
  await early.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => early.close());
  for (const path of ['/early', '/early-binding']) {
    const r = await fetch(`http://127.0.0.1:${(early.server.address() as AddressInfo).port}${path}`);
    assert.equal(r.status, 500, path);
    assert.equal(((await r.json()) as Refused).code, 'CB_ERR_ROUTE_UNGUARDED');
  }
  assert.equal(ran, 0);

  const typo = Fastify();
  await typo.register(certboundPlugin, {});
  assert.throws(() => typo.get('/typo', { config: { clientCertificate: 'require' as never } }, async () => 'served'),
    (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /config\.clientCertificate of route GET \/typo/.test((err as Error).message));

  for (const bad of [{ clientAuth: 'maybe' }, { clientAuht: 'require' }, { revocation: { certCheckMode: 99 } }, { revocation: { failMode: 'lenient' } }, { negotiationTimeout: -1 }, { channelBinding: { type: 'tls-unique-ish' } }]) {
    const app = Fastify();
    await assert.rejects(async () => { await app.register(certboundPlugin, bad as never); }, (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION'), JSON.stringify(bad));
  }
  const pki = await devPki();
  const base = { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), logger: false as const };
  for (const bad of [{ clientAuth: 'maybe' }, { clientAuht: 'require' }, { revocation: { certCheckMode: 99 } }, { onDemandHosts: 'localhost' }]) {
    await assert.rejects(async () => startServer(undefined, 'optional', { ...base, ...bad } as never), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION'), JSON.stringify(bad));
  }
});

test('finding 5: a certificate that does not verify never reaches an on-demand route, in none and accept-untrusted modes', async (t) => {
  const pki = await devPki();
  for (const mode of ['none', 'accept-untrusted'] as const) {
    let ran = 0;
    const { port } = await startServer(t, mode, { ca: readFileSync(pki.caBundle) }, ({ app }) => app.get('/od', { config: { clientCertificate: 'on-demand' } }, async () => { ran++; return 'served'; }));
    for (const path of ['/od', '/whoami']) {
      const r = await get(port, path, { cert: pki.clientExpired, key: pki.clientExpiredKey, maxVersion: 'TLSv1.2' });
      assert.equal(r.status, 403, `${mode} ${path}`);
      assert.deepEqual([(r.json() as Refused).code, (r.json() as Refused).certFlagsName], ['CB_ERR_CLIENT_CERT_UNTRUSTED', 'CERT_E_EXPIRED']);
    }
    const ok = await get(port, '/od', { cert: pki.client, key: pki.clientKey, maxVersion: 'TLSv1.2' });
    assert.equal(ok.status, 200);
    assert.equal(ran, 1, `${mode}: only the authorized request ran the handler`);
  }
});

/** Raw TLS 1.2 exchange with SNI `servername`: writes `payload`, reads until the server closes. */
function rawTls(port: number, servername: string, payload: string, cert: string, key: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername, maxVersion: 'TLSv1.2', rejectUnauthorized: false, cert: readFileSync(cert), key: readFileSync(key) }, () => s.write(payload));
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { data += d; });
    const timer = setTimeout(() => s.destroy(), 8000);
    s.on('close', () => { clearTimeout(timer); resolve(data); });
    s.on('error', () => {});
  });
}

test('finding 6: on the TLS 1.2 twin (onDemandHosts), requests pipelined behind an on-demand POST see the negotiated certificate', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), onDemandHosts: ['twin.localhost'] }, ({ app }) => app.post('/upload', { config: { clientCertificate: 'on-demand' } }, async (request) => ({ sha1: request.clientCertificate()?.sha1 })));
  const body = 'x'.repeat(5000);
  const data = await rawTls(port, 'twin.localhost',
    `POST /upload HTTP/1.1\r\nHost: twin.localhost\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
    'GET /connection HTTP/1.1\r\nHost: twin.localhost\r\n\r\nGET /connection HTTP/1.1\r\nHost: twin.localhost\r\nConnection: close\r\n\r\n', pki.client, pki.clientKey);
  const answers = data.split(/HTTP\/1\.1 /).slice(1);
  assert.equal(answers.length, 3, data);
  const sha1 = new X509Certificate(readFileSync(pki.client)).fingerprint.replace(/:/g, '').toLowerCase();
  for (const a of answers) {
    assert.match(a, /^200/);
    assert.ok(a.includes(`"sha1":"${sha1}"`), `every pipelined answer carries the negotiated certificate: ${a.slice(0, 200)}`);
  }
});

test('finding 7: a relayed staple is served by a worker only while valid for SrvOcspRespMinValiditySeconds (table)', () => {
  const der = Buffer.from([1, 2, 3]);
  const now = Date.UTC(2026, 11, 1);
  const rows: Array<[string, Parameters<typeof servableRelayedStaple>[0], Buffer | null]> = [
    ['valid for an hour, min 600 s', { der, nextUpdate: now + 3_600_000, minValiditySeconds: 600 }, der],
    ['valid for exactly 600 s', { der, nextUpdate: now + 600_000, minValiditySeconds: 600 }, der],
    ['valid for 599 s: not served though before nextUpdate', { der, nextUpdate: now + 599_000, minValiditySeconds: 600 }, null],
    ['past nextUpdate', { der, nextUpdate: now - 1, minValiditySeconds: 0 }, null],
    ['no response', { der: null, nextUpdate: now + 3_600_000, minValiditySeconds: 600 }, null],
    ['no nextUpdate', { der, nextUpdate: null, minValiditySeconds: 600 }, null],
    ['nothing relayed', undefined, null],
  ];
  for (const [name, staple, want] of rows) assert.equal(servableRelayedStaple(staple, now), want, name);
});

/** The docs' mapper example (docs/client-auth-modes.md), and a forged leaf: same subject as the dev client, under a self-made CA named like the dev client CA. */
async function forged() {
  const dir = tempDir();
  const fakeCa = await issueCertificate({ subject: { commonName: 'certbound dev client CA', organization: 'certbound dev' }, ca: true });
  const leaf = await issueCertificate({ subject: { commonName: 'dev-client', organization: 'certbound dev', organizationalUnit: 'users' }, issuer: fakeCa, extKeyUsage: [OID.clientAuth] });
  return files(dir, 'forged', leaf);
}
const DOCS_MAPPER = { manyToOne: [
  { name: 'users', rules: [{ field: 'subject' as const, attribute: 'OU', match: 'users' }, { field: 'issuer' as const, attribute: 'CN', match: 'certbound dev client CA' }], identity: 'dev-user' },
  { name: 'no outsiders', rules: [{ field: 'issuer' as const, attribute: 'O', match: 'elsewhere' }], deny: true },
] };

test('finding 9: a forged certificate named like a real user under a look-alike CA gets no identity (/whoami in none, /connection in accept-untrusted)', async (t) => {
  const pki = await devPki();
  const f = await forged();
  const none = await startServer(t, 'none', { mapper: DOCS_MAPPER, onDemandHosts: ['localhost'] });
  const who = await get(none.port, '/whoami', f);
  assert.equal(who.status, 403, who.body);
  assert.equal((who.json() as Refused).certFlagsName, 'CERT_E_UNTRUSTEDCA');
  assert.ok(!who.body.includes('dev-user'));
  const real = await get(none.port, '/whoami', { cert: pki.client, key: pki.clientKey });
  assert.equal((real.json() as { identity: string }).identity, 'dev-user', 'the real user still maps');

  const accept = await startServer(t, 'accept-untrusted', { mapper: DOCS_MAPPER });
  const c = (await get(accept.port, '/connection', f)).json() as { clientCertificate: Cert };
  assert.deepEqual([c.clientCertificate.identity, c.clientCertificate.authorized, c.clientCertificate.reason, c.clientCertificate.certFlagsName], [null, false, 'untrusted', 'CERT_E_UNTRUSTEDCA']);
});

test('finding 10: the plugin\'s default mode is optional: a route marked required refuses a certificate that does not verify', async (t) => {
  const pki = await devPki();
  const app = Fastify({ https: { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), requestCert: true, rejectUnauthorized: false } });
  await app.register(certboundPlugin);
  app.get('/admin', { config: { clientCertificate: 'required' } }, async (request) => ({ certFlags: request.clientCertificate()?.certFlags }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  assert.equal(app.certbound.clientAuth, 'optional');
  const port = (app.server.address() as AddressInfo).port;
  const call = (cert: string, key: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/admin', agent: false, rejectUnauthorized: false, cert: readFileSync(cert), key: readFileSync(key) }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  for (const [cert, key] of [[pki.clientExpired, pki.clientExpiredKey], [pki.clientUntrusted, pki.clientUntrustedKey], [pki.clientWrongUsage, pki.clientWrongUsageKey]] as const) {
    const r = await call(cert, key);
    assert.equal(r.status, 403, `${cert}: ${r.body}`);
  }
  assert.deepEqual(await call(pki.client, pki.clientKey), { status: 200, body: '{"certFlags":0}' });
});

test('require mode over HTTP/2: a revoked certificate gets 403 and the session is closed (no Connection header on h2)', async (t) => {
  const pki = await devPki();
  const dir = tempDir();
  const { v, crl } = await revokedByDevCa(dir, 'revoked-h2');
  const { port } = await startServer(t, 'require', { http2: true, revocation: { crls: [crl], ocsp: false, fetchCrlDistributionPoints: false } });
  const { connect: h2connect } = await import('node:http2');
  const session = h2connect(`https://127.0.0.1:${port}`, { servername: 'localhost', ca: readFileSync(pki.rootCa), cert: readFileSync(v.cert), key: readFileSync(v.key) });
  session.on('error', () => {});
  const closed = new Promise<void>((r) => session.once('close', () => r()));
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = session.request({ ':path': '/connection' });
    let body = '';
    let status = 0;
    req.on('response', (h) => { status = Number(h[':status']); });
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
    req.end();
  });
  assert.equal(answer.status, 403, answer.body);
  assert.equal((JSON.parse(answer.body) as Refused).certFlagsName, 'CERT_E_REVOKED');
  await closed;
  assert.ok(session.closed || session.destroyed, 'the server closed the session');
});

test('a revoked certificate stays revoked whatever the client sends after it (the issuer is the one that signed it), library and plugin, soft fail', async (t) => {
  const pki = await devPki();
  const dir = tempDir();
  const { victim, v, crl } = await revokedByDevCa(dir, 'revoked-with-extras');
  // A look-alike of the client CA: same name, same subject key id, another key (openssl makes it).
  const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec((await run('openssl', ['x509', '-in', pki.clientCa, '-noout', '-ext', 'subjectKeyIdentifier'])).stdout)?.[1];
  assert.ok(ski, 'read the client CA\'s subject key id');
  const fake = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-keyout', join(dir, 'fake.key'), '-out', join(dir, 'fake.pem'),
    '-subj', '/O=certbound dev/CN=certbound dev client CA', '-addext', `subjectKeyIdentifier=${ski}`, '-addext', 'basicConstraints=critical,CA:TRUE']);
  assert.equal(fake.code, 0, fake.stderr);
  const extras: Array<[string, string]> = [['nothing', ''], ['the root CA', readFileSync(pki.rootCa, 'utf8')], ['another user\'s certificate', readFileSync(pki.client, 'utf8')], ['a look-alike CA with the real key id', readFileSync(join(dir, 'fake.pem'), 'utf8')]];
  const revocation = { crls: [crl], ocsp: false, fetchCrlDistributionPoints: false, failMode: 'soft' as const };
  const lib = await startServer(t, 'require', { revocation }, ({ app }) => app.get('/req', { config: { clientCertificate: 'required' } }, async () => 'served'));
  const plugged = Fastify({ https: { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), requestCert: true, rejectUnauthorized: true } });
  await plugged.register(certboundPlugin, { clientAuth: 'require', revocation });
  plugged.get('/req', { config: { clientCertificate: 'required' } }, async () => 'served');
  await plugged.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => plugged.close());
  for (const [name, extra] of extras) {
    writeFileSync(join(dir, 'sent.pem'), victim.pem + extra);
    for (const [where, port] of [['createServer', lib.port], ['plugin', (plugged.server.address() as AddressInfo).port]] as const) {
      for (const path of where === 'plugin' ? ['/req'] : ['/req', '/connection']) {
        const r = await get(port, path, { cert: join(dir, 'sent.pem'), key: v.key });
        assert.equal(r.status, 403, `${where} ${path}, revoked + ${name}: ${r.body}`);
        assert.equal((r.json() as Refused).certFlagsName, 'CERT_E_REVOKED', `${where} ${path}, revoked + ${name}`);
      }
    }
  }
});

test('the plugin refuses to be registered inside an encapsulated context, whose hooks would not guard its siblings', async () => {
  const app = Fastify();
  app.register(async (child) => child.get('/early-child', { config: { clientCertificate: 'required' } }, async () => 'served'));
  app.register(async (scope) => { await scope.register(certboundPlugin); });
  await assert.rejects(async () => { await app.ready(); }, (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /root fastify instance/.test((err as Error).message));
  // At the root (also through another fastify-plugin wrapper) it is accepted.
  const root = Fastify();
  root.register((await import('fastify-plugin')).default(async (wrapper) => { await wrapper.register(certboundPlugin); }));
  await root.ready();
  assert.equal(root.certbound.clientAuth, 'optional');
  await root.close();
});

test('an on-demand route whose body arrives after another API negotiated a bad certificate on the connection still refuses (the preHandler reads the decision)', async (t) => {
  const pki = await devPki();
  let ran = 0;
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), underPressure: false }, ({ app }) => {
    app.get('/neg', async (request) => (await request.negotiateClientCertificate()).authorized);
    app.post('/secure', { config: { clientCertificate: 'on-demand' } }, async () => { ran++; return 'served'; });
  });
  const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, maxVersion: 'TLSv1.2', cert: readFileSync(pki.clientUntrusted), key: readFileSync(pki.clientUntrustedKey) });
  let data = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => { data += d; });
  s.on('error', () => {});
  await new Promise((r) => s.once('secureConnect', r));
  // The POST's headers arrive with the GET; its body only after the GET's handler renegotiated.
  s.write('GET /neg HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /secure HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n');
  for (let i = 0; i < 100 && !data.includes('false'); i++) await new Promise((r) => setTimeout(r, 20));
  s.write('hello');
  for (let i = 0; i < 100 && (data.match(/HTTP\/1\.1 /g) ?? []).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  s.destroy();
  const answers = data.split(/HTTP\/1\.1 /).slice(1);
  assert.equal(answers.length, 2, data);
  assert.match(answers[0] as string, /^200[\s\S]*\r\n\r\nfalse$/, 'the GET negotiated an untrusted certificate');
  assert.match(answers[1] as string, /^403[\s\S]*"certFlagsName":"CERT_E_UNTRUSTEDCA"/, 'the on-demand POST is refused');
  assert.equal(ran, 0, 'its handler never ran');
});

test('a route that returns request.connectionId (a bigint) answers it as a decimal string, in plugin and createServer apps', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'optional', {}, ({ app }) => app.get('/id', async (request) => ({ id: request.connectionId })));
  const r = await get(port, '/id', { cert: pki.client, key: pki.clientKey });
  assert.equal(r.status, 200, r.body);
  assert.match((r.json() as { id: string }).id, /^\d+$/);
  const app = Fastify();
  await app.register(certboundPlugin);
  app.get('/big', async () => ({ n: 2n ** 70n, nested: [{ m: 1n }] }));
  const reply = await app.inject('/big');
  assert.equal(reply.statusCode, 200);
  assert.deepEqual(reply.json(), { n: '1180591620717411303424', nested: [{ m: '1' }] });
  await app.close();
  // An app's own reply serialiser is kept.
  const own = Fastify();
  own.setReplySerializer(() => '"mine"');
  await own.register(certboundPlugin);
  own.get('/', async () => ({ a: 1 }));
  assert.equal((await own.inject('/')).body, '"mine"');
  await own.close();
});

test('plugin mode: fastify\'s own "request completed" line carries the connection id and the thumbprint, as request.log does', async (t) => {
  const pki = await devPki();
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>); } };
  const app = Fastify({ logger: { level: 'info', stream }, https: { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), requestCert: true, rejectUnauthorized: false } });
  await app.register(certboundPlugin);
  app.get('/x', async (request) => { request.log.info('in the handler'); return 'ok'; });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  const r = await get((app.server.address() as AddressInfo).port, '/x', { cert: pki.client, key: pki.clientKey });
  assert.equal(r.status, 200);
  const sha1 = new X509Certificate(readFileSync(pki.client)).fingerprint.replace(/:/g, '').toLowerCase();
  for (const msg of ['in the handler', 'request completed']) {
    const line = lines.find((l) => l.msg === msg);
    assert.ok(line, msg);
    assert.match(String(line.connectionId), /^\d+$/, msg);
    assert.equal(line.thumbprint, sha1, msg);
  }
});
