// TLS session resumption on a certbound server, with real clients (Node's tls, openssl
// s_client -sess_out/-sess_in, Node's https agent): a session made before a reload that revokes
// the client by CRL or removes its CA must not bring the authorized identity back (a resumed
// handshake gets the verdict a full one gets now), TLS 1.3 and 1.2, optional and require mode;
// and with several server certificates, resumption with SNI works (it failed with a fatal
// internal_error alert when the SNI and start contexts had no session id context).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'node:https';
import type { SecureVersion, TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { createDevPki, type DevPkiPaths } from '../src/tls/dev-pki.js';
import { issueCertificate, issueCrl, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { run } from './helpers/exec.js';
import { getOverTls, type TlsAnswer as Answer } from './helpers/tls-get.js';
import { tempDir } from './helpers/pki.js';

interface Fx {
  pki: DevPkiPaths;
  dir: string;
  serverCert: string;
  serverKey: string;
  /** A second server certificate, for other.test only. */
  other: IssuedCertificate;
  clientCert: string;
  clientKey: string;
  crls: { root: string; clientCa: string; clientCaRevokingClient: string };
}
let fx: Fx;

before(async () => {
  const dir = tempDir('certbound-resumption-');
  const pki = await createDevPki(join(dir, 'pki'));
  const root = await loadIssuer(readFileSync(pki.rootCa, 'utf8'), readFileSync(pki.rootCaKey, 'utf8'));
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const client = await loadIssuer(readFileSync(pki.client, 'utf8'), readFileSync(pki.clientKey, 'utf8'));
  fx = {
    pki, dir,
    serverCert: readFileSync(pki.server, 'utf8'),
    serverKey: readFileSync(pki.serverKey, 'utf8'),
    other: await issueCertificate({ subject: { commonName: 'other C' }, issuer: root, keyAlgorithm: 'ecdsa-p256', extKeyUsage: [OID.serverAuth], altNames: ['other.test'] }),
    clientCert: readFileSync(pki.client, 'utf8'),
    clientKey: readFileSync(pki.clientKey, 'utf8'),
    crls: {
      root: await issueCrl({ issuer: root }),
      clientCa: await issueCrl({ issuer: clientCa }),
      clientCaRevokingClient: await issueCrl({ issuer: clientCa, revoked: [client] }),
    },
  };
});

/** One GET on a new TLS connection with this file's client certificate. */
const get = (port: number, path: string, o: { version: SecureVersion; session?: Buffer; servername?: string }) => getOverTls(port, path, { ...o, cert: fx.clientCert, key: fx.clientKey });

const certOf = (a: Answer) => (JSON.parse(a.body) as { clientCertificate: { authorized: boolean; certFlagsName: string } | null }).clientCertificate;

describe('resumption after a reload', { concurrency: true }, () => {
  for (const mode of ['optional', 'require'] as const) {
    test(`${mode}: a session made before a reload that revokes the client (CRL) or removes its CA resumes, but with the verdict a full handshake gets now (TLS 1.3 and 1.2)`, async (t) => {
      const server: CertboundServer = createServer({
        cert: fx.serverCert, key: fx.serverKey, ca: readFileSync(fx.pki.caBundle), crl: [fx.crls.root, fx.crls.clientCa],
        clientAuth: mode, logger: false, referenceRoutes: true,
      });
      t.after(() => server.close());
      const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
      const sessions = new Map<SecureVersion, Buffer>();
      for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
        const first = await get(port, '/connection', { version });
        assert.equal(first.status, 200);
        assert.deepEqual([first.reused, certOf(first)?.authorized, certOf(first)?.certFlagsName], [false, true, 'OK']);
        assert.ok(first.session, `a ${version} session`);
        sessions.set(version, first.session);
        // Resumption works before the reload: the test below is about the reload, not about resumption.
        const again = await get(port, '/connection', { version, session: first.session });
        assert.deepEqual([again.status, again.reused, certOf(again)?.authorized], [200, true, true]);
      }

      const steps: [string, Parameters<CertboundServer['reload']>[0], string][] = [
        ['CRL revokes the client', { cert: fx.serverCert, key: fx.serverKey, crl: [fx.crls.root, fx.crls.clientCaRevokingClient] }, 'CERT_E_REVOKED'],
        // Only the untrusted CA (and no CRL): the client's chain links to no anchor any more.
        ['CA removed', { cert: fx.serverCert, key: fx.serverKey, ca: readFileSync(fx.pki.untrustedCa), crl: [] }, 'CERT_E_UNTRUSTEDCA'],
      ];
      for (const [what, input, flags] of steps) {
        await server.reload(input);
        for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
          const resumed = await get(port, '/connection', { version, session: sessions.get(version) as Buffer });
          assert.equal(resumed.reused, true, `${what}, ${version}: the session resumed`);
          // Refused as a full handshake with the same certificate is refused now.
          assert.deepEqual([resumed.status, (JSON.parse(resumed.body) as { certFlagsName?: string }).certFlagsName], [403, flags], `${what}, ${version}`);
          if (mode === 'optional') {
            // optional: the request is refused (the connection stays); a full handshake gets the same verdict.
            const full = await get(port, '/connection', { version });
            assert.deepEqual([full.reused, full.status, (JSON.parse(full.body) as { certFlagsName?: string }).certFlagsName], [false, 403, flags]);
          } else {
            // require: the connection closes after the answer, as the handshake would have; a full handshake is refused in TLS.
            assert.deepEqual([resumed.connectionHeader, resumed.ended], ['close', true]);
            const full = await get(port, '/connection', { version }).then((a) => `HTTP ${a.status}`, (err: NodeJS.ErrnoException) => err.code ?? err.message);
            assert.ok(!full.startsWith('HTTP 2') && !full.startsWith('HTTP 4'), `${what}, ${version}: a full handshake is refused in TLS (${full})`);
          }
        }
      }
    });
  }

  test('accept-untrusted, openssl s_client -sess_out / -sess_in: a TLS 1.3 session from before a CRL reload resumes as CERT_E_REVOKED', async (t) => {
    const server = createServer({
      cert: fx.serverCert, key: fx.serverKey, ca: readFileSync(fx.pki.caBundle), crl: [fx.crls.root, fx.crls.clientCa],
      clientAuth: 'accept-untrusted', logger: false, referenceRoutes: true,
    });
    t.after(() => server.close());
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
    const sess = join(fx.dir, 'sess-tls1_3');
    const sClient = (extra: string[]) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_3', '-cert', fx.pki.client, '-key', fx.pki.clientKey, '-quiet', '-ign_eof', ...extra],
      { input: 'GET /connection HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', holdStdinMs: 600, timeoutMs: 8000 });
    const json = (out: string) => JSON.parse(out.slice(out.indexOf('{'))) as { resumed: boolean; clientCertificate: { authorized: boolean; certFlagsName: string } };
    const before = json((await sClient(['-sess_out', sess])).stdout);
    assert.deepEqual([before.resumed, before.clientCertificate.authorized, before.clientCertificate.certFlagsName], [false, true, 'OK']);
    await server.reload({ cert: fx.serverCert, key: fx.serverKey, crl: [fx.crls.root, fx.crls.clientCaRevokingClient] });
    const afterReload = json((await sClient(['-sess_in', sess])).stdout);
    assert.deepEqual([afterReload.resumed, afterReload.clientCertificate.authorized, afterReload.clientCertificate.certFlagsName], [true, false, 'CERT_E_REVOKED']);
  });
});

