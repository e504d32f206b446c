// Benchmark 1: keep-alive requests/s on established mTLS connections. certbound (clientAuth
// 'optional', a route reading request.clientCertificate() and the tls-exporter channel
// binding on every request) vs a bare fastify 5 HTTPS app with the same certificates and
// requestCert (answering the same JSON shape with fixed values, reading nothing) vs nginx
// (one worker, `ssl_verify_client on`, the same bytes; bench/lib/nginx.ts), when installed.
// Twice: one request in flight per connection, then `--depth` pipelined requests per connection.
// Usage: node --import tsx bench/keepalive.ts [rounds=5] [seconds=5] [connections=32] [maxSeconds=120] [--depth 16] [--profile] [--no-nginx]
import { pinSelf, benchPki } from './lib/child.js';
import { compare, type Side } from './lib/compare.js';
import { clientMaterial, flagNumber, keepAliveLoad, loadArgs } from './lib/load.js';
import { nginxMissing, startNginx } from './lib/nginx.js';
import { median, printTarget } from './lib/stats.js';

pinSelf();
const argv = process.argv.slice(2);
const { rounds, seconds, connections, maxMs } = loadArgs(argv, 32);
const depth = Math.max(2, Math.min(64, flagNumber(argv, 'depth', 16)));
const profile = argv.includes('--profile');
const pki = await benchPki();
const material = clientMaterial(pki);
const missing = argv.includes('--no-nginx') ? 'nginx column left out (--no-nginx).' : nginxMissing();
const sides: Side[] = [
  { name: 'certbound', script: 'bench/bench-server.ts', args: ['certbound', pki.dir], ...(profile ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/certbound-profiles'] } : {}) },
  { name: 'bare fastify', script: 'bench/bench-server.ts', args: ['fastify', pki.dir] },
  ...(missing ? [] : [{ name: 'nginx', start: () => startNginx(pki) }]),
];
// The profile covers the first comparison only (a profiled run is for shares, not figures).
for (const d of profile ? [1] : [1, depth]) {
  const cmp = await compare(sides, rounds, maxMs, 'requests', (port, window) => keepAliveLoad(port, material, { connections, seconds, warmupSeconds: 1, path: '/bench', depth: d, window }));
  console.log(d === 1 ? '### Keep-alive requests/s on established mTLS connections, one request in flight\n' : `### Keep-alive requests/s on established mTLS connections, ${d} pipelined requests per connection\n`);
  console.log(`TLS 1.3, ECDSA P-256 server and client certificates, ${connections} connections, ${d === 1 ? 'one request in flight each' : `${d} requests written at once on each, the next ${d} when all are answered`}, ${seconds} s per round after 1 s warm-up; servers on CPU 0, load generator on CPU 1. Target: certbound >= 0.97 of bare fastify.\n`);
  console.log(cmp.markdown);
  const [cb, fastify] = cmp.sides as [typeof cmp.sides[number], typeof cmp.sides[number]];
  const r = median(cb.perCpuSecond) / median(fastify.perCpuSecond);
  if (!profile) printTarget({ target: `keep-alive, ${d === 1 ? 'one request in flight' : `${d} pipelined`}: certbound / bare fastify`, measured: r.toFixed(3), goal: '>= 0.97', met: r >= 0.97 });
  if (missing) console.log(`\n${missing}`);
  console.log('');
}
