// Server side of the benchmarks, run pinned to its own core by bench/lib/child.ts.
// Usage: node --import tsx bench/bench-server.ts <kind> <dev-pki-dir>
// Kinds: certbound, certbound-metrics, fastify, https (GET /bench); certbound-stapling,
// certbound-revocation-crl, certbound-revocation-ocsp (GET /bench, with the material of
// bench/lib/trust-pki.ts); certbound-on-demand, https-renegotiate (GET /id asks for the
// certificate on demand, GET /plain does not; bench/on-demand-cost.ts).
// Prints {"port":N} once listening. Stdin commands, one per line, each answered with one JSON
// line: `stats` (CPU time used, handshakes, connections), `mem` (memory after two full GCs,
// needs --expose-gc). End of stdin closes the server and exits.
import { createInterface } from 'node:readline';
import { constants as cryptoConstants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import Fastify from 'fastify';
import { createServer } from '../src/server/server.js';
import { devPkiPaths } from '../src/tls/dev-pki.js';
import { serverChannelBinding } from '../src/cbt/server-bindings.js';
import { bindingHex } from '../src/cbt/binding.js';
import { DEFAULTS } from '../src/defaults.js';
// The baselines answer a body of the same length without reading anything.
import { CONTENT_TYPE, SAME_LENGTH_BODY } from './lib/body.js';
import { TRUST_PKI_CRL } from './lib/trust-pki.js';
import { join } from 'node:path';

const ZERO_SHA1 = '0'.repeat(40);

const kind = process.argv[2] ?? 'certbound';
const pki = devPkiPaths(process.argv[3] ?? '.certbound');
const cert = readFileSync(pki.server);
const key = readFileSync(pki.serverKey);
const ca = readFileSync(pki.caBundle);

let handshakes = 0;
let connections = 0;
const count = (server: { on(e: 'secureConnection', f: (s: TLSSocket) => void): unknown }) => {
  server.on('secureConnection', (s: TLSSocket) => {
    handshakes++;
    connections++;
    s.once('close', () => connections--);
  });
};

let close: () => Promise<void>;
let port: number;
if (kind === 'certbound' || kind === 'certbound-metrics' || kind === 'certbound-stapling' || kind.startsWith('certbound-revocation-')) {
  // certbound-metrics: the same server with metrics on (bench/metrics.ts; docs/metrics.md).
  // certbound-stapling: OCSP stapling on (the server certificate's AIA responder, run by the
  // bench). certbound-revocation-*: client-certificate revocation checked from a loaded CRL
  // (nothing fetched) or from the leaf's AIA OCSP responder (fetched once, then cached).
  const extra = kind === 'certbound-metrics' ? { metrics: { port: 0 } }
    : kind === 'certbound-stapling' ? { ocsp: true }
      : kind === 'certbound-revocation-crl' ? { revocation: { crls: [readFileSync(join(pki.dir, TRUST_PKI_CRL))], ocsp: false, fetchCrlDistributionPoints: false } }
        : kind === 'certbound-revocation-ocsp' ? { revocation: { ocsp: true, fetchCrlDistributionPoints: false } }
          : {};
  if (kind.startsWith('certbound-revocation-') && !('revocation' in extra)) throw new Error(`unknown server kind ${kind}`);
  const server = createServer({ cert, key, ca, clientAuth: 'optional', logger: false, ...extra });
  server.app.get('/bench', async (request) => {
    const sha1 = request.clientCertificate()?.sha1 ?? null;
    // request.channelBinding once the plugin decorates it; the same function underneath.
    const r = request as unknown as { channelBinding?: (t: 'tls-exporter') => { value?: Buffer } };
    const binding = typeof r.channelBinding === 'function' ? r.channelBinding('tls-exporter') : serverChannelBinding(request.raw.socket as TLSSocket, 'tls-exporter');
    return { sha1, binding: bindingHex(binding as never) };
  });
  // What the bench checks before measuring: the decision with its revocation outcome, the staple state.
  server.app.get('/state', async (request) => {
    const c = request.clientCertificate();
    return { certFlags: c?.certFlags ?? null, revocation: c?.revocation ?? null, ocsp: server.app.ocspStaple() };
  });
  count(server.server);
  port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
  close = () => server.close();
} else if (kind === 'certbound-on-demand') {
  const server = createServer({ cert, key, ca, clientAuth: 'none', logger: false });
  server.app.get('/id', { config: { clientCertificate: 'on-demand' } }, async (request) => ({ sha1: request.clientCertificate()?.sha1 ?? null }));
  server.app.get('/plain', async () => ({ sha1: ZERO_SHA1 }));
  count(server.server);
  port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
  close = () => server.close();
} else if (kind === 'https-renegotiate') {
  // A bare node:https server that renegotiates itself on GET /id (TLS 1.2), the same answer.
  // Without SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION (which certbound sets) a Node or
  // OpenSSL client resumes its session instead, and no certificate is asked or sent.
  const server = createHttpsServer({ cert, key, ca, requestCert: false, minVersion: 'TLSv1.2', secureOptions: cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION }, (req, res) => {
    const answer = (sha1: string | null) => {
      const body = JSON.stringify({ sha1 });
      res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url !== '/id') return answer(ZERO_SHA1);
    const socket = req.socket as TLSSocket;
    socket.renegotiate({ requestCert: true, rejectUnauthorized: false }, (err) => {
      if (err) {
        res.writeHead(500).end();
        return;
      }
      answer(socket.getPeerX509Certificate()?.fingerprint.replaceAll(':', '').toLowerCase() ?? null);
    });
  });
  server.keepAliveTimeout = DEFAULTS.keepAliveTimeoutMs;
  server.headersTimeout = DEFAULTS.headersTimeoutMs;
  server.requestTimeout = DEFAULTS.requestTimeoutMs;
  count(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
} else if (kind === 'fastify') {
  const app = Fastify({ logger: false, https: { cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' } });
  // The same JSON shape as certbound's route (serialised by fastify the same way), fixed values.
  const fixed = JSON.parse(SAME_LENGTH_BODY) as { sha1: string; binding: string };
  app.get('/bench', async () => ({ sha1: fixed.sha1, binding: fixed.binding }));
  count(app.server as never);
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
  close = () => app.close();
} else if (kind === 'https') {
  const server = createHttpsServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (_req, res) => {
    res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(SAME_LENGTH_BODY) });
    res.end(SAME_LENGTH_BODY);
  });
  // The same connection timeouts as certbound (node:https keeps idle connections only 5 s).
  server.keepAliveTimeout = DEFAULTS.keepAliveTimeoutMs;
  server.headersTimeout = DEFAULTS.headersTimeoutMs;
  server.requestTimeout = DEFAULTS.requestTimeoutMs;
  count(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
} else {
  throw new Error(`unknown server kind ${kind}`);
}

const gc = (globalThis as { gc?: () => void }).gc;
process.stdout.write(JSON.stringify({ port }) + '\n');
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line === 'stats') {
    const cpu = process.cpuUsage();
    process.stdout.write(JSON.stringify({ cpuMicros: cpu.user + cpu.system, handshakes, connections }) + '\n');
  } else if (line === 'mem') {
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    process.stdout.write(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, connections, gc: gc !== undefined }) + '\n');
  }
});
rl.on('close', () => {
  void close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
});
