// The server side of the paired aids (bench/lib/callgrind.ts, bench/lib/memory-paired.ts):
// bench/bench-server.ts's certbound, fastify and https servers with the certbound code taken
// from a checkout given as the first argument (this one, or a worktree of the code before a
// change), and under-pressure's event-loop limit raised out of reach (valgrind runs ~50x
// slower; the check itself still runs per request).
// Usage: node --import tsx bench/lib/checkout-server.ts <checkout-root> <certbound|fastify|https> <dev-pki-dir>
// Prints {"port":N}; stdin `stats` answers bench-server's CPU line, `mem` answers the memory after two full GCs (--expose-gc) and the
// open connections; closes when stdin ends.
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createInterface } from 'node:readline';
import Fastify from 'fastify';

const [rootArg, kind, pkiDir] = process.argv.slice(2) as [string, string, string];
const root = pathToFileURL(resolve(rootArg) + '/').href;
const { createServer } = await import(new URL('src/server/server.ts', root).href) as typeof import('../../src/server/server.js');
const { devPkiPaths } = await import(new URL('src/tls/dev-pki.ts', root).href) as typeof import('../../src/tls/dev-pki.js');
const { bindingHex } = await import(new URL('src/cbt/binding.ts', root).href) as typeof import('../../src/cbt/binding.js');
const pki = devPkiPaths(pkiDir);
const cert = readFileSync(pki.server);
const key = readFileSync(pki.serverKey);
const ca = readFileSync(pki.caBundle);
const SAME_LENGTH_BODY = JSON.stringify({ sha1: '0'.repeat(40), binding: '0'.repeat(64) });

let port: number;
let close: () => Promise<void>;
let tlsServer: { on(e: 'secureConnection', f: (s: TLSSocket) => void): unknown };
if (kind === 'certbound' || kind === 'certbound-no-pressure') {
  // certbound-no-pressure: without under-pressure, to see its share.
  const server = createServer({ cert, key, ca, clientAuth: 'optional', logger: false, underPressure: kind === 'certbound' ? { maxEventLoopDelay: 3_600_000 } : false });
  server.app.get('/bench', async (request) => {
    const sha1 = request.clientCertificate()?.sha1 ?? null;
    const r = request as unknown as { channelBinding(t: 'tls-exporter'): { value?: Buffer } };
    return { sha1, binding: bindingHex(r.channelBinding('tls-exporter') as never) };
  });
  tlsServer = server.server;
  port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
  close = () => server.close();
} else if (kind === 'fastify') {
  const app = Fastify({ logger: false, https: { cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' } });
  const fixed = JSON.parse(SAME_LENGTH_BODY) as { sha1: string; binding: string };
  app.get('/bench', async () => ({ sha1: fixed.sha1, binding: fixed.binding }));
  tlsServer = app.server as never;
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
  close = () => app.close();
} else if (kind === 'https') {
  const server = createHttpsServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(SAME_LENGTH_BODY) });
    res.end(SAME_LENGTH_BODY);
  });
  server.keepAliveTimeout = 65_000;
  tlsServer = server;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
} else {
  throw new Error(`unknown server kind ${kind}`);
}
let connections = 0;
const counted = (server: { on(e: 'secureConnection', f: (s: TLSSocket) => void): unknown }) => server.on('secureConnection', (s: TLSSocket) => { connections++; s.once('close', () => connections--); });
counted(tlsServer);
const gc = (globalThis as { gc?: () => void }).gc;
process.stdout.write(JSON.stringify({ port }) + '\n');
let handshakes = 0;
tlsServer.on('secureConnection', () => { handshakes++; });
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'stats') {
    const cpu = process.cpuUsage();
    process.stdout.write(JSON.stringify({ cpuMicros: cpu.user + cpu.system, handshakes, connections }) + '\n');
    return;
  }
  if (line !== 'mem') return;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  process.stdout.write(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, connections }) + '\n');
}).on('close', () => { void close().finally(() => process.exit(0)); setTimeout(() => process.exit(0), 5000).unref(); });
