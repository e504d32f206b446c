// createServer's `ocsp` option with the dev PKI and its dev responder (the wiring of
// `certbound serve`): the first handshake is stapled, /connection shows the staple state,
// close() stops the stapler; a certificate without an OCSP URL is served quietly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createDevPki } from '../src/tls/dev-pki.js';
import { createServer } from '../src/server/server.js';
import { runOcspResponderCli, startDevPkiResponder, DEV_OCSP_RESPONDER_FILES } from '../src/ocsp/dev-responder.js';
import { isCertboundError } from '../src/errors.js';
import { X509Certificate } from 'node:crypto';
import { issueCertificate, OID } from '../src/tls/cert-builder.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

function getJson(port: number, ca: string, path: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => { try { resolve(JSON.parse(body) as Record<string, unknown>); } catch (err) { reject(err as Error); } });
    }).on('error', reject);
  });
}

test('createServer({ ocsp }) with the dev PKI: stapled from the first handshake, state in /connection', async (t) => {
  const dir = tempDir('certbound-ocsp-server-');
  const ocspPort = await freePort();
  const paths = await createDevPki(dir, { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
  const responder = await startDevPkiResponder(dir, { port: ocspPort, validityMinutes: 60 });
  t.after(() => responder.close());
  assert.ok(existsSync(join(dir, DEV_OCSP_RESPONDER_FILES.cert)), 'the delegated responder certificate is kept in the dev PKI');

  const server = createServer({
    cert: readFileSync(paths.server), key: readFileSync(paths.serverKey), ca: readFileSync(paths.caBundle),
    logger: false, referenceRoutes: true, ocsp: { cacheDir: join(dir, 'ocsp-cache') },
  });
  t.after(() => server.close());
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  assert.equal(server.ocsp?.states()[0]?.stapled, true, 'stapled before listen resolved');

  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-status', '-CAfile', paths.rootCa], { timeoutMs: 10_000 });
  assert.match(r.stdout, /OCSP Response Status: successful/);
  assert.match(r.stdout, /Cert Status: good/);
  assert.match(r.stdout, /Responder Id: .*CN = certbound dev OCSP responder/);

  const info = await getJson(port, readFileSync(paths.rootCa, 'utf8'), '/connection');
  const ocsp = info.ocsp as Record<string, unknown>;
  assert.equal(ocsp.stapled, true);
  assert.equal(ocsp.certStatus, 'good');
  assert.equal(ocsp.url, `http://127.0.0.1:${ocspPort}/`);
  assert.ok(Date.parse(ocsp.nextUpdate as string) > Date.now());
  assert.ok(Date.parse(ocsp.nextRefresh as string) > Date.now());
  // Only s_client asked for a staple (status_request); Node's https client does not ask.
  assert.deepEqual([server.ocsp?.metrics().handshakesStapled, server.ocsp?.metrics().handshakesUnstapled], [1, 0]);

  await server.close();
  assert.equal(server.ocsp?.states().length, 0, 'close() closed the handles');
});

test('createServer({ ocsp: true }) with a certificate without an OCSP URL: served, quietly unstapled', async (t) => {
  const ca = await issueCertificate({ subject: { commonName: 'no-url CA' }, ca: true });
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'] });
  const server = createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem, clientAuth: 'none', logger: false, referenceRoutes: true, ocsp: true });
  t.after(() => server.close());
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  assert.equal(server.ocsp?.metrics().noOcspUrl, 1);
  const info = await getJson(port, ca.pem, '/connection');
  const fingerprint = new X509Certificate(leaf.pem).fingerprint256.replace(/:/g, '').toLowerCase();
  assert.deepEqual(info.ocsp, {
    state: 'not-stapled', stapled: false, reason: 'no-ocsp-url', certStatus: null, thisUpdate: null, nextUpdate: null, nextRefresh: null,
    url: null, fingerprint, serial: new X509Certificate(leaf.pem).serialNumber.toLowerCase(),
  });
});

test('certbound ocsp-responder: serves the dev PKI, --revoke and --validity-minutes, checked by openssl ocsp', async (t) => {
  const dir = tempDir('certbound-ocsp-cli-');
  const paths = await createDevPki(dir);
  const serial = new X509Certificate(readFileSync(paths.server)).serialNumber;
  const responder = await runOcspResponderCli(['--dev-pki-dir', dir, '--port', '0', '--validity-minutes', '5', '--revoke', serial]);
  t.after(() => responder.close());
  // The client CA certificate is issued by the root: good. The server certificate: revoked.
  const good = await run('openssl', ['ocsp', '-issuer', paths.rootCa, '-cert', paths.clientCa, '-url', responder.url, '-CAfile', paths.rootCa], { timeoutMs: 10_000 });
  assert.match(good.stdout, /client-ca\.pem: good/);
  assert.match(good.stderr + good.stdout, /Response verify OK/);
  const m = /This Update: (.*)\n\s*Next Update: (.*)/.exec(good.stdout);
  assert.ok(m);
  assert.equal(Date.parse(m[2] as string) - Date.parse(m[1] as string), 5 * 60_000);
  const revoked = await run('openssl', ['ocsp', '-issuer', paths.rootCa, '-cert', paths.server, '-url', responder.url, '-CAfile', paths.rootCa], { timeoutMs: 10_000 });
  assert.match(revoked.stdout, /server\.pem: revoked/);
  await assert.rejects(runOcspResponderCli(['--port', 'many']), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION'));
});
