// A CA bundle kept through a CA renewal holds an expired copy of the client CA (same name, same
// key) next to the renewed one. OpenSSL verifies the client's chain through the copy valid now;
// certbound's own chain (src/tls/peer-chain.ts linkChain) must take the same one, or the
// connection's decision expires at once (CERT_E_EXPIRED from the chain's earliest notAfter).
// Real TLS: full handshakes and resumed sessions (TLS 1.3 and 1.2, from the verdict cache and
// rebuilt after a reload), the expired copy before the renewed one in the bundle, and after it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { loadIssuer } from '../src/tls/cert-builder.js';
import { pemBlocks } from '../src/tls/pem.js';
import { sessionChainStats } from '../src/tls/session-chains.js';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { devPki } from './helpers/pki.js';
import { getOverTls } from './helpers/tls-get.js';

interface ChainJson { authorized: boolean; certFlags: number; chain: string[] }

const toPem = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;

describe('a CA bundle with an expired copy of the client CA and its renewal (same name and key)', () => {
  let pki: Awaited<ReturnType<typeof devPki>>;
  let rootPem: string;
  let renewedPem: string;
  let expiredPem: string;
  let renewedSha256: string;
  let cert: string;
  let key: string;
  before(async () => {
    pki = await devPki();
    rootPem = readFileSync(pki.rootCa, 'utf8');
    renewedPem = readFileSync(pki.clientCa, 'utf8');
    const root = await loadIssuer(rootPem, readFileSync(pki.rootCaKey, 'utf8'));
    // The client CA as it was before its renewal: the same subject and key, 2020–2021, signed by the root.
    const old = pkijs.Certificate.fromBER(pemBlocks(renewedPem, 'CERTIFICATE')[0] as Buffer);
    old.serialNumber = new asn1js.Integer({ value: 4242 });
    old.notBefore.value = new Date('2020-01-01T00:00:00Z');
    old.notAfter.value = new Date('2021-01-01T00:00:00Z');
    await old.sign(root.privateKey, 'SHA-256');
    expiredPem = toPem(Buffer.from(old.toSchema(true).toBER(false)));
    const expired = new X509Certificate(expiredPem);
    const renewed = new X509Certificate(renewedPem);
    assert.equal(expired.subject, renewed.subject);
    assert.equal(expired.publicKey.export({ format: 'jwk' }).x, renewed.publicKey.export({ format: 'jwk' }).x);
    assert.equal(expired.validTo, 'Jan  1 00:00:00 2021 GMT');
    renewedSha256 = renewed.fingerprint256;
    cert = readFileSync(pki.server, 'utf8');
    key = readFileSync(pki.serverKey, 'utf8');
  });

  for (const order of ['expired copy first', 'renewed copy first'] as const) {
    describe(order, () => {
      let server: CertboundServer;
      let port: number;
      const bundle = () => (order === 'expired copy first' ? rootPem + expiredPem + renewedPem : rootPem + renewedPem + expiredPem);
      before(async () => {
        server = createServer({ cert, key, ca: bundle(), clientAuth: 'optional', logger: false, referenceRoutes: false });
        server.app.get('/chain', async (request) => {
          const c = request.clientCertificate();
          return c ? { authorized: c.authorized, certFlags: c.certFlags, chain: c.chain.map((d) => new X509Certificate(d).fingerprint256) } : null;
        });
        ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
      });
      after(() => server.close());

      for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
        test(`${version}: full handshake, resumed session (cached verdict) and resumed after a reload (chain rebuilt) are authorized through the renewed CA`, async () => {
          const client = { cert: readFileSync(pki.client, 'utf8'), key: readFileSync(pki.clientKey, 'utf8') };
          const full = await getOverTls(port, '/chain', { version, ...client });
          assert.equal(full.status, 200, full.body);
          const fullBody = JSON.parse(full.body) as ChainJson;
          assert.equal(fullBody.certFlags, 0);
          assert.equal(fullBody.authorized, true);
          assert.equal(fullBody.chain.length, 3);
          assert.equal(fullBody.chain[1], renewedSha256, 'the chain goes through the renewed client CA');
          assert.ok(full.session, 'a session to resume');

          const resumed = await getOverTls(port, '/chain', { version, session: full.session, ...client });
          assert.equal(resumed.reused, true);
          assert.deepEqual(JSON.parse(resumed.body), fullBody);

          await server.reload({ cert, key, ca: bundle() });
          const misses = sessionChainStats.misses;
          const rebuilt = await getOverTls(port, '/chain', { version, session: full.session, ...client });
          assert.equal(rebuilt.reused, true);
          assert.equal(sessionChainStats.misses, misses + 1, 'rebuilt after the reload, not read from the cache');
          assert.deepEqual(JSON.parse(rebuilt.body), fullBody);
        });
      }
    });
  }
});
