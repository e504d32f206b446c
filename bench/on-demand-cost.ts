// Benchmark: the server CPU an on-demand certificate negotiation adds, certbound against a bare
// node:https server that renegotiates itself (socket.renegotiate({ requestCert: true,
// rejectUnauthorized: false }) in its handler). TLS 1.2, the dev PKI, no certificate asked at
// the handshake. Four sides, side by side in one run: each server's connect + GET /id (which
// renegotiates and answers the client certificate's SHA-1) and its connect + GET /plain (no
// renegotiation, the same bytes). The cost added by a negotiation is, per connection, the
// server CPU-seconds of /id minus those of /plain; the ratio of certbound's to the bare one is
// the figure (target <= 1.2).
// Usage: node --import tsx bench/on-demand-cost.ts [rounds=5] [seconds=5] [concurrency=8] [maxSeconds=150] [--profile (both /id servers)]
import { benchPki, pinSelf } from './lib/child.js';
import { compare, range, type Side, type SideResult } from './lib/compare.js';
import { clientMaterial, fetchOnce, handshakeLoad, loadArgs } from './lib/load.js';
import { median, printTarget, table } from './lib/stats.js';

pinSelf();
const argv = process.argv.slice(2);
const { rounds, seconds, connections: concurrency, maxMs } = loadArgs(argv, 8);
const profile = argv.includes('--profile');
const pki = await benchPki();
const material = clientMaterial(pki, { maxVersion: 'TLSv1.2' });
/** Before any round: GET /id answers the client certificate's SHA-1 (a renegotiation really asked for it). */
const answersCertificate = async (port: number) => {
  const r = await fetchOnce(port, material, '/id');
  if (r.status !== 200 || !/^\{"sha1":"[0-9a-f]{40}"\}$/.test(r.body) || r.body.includes('0'.repeat(40))) throw new Error(`GET /id did not answer the client certificate: ${r.status} ${r.body}`);
};
const prof = profile ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/certbound-profiles'] } : {};
const sides: Side[] = [
  { name: 'certbound, GET /id (on demand)', script: 'bench/bench-server.ts', args: ['certbound-on-demand', pki.dir], path: '/id', check: answersCertificate, ...prof },
  { name: 'certbound, GET /plain', script: 'bench/bench-server.ts', args: ['certbound-on-demand', pki.dir], path: '/plain' },
  { name: 'bare node:https, GET /id (renegotiates)', script: 'bench/bench-server.ts', args: ['https-renegotiate', pki.dir], path: '/id', check: answersCertificate, ...prof },
  { name: 'bare node:https, GET /plain', script: 'bench/bench-server.ts', args: ['https-renegotiate', pki.dir], path: '/plain' },
];
const cmp = await compare(sides, rounds, maxMs, 'connections', (port, window, side) => handshakeLoad(port, material, { concurrency, seconds, warmupSeconds: 1, path: side.path as string, window }));

/** Server CPU-µs per connection, per round. */
const cost = (r: SideResult) => r.perCpuSecond.map((x) => 1e6 / x);
const [cbId, cbPlain, bareId, barePlain] = cmp.sides.map(cost) as [number[], number[], number[], number[]];
const added = (withReneg: number[], plain: number[]) => withReneg.map((x, i) => x - (plain[i] as number));
const cbAdded = added(cbId, cbPlain);
const bareAdded = added(bareId, barePlain);
const ratio = (median(cbId) - median(cbPlain)) / (median(bareId) - median(barePlain));
const perRound = cbAdded.map((x, i) => x / (bareAdded[i] as number));

console.log('### On-demand negotiation: server CPU added by one renegotiation\n');
console.log(`TLS 1.2, ECDSA P-256, the dev PKI (client chain: leaf, intermediate), no certificate asked at the handshake; ${concurrency} concurrent connect-request-close loops, ${seconds} s per round after 1 s warm-up, every connection a full handshake; servers on CPU 0, load generator on CPU 1. certbound: \`clientAuth: 'none'\`, GET /id with \`config: { clientCertificate: 'on-demand' }\`. Bare: \`node:https\` calling \`socket.renegotiate({ requestCert: true, rejectUnauthorized: false })\` in its handler. Target: certbound's added cost <= 1.2x the bare one.\n`);
console.log(cmp.markdown);
console.log('\nServer CPU per connection (µs, medians over rounds), and what the renegotiation adds:\n');
console.log(table(['server', 'connect + GET /plain', 'connect + GET /id with renegotiation', 'added by the renegotiation', 'added, per round min–max'], [
  ['certbound', median(cbPlain), median(cbId), median(cbId) - median(cbPlain), range(cbAdded, 0)],
  ['bare node:https', median(barePlain), median(bareId), median(bareId) - median(barePlain), range(bareAdded, 0)],
]));
console.log(`\nAdded cost, certbound / bare node:https: **${ratio.toFixed(3)}** (of the medians; per round ${range(perRound)}). Target <= 1.2.`);
if (!profile) printTarget({ target: 'on-demand negotiation: added server CPU, certbound / bare node:https renegotiation', measured: ratio.toFixed(3), goal: '<= 1.2', met: ratio <= 1.2 });