describe('resumption with several server certificates (SNI)', () => {
  let server: CertboundServer;
  let port: number;
  before(async () => {
    server = createServer({
      certificates: [{ cert: fx.serverCert, key: fx.serverKey }, { cert: fx.other.pem, key: fx.other.keyPem }],
      ca: readFileSync(fx.pki.caBundle), clientAuth: 'optional', logger: false, referenceRoutes: true,
    });
    // The certificate this connection was served, as the server sees it.
    server.app.get('/served', async (request) => (request.raw.socket as TLSSocket).getX509Certificate()?.fingerprint256 ?? 'none');
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  });
  after(() => server?.close());
  const otherFp = () => new X509Certificate(fx.other.pem).fingerprint256;
  const localhostFp = () => new X509Certificate(fx.serverCert).fingerprint256;

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${version}: a session resumes with SNI on the same certificate, with the client's identity`, async () => {
      for (const [name, fp] of [['other.test', otherFp()], ['localhost', localhostFp()]] as const) {
        const first = await get(port, '/served', { version, servername: name });
        assert.deepEqual([first.status, first.reused, first.body, first.peer], [200, false, fp, fp]);
        // A resumed handshake sends no certificate (the server authenticated with the session's
        // keys), and OpenSSL runs no certificate callback for it: the server side has none to name.
        const again = await get(port, '/served', { version, servername: name, session: first.session as Buffer });
        assert.deepEqual([again.status, again.reused, again.peer, again.body], [200, true, undefined, 'none'], `${version} ${name}`);
        const conn = await get(port, '/connection', { version, servername: name, session: first.session as Buffer });
        assert.deepEqual([conn.reused, certOf(conn)?.authorized, certOf(conn)?.certFlagsName], [true, true, 'OK']);
      }
      // A session of one name offered for the other: every context shares the ticket keys, the
      // session id context and the CAs, so it resumes, and it brings only what it holds: this
      // client's own certificate, judged as on a full handshake.
      const fromOther = await get(port, '/connection', { version, servername: 'other.test' });
      const crossed = await get(port, '/connection', { version, servername: 'localhost', session: fromOther.session as Buffer });
      const sha = (a: Answer) => (JSON.parse(a.body) as { clientCertificate: { sha256: string } }).clientCertificate.sha256;
      assert.deepEqual([crossed.status, crossed.reused, certOf(crossed)?.authorized, sha(crossed)], [200, true, true, sha(fromOther)]);
    });
  }

  test('openssl s_client -tls1_3 -sess_in with SNI: Reused, no alert', async () => {
    const sess = join(fx.dir, 'sess-sni');
    const s = (extra: string[]) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'other.test', '-tls1_3', ...extra], { input: '', holdStdinMs: 300, timeoutMs: 8000 });
    const first = await s(['-sess_out', sess]);
    assert.match(first.stdout, /^New, TLSv1\.3,/m);
    const again = await s(['-sess_in', sess]);
    assert.match(again.stdout, /^Reused, TLSv1\.3,/m, again.stderr.slice(0, 400));
    assert.doesNotMatch(again.stderr, /alert/);
  });

  test('a Node https agent (session cache on) makes 6 sequential requests by SNI: 6 × 200, 5 resumed', async () => {
    const agent = new Agent({ keepAlive: false });
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      seen.push(await new Promise<string>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/healthz', servername: 'other.test', rejectUnauthorized: false, agent }, (res) => {
          const reused = (res.socket as TLSSocket).isSessionReused();
          res.resume();
          res.on('end', () => resolve(`${res.statusCode}${reused ? 'R' : ''}`));
        });
        req.on('error', reject);
        req.setTimeout(4000, () => req.destroy(new Error('timeout')));
        req.end();
      }));
    }
    agent.destroy();
    assert.deepEqual(seen, ['200', '200R', '200R', '200R', '200R', '200R']);
  });
});
