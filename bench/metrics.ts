// Benchmark: the cost of metrics on the hot path. Keep-alive requests/s on established mTLS
// connections, certbound with metrics off (prom-client not loaded) vs on (every request
// observed in a histogram, every handshake and decision counted). docs/metrics.md.
// Usage: node --import tsx bench/metrics.ts [rounds=3] [seconds=5] [connections=32] [maxSeconds=120]
import { pinSelf, benchPki } from './lib/child.js';
import { compare } from './lib/compare.js';
import { clientMaterial, keepAliveLoad, loadArgs } from './lib/load.js';

pinSelf();
const { rounds, seconds, connections, maxMs } = loadArgs(process.argv.slice(2), 32);
const pki = await benchPki();
const material = clientMaterial(pki);
const cmp = await compare(
  [
    { name: 'metrics on', script: 'bench/bench-server.ts', args: ['certbound-metrics', pki.dir] },
    { name: 'metrics off', script: 'bench/bench-server.ts', args: ['certbound', pki.dir] },
  ],
  rounds,
  maxMs,
  'requests',
  (port, window) => keepAliveLoad(port, material, { connections, seconds, warmupSeconds: 1, path: '/bench', window }),
);
console.log(`### Keep-alive requests/s, metrics on vs off\n`);
console.log(`TLS 1.3, ECDSA P-256 server and client certificates, ${connections} connections, one request in flight each, ${seconds} s per round after 1 s warm-up. Target: metrics on >= 0.97 of off.\n`);
console.log(cmp.markdown);
