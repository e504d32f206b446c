// Benchmark 1: keep-alive requests/s on established mTLS connections. certbound (clientAuth
// 'optional', a route reading request.clientCertificate() and the tls-exporter channel
// binding on every request) vs a bare fastify 5 HTTPS app with the same certificates and
// requestCert (answering the same JSON shape with fixed values, reading nothing).
// Usage: node --import tsx bench/keepalive.ts [rounds=3] [seconds=5] [connections=32] [maxSeconds=120] [--profile]
import { pinSelf, benchPki } from './lib/child.js';
import { compare } from './lib/compare.js';
import { clientMaterial, keepAliveLoad, loadArgs } from './lib/load.js';

pinSelf();
const { rounds, seconds, connections, maxMs } = loadArgs(process.argv.slice(2), 32);
const profile = process.argv.includes('--profile');
const pki = await benchPki();
const material = clientMaterial(pki);
const cmp = await compare(
  [
    { name: 'certbound', script: 'bench/bench-server.ts', args: ['certbound', pki.dir], ...(profile ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/certbound-profiles'] } : {}) },
    { name: 'bare fastify', script: 'bench/bench-server.ts', args: ['fastify', pki.dir] },
  ],
  rounds,
  maxMs,
  'requests',
  (port, window) => keepAliveLoad(port, material, { connections, seconds, warmupSeconds: 1, path: '/bench', window }),
);
console.log(`### Keep-alive requests/s on established mTLS connections\n`);
console.log(`TLS 1.3, ECDSA P-256 server and client certificates, ${connections} connections, one request in flight each, ${seconds} s per round after 1 s warm-up; server on CPU 0, load generator on CPU 1. Target: certbound >= 0.95 of bare fastify.\n`);
console.log(cmp.markdown);
