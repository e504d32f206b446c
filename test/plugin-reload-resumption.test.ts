// The plugin on an app's own https server: after the app changes its trust the documented way
// (server.setSecureContext, then reloadTrust), a session from before — TLS 1.3 ticket, TLS 1.2
// ticket, TLS 1.2 session id from the app's store — resumes with the verdict of the trust in
// force: revoked by the new CRL, then untrusted once the CA is gone. (Found by an outside attack:
// reloadTrust left resumed sessions judged by the start-up material, authorized.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { createDevPki } from '../src/tls/dev-pki.js';
import { issueCrl, loadIssuer } from '../src/tls/cert-builder.js';
import { reloadTrust } from '../src/server/reload.js';
import certbound from '../src/server/plugin.js';
import { tempDir } from './helpers/pki.js';

interface Visit { reused: boolean; status: string; body: { authorized?: boolean; certFlagsName?: string }; session: Buffer | undefined }

for (const mode of ['ticket13', 'ticket12', 'sessionid'] as const) {
  test(`plugin + reloadTrust: an old ${mode} session resumes revoked, then untrusted`, async (t) => {
    const pki = await createDevPki(join(tempDir('certbound-plugin-reload-'), 'pki'));
    const r = (p: string) => readFileSync(p, 'utf8');
    const clientCa = await loadIssuer(r(pki.clientCa), r(pki.clientCaKey));
    const root = await loadIssuer(r(pki.rootCa), r(pki.rootCaKey));
    const client = await loadIssuer(r(pki.client), r(pki.clientKey));
    const [crlOk, crlRevoking, crlRoot] = await Promise.all([issueCrl({ issuer: clientCa }), issueCrl({ issuer: clientCa, revoked: [client] }), issueCrl({ issuer: root })]);
    const ca = r(pki.rootCa) + r(pki.clientCa);
    const base = { cert: r(pki.server), key: r(pki.serverKey), ca, crl: [crlOk, crlRoot], requestCert: true, rejectUnauthorized: false, ticketKeys: randomBytes(48) };
    const app = Fastify({ https: base });
    t.after(() => app.close());
    if (mode === 'sessionid') {
      const store = new Map<string, Buffer>();
      app.server.on('newSession', (id: Buffer, data: Buffer, cb: () => void) => { store.set(id.toString('hex'), data); cb(); });
      app.server.on('resumeSession', (id: Buffer, cb: (err: null, data: Buffer | null) => void) => cb(null, store.get(id.toString('hex')) ?? null));
    }
    await app.register(certbound, { clientAuth: 'optional' });
    app.get('/who', { config: { clientCertificate: 'required' } }, async (req) => {
      const c = req.clientCertificate();
      return { authorized: c?.authorized, certFlagsName: c?.certFlags === 0 ? 'OK' : String(c?.certFlags) };
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const version = mode === 'ticket13' ? 'TLSv1.3' : 'TLSv1.2';
    const visit = (session?: Buffer) => new Promise<Visit>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, cert: r(pki.client) + r(pki.clientCa), key: r(pki.clientKey), minVersion: version, maxVersion: version, ...(session ? { session } : {}) });
      let got: Buffer | undefined;
      let buf = '';
      let reused = false;
      s.on('session', (x: Buffer) => { got = x; });
      s.on('secureConnect', () => { reused = s.isSessionReused(); s.write('GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'); });
      s.setEncoding('utf8');
      s.on('data', (d: string) => { buf += d; });
      s.on('end', () => setTimeout(() => resolve({ reused, status: buf.split(' ')[1] ?? '', body: JSON.parse(buf.slice(buf.indexOf('\r\n\r\n') + 4) || '{}'), session: got ?? session }), 20));
      s.on('error', reject);
    });
    const first = await visit();
    assert.deepEqual([first.status, first.body], ['200', { authorized: true, certFlagsName: 'OK' }]);
    assert.ok(first.session, 'the client got a session');

    app.server.setSecureContext({ ...base, crl: [crlRevoking, crlRoot] });
    await reloadTrust(app.certbound.registry, app.server, { ca, crl: [crlRevoking, crlRoot] });
    const revoked = await visit(first.session);
    assert.equal(revoked.reused, true, 'the old session resumed');
    assert.deepEqual([revoked.status, revoked.body.certFlagsName], ['403', 'CERT_E_REVOKED']);
    const who = await visit();
    assert.equal(who.status, '403', 'a full handshake is refused too');

    app.server.setSecureContext({ ...base, ca: r(pki.server), crl: undefined });
    await reloadTrust(app.certbound.registry, app.server, { ca: r(pki.server) });
    const gone = await visit(first.session);
    assert.equal(gone.reused, true, 'the old session resumed');
    assert.deepEqual([gone.status, gone.body.certFlagsName], ['403', 'CERT_E_UNTRUSTEDCA'], 'the CA is gone: the resumed session is not authorized');
  });
}
