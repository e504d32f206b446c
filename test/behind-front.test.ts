// certbound behind certbound: a plugin app with trustedProxies behind `createServer({ upstream })`
// (the front) reports the same certificate and decision as a server reached directly, for every
// client certificate of the dev PKI; a client's forged headers never reach it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { certboundPlugin } from '../src/server/plugin.js';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { certStatusName } from '../src/status.js';
import type { MapperConfig } from '../src/tls/mapper.js';
import { X509Certificate } from 'node:crypto';
import { devPki, read } from './helpers/pki.js';

interface Cred { cert: string; key: string }
let app: FastifyInstance;
let front: CertboundServer;
let direct: CertboundServer;
let frontPort = 0;
let directPort = 0;

function get(port: number, path: string, cred?: Cred, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  return devPki().then((pki) => new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, localAddress: '127.0.0.2', servername: 'localhost', ca: readFileSync(pki.rootCa), agent: false, headers, ...(cred ?? {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  }));
}

before(async () => {
  const pki = await devPki();
  const mapper: MapperConfig = { oneToOne: [{ thumbprint: new X509Certificate(read(pki.client)).fingerprint, identity: 'alice' }] };
  app = Fastify();
  await app.register(certboundPlugin, { trustedProxies: ['127.0.0.1'], ca: readFileSync(pki.caBundle), mapper });
  const seen = (request: import('fastify').FastifyRequest) => {
    const c = request.clientCertificate();
    return c ? { sha1: c.sha1, subject: c.subject, certFlagsName: certStatusName(c.certFlags), identity: c.identity, authorized: c.authorized, forwarded: c.forwarded ?? false } : { none: true };
  };
  app.get('/cert', async (request) => seen(request));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const common = { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'optional' as const, mapper, logger: false as const, underPressure: false as const };
  front = createServer({ ...common, upstream: { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` } });
  frontPort = (await front.listen({ host: '127.0.0.1', port: 0 })).port;
  direct = createServer(common);
  direct.app.get('/cert', async (request) => seen(request));
  directPort = (await direct.listen({ host: '127.0.0.1', port: 0 })).port;
});
after(async () => {
  await front?.close();
  await direct?.close();
  await app?.close();
});

test('an app behind certbound-the-front reports the certificate and decision of a direct connection', async () => {
  const pki = await devPki();
  const valid = { cert: read(pki.client), key: read(pki.clientKey) };
  const behind = await get(frontPort, '/cert', valid);
  const straight = await get(directPort, '/cert', valid);
  assert.equal(behind.status, 200, JSON.stringify(behind.body));
  assert.deepEqual({ ...behind.body, forwarded: false }, straight.body);
  assert.deepEqual([behind.body.identity, behind.body.certFlagsName, behind.body.forwarded], ['alice', 'OK', true]);
  // No certificate: nothing behind the front either, whatever the client's headers claim.
  const forged = await get(frontPort, '/cert', undefined, { 'client-cert': `:${new X509Certificate(read(pki.client)).raw.toString('base64')}:`, 'certbound-client-identity': 'alice' });
  assert.deepEqual(forged.body, { none: true });
});
