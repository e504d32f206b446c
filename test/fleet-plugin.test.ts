// Fleet mode through the library paths (the CLI's three machines are in test/fleet.test.ts):
// two fastify apps with the plugin's `fleet` option, and a createServer with `fleet` options, on
// one real redis-server stand in for three machines. One OCSP retrieval staples all three; a
// ticket from one resumes on another with the client's identity restored; a Redis that is
// paused (SIGSTOP: connections open, no answers) leaves handshakes in milliseconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { certboundPlugin } from '../src/server/plugin.js';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { issueCertificate, OID } from '../src/tls/cert-builder.js';
import { startDevOcspResponder } from '../src/ocsp/responder.js';
import { createFleet, type Fleet } from '../src/fleet/fleet.js';
import { fleetSessionIdContext } from '../src/fleet/fleet-rules.js';
import { startRedis } from './helpers/redis.js';

interface Answer { status: number; body: string; reused: boolean; session: Buffer | undefined; ms: number }

/** One GET over a fresh TLS 1.3 connection (optionally resuming `session`), with the client certificate. */
function get(port: number, path: string, creds: { cert: string; key: string; ca: string }, session?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let ticket: Buffer | undefined;
    const s: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: creds.ca, cert: creds.cert, key: creds.key, minVersion: 'TLSv1.3', ...(session ? { session } : {}) });
    s.on('session', (sess: Buffer) => { ticket = sess; });
    let data = '';
    let reused = false;
    s.once('secureConnect', () => reused = s.isSessionReused());
    s.once('secureConnect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    s.on('data', (d: Buffer) => { data += d.toString(); });
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.on('close', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), body: body.replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, ''), reused, session: ticket, ms: performance.now() - started });
    });
  });
}

test('library and plugin: one OCSP retrieval for three machines, tickets resume across them with the identity, a paused Redis never slows a handshake', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const ca = await issueCertificate({ subject: { commonName: 'fleet plugin CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, port: 0 });
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });
  const client = await issueCertificate({ subject: { commonName: 'fleet client' }, issuer: ca, extKeyUsage: [OID.clientAuth] });
  const creds = { cert: client.pem, key: client.keyPem, ca: ca.pem };
  const secret = 'fleet secret of this test, 48 bytes long........';
  const fleets: Fleet[] = [];
  const apps: FastifyInstance[] = [];
  t.after(async () => {
    for (const a of apps) await a.close();
    for (const f of fleets) await f.close();
  });
  const route = (app: FastifyInstance, name: string) => app.get('/who', async (request) => {
    const c = request.clientCertificate();
    return { machine: name, sha256: c?.sha256 ?? null, authorized: c?.authorized ?? false };
  });
  // Two plugin apps: their TLS servers carry the fleet's session id context.
  const ports: number[] = [];
  for (const name of ['A', 'B']) {
    const fleet = createFleet({ url: redis.url, secret, machine: name });
    fleets.push(fleet);
    const app = Fastify({ https: { cert: leaf.pem, key: leaf.keyPem, ca: ca.pem, requestCert: true, rejectUnauthorized: false, sessionIdContext: fleetSessionIdContext(fleet.namespace, 'optional') } });
    apps.push(app);
    await app.register(certboundPlugin, { clientAuth: 'optional', fleet, ocsp: { cert: leaf.pem, ca: ca.pem } });
    route(app, name);
    await app.listen({ host: '127.0.0.1', port: 0 });
    ports.push((app.server.address() as AddressInfo).port);
  }
  // And createServer with fleet options (it opens and closes its own connection).
  const server: CertboundServer = createServer({ cert: leaf.pem, key: leaf.keyPem, ca: ca.pem, clientAuth: 'optional', logger: false, ocsp: true, fleet: { url: redis.url, secret, machine: 'C' } });
  route(server.app, 'C');
  t.after(() => server.close());
  ports.push((await server.listen({ host: '127.0.0.1', port: 0 })).port);

  assert.equal(responder.requests, 1, 'one retrieval for the three machines');
  const serial = new X509Certificate(leaf.pem).serialNumber.toLowerCase();
  const staples = apps.map((a) => (a as unknown as { ocspStaple(): { thisUpdate: string | null; stapled: boolean; serial: string | null } }).ocspStaple());
  const c = server.app.ocspStaple();
  assert.deepEqual(staples.map((s) => [s.stapled, s.serial, s.thisUpdate]), [[true, serial, c.thisUpdate], [true, serial, c.thisUpdate]], 'the same response everywhere');
  assert.equal(c.stapled, true);
  const sha256 = new X509Certificate(client.pem).fingerprint256.replace(/:/g, '').toLowerCase();

  // A ticket from each machine resumes on the next one, the identity and verdict restored.
  for (let i = 0; i < 3; i++) {
    const first = await get(ports[i] as number, '/who', creds);
    assert.equal(first.reused, false);
    assert.ok(first.session, 'a ticket was issued');
    const next = (i + 1) % 3;
    const again = await get(ports[next] as number, '/who', creds, first.session);
    assert.equal(again.reused, true, `a ticket from ${'ABC'[i]} resumes on ${'ABC'[next]}`);
    assert.deepEqual(JSON.parse(again.body), { machine: 'ABC'[next], sha256, authorized: true });
  }
  assert.equal(server.fleet?.status().state, 'connected');

  // Redis paused: every operation answers "on your own" within the command timeout; handshakes never wait on it.
  redis.pause();
  try {
    const first = await get(ports[0] as number, '/who', creds);
    const again = await get(ports[1] as number, '/who', creds, first.session);
    assert.equal(again.reused, true, 'the keys in force stay (no one can rotate them)');
    assert.ok(first.ms < 500 && again.ms < 500, `handshakes took ${first.ms.toFixed(0)} and ${again.ms.toFixed(0)} ms`);
    // A read that times out (1 s) marks the fleet degraded; the server stays ready.
    await server.fleet?.read('staple', 'x');
    assert.equal(server.fleet?.status().state, 'degraded');
    const ready = await server.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.equal((ready.json() as { fleet: { state: string } }).fleet.state, 'degraded');
  } finally {
    redis.resume();
  }
  const deadline = Date.now() + 8000;
  while (server.fleet?.status().state !== 'connected' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(server.fleet?.status().state, 'connected', 'rejoined once Redis answers');
  assert.equal(responder.requests, 1, 'still one retrieval');
});
