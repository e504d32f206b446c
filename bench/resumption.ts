// Benchmark: resumed vs full mTLS handshakes, certbound vs bare node:https side by side, each
// connection with one request (the same /bench route as bench/handshakes.ts), for TLS 1.3
// tickets and TLS 1.2 tickets. For each server it prints the handshakes per server CPU-second,
// full and resumed, and the resumed/full ratio (how much cheaper a resumed connection is);
// the target is a certbound ratio at least as good as node:https's own. A resumed connection
// still gets its identity and verdict (src/tls/session-chains.ts: a cached verdict per leaf).
// Usage: node --import tsx bench/resumption.ts [rounds=5] [seconds=5] [concurrency=16] [maxSeconds=120] [--profile]
import { pinSelf, benchPki } from './lib/child.js';
import { compare, type Comparison, type Side } from './lib/compare.js';
import { clientMaterial, handshakeLoad } from './lib/load.js';
import { median, printTarget, table } from './lib/stats.js';

pinSelf();
const profile = process.argv.includes('--profile');
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const rounds = Math.max(3, Number(args[0] ?? 5));
const seconds = Number(args[1] ?? 5);
const concurrency = Number(args[2] ?? 16);
const maxMs = Number(args[3] ?? 120) * 1000;
const pki = await benchPki();

const sides: readonly [Side, Side] = [
  { name: 'certbound', script: 'bench/bench-server.ts', args: ['certbound', pki.dir], ...(profile ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/certbound-profiles'] } : {}) },
  { name: 'bare node:https', script: 'bench/bench-server.ts', args: ['https', pki.dir] },
];

const perCpu = (c: Comparison, i: number): number => median(c.sides[i]?.perCpuSecond ?? []);
const rows: Array<Array<string | number>> = [];
const details: string[] = [];
for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
  const material = clientMaterial(pki, { maxVersion: version, ...(version === 'TLSv1.3' ? { minVersion: 'TLSv1.3' } : {}) });
  const run = (resume: boolean) => compare(sides, rounds, maxMs, resume ? 'resumed handshakes' : 'full handshakes',
    (port, window) => handshakeLoad(port, material, { concurrency, seconds, warmupSeconds: 1, path: '/bench', window, resume }));
  const full = await run(false);
  const resumed = await run(true);
  const ratios = [0, 1].map((i) => perCpu(resumed, i) / perCpu(full, i));
  for (const i of [0, 1]) rows.push([`${version === 'TLSv1.3' ? 'TLS 1.3' : 'TLS 1.2'} tickets`, sides[i]?.name ?? '', perCpu(full, i), perCpu(resumed, i), `${(ratios[i] as number).toFixed(2)}x`]);
  const relative = (ratios[0] as number) / (ratios[1] as number);
  printTarget({ target: `resumed/full ratio, ${version === 'TLSv1.3' ? 'TLS 1.3' : 'TLS 1.2'} tickets: certbound's / node:https's`, measured: relative.toFixed(3), goal: '>= 1', met: relative >= 1 });
  details.push(`#### ${version}: full handshakes\n\n${full.markdown}\n\n#### ${version}: resumed handshakes\n\n${resumed.markdown}\n\ncertbound's resumed/full ratio / node:https's: **${((ratios[0] as number) / (ratios[1] as number)).toFixed(3)}** (target: >= 1, within noise).`);
}

console.log('### Resumed vs full mTLS handshakes (a new connection per request)\n');
console.log(`ECDSA P-256 server and client certificates (client chain: leaf, intermediate, root); each connection sends one \`Connection: close\` request; resumed: each of ${concurrency} loops offers the last ticket the server handed it. ${seconds} s per round after 1 s warm-up, rounds alternating, server on CPU 0, load generator on CPU 1. Target: certbound's resumed/full ratio at least node:https's.\n`);
console.log(table(['session', 'server', 'full handshakes per server CPU-second', 'resumed per server CPU-second', 'resumed/full'], rows));
console.log('\n' + details.join('\n\n'));
