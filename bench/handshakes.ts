// Benchmark 2: full mTLS handshakes/s, a new connection per request (ECDSA P-256 server and
// client certificates, no session offered by the client, so every handshake is a full one:
// a resumed one would count as an error). certbound (clientAuth 'optional', the same /bench
// route as bench/keepalive.ts) vs bare fastify and bare node:https with the same TLS options
// vs nginx (one worker, `ssl_verify_client on`, the same bytes; bench/lib/nginx.ts) when installed.
// Also prints the crypto ceiling from `openssl speed -seconds 2 ecdsap256 ecdhp256`.
// Usage: node --import tsx bench/handshakes.ts [rounds=5] [seconds=5] [concurrency=16] [maxSeconds=120] [--profile] [--tls12] [--no-nginx]
import { spawnSync } from 'node:child_process';
import { pinSelf, benchPki, HAS_TASKSET, SERVER_CPUS } from './lib/child.js';
import { compare, type Side } from './lib/compare.js';
import { nginxMissing, startNginx } from './lib/nginx.js';
import { clientMaterial, handshakeLoad, loadArgs } from './lib/load.js';
import { median, printTarget, table } from './lib/stats.js';

pinSelf();
const profile = process.argv.includes('--profile');
const tls12 = process.argv.includes('--tls12');
const { rounds, seconds, connections: concurrency, maxMs } = loadArgs(process.argv.slice(2), 16);
const pki = await benchPki();
const material = clientMaterial(pki, tls12 ? { maxVersion: 'TLSv1.2' } : {});

/** Sign, verify and ECDH operations per second for P-256 on the server core. */
export function opensslCeiling(): { sign: number; verify: number; ecdh: number } | undefined {
  const cmd = HAS_TASKSET ? ['taskset', '-c', SERVER_CPUS, 'openssl'] : ['openssl'];
  const r = spawnSync(cmd[0] as string, [...cmd.slice(1), 'speed', '-seconds', '2', 'ecdsap256', 'ecdhp256'], { encoding: 'utf8', timeout: 30_000 });
  const sv = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(r.stdout);
  const dh = /256 bits ecdh \(nistp256\)\s+[\d.]+s\s+([\d.]+)/.exec(r.stdout);
  if (!sv || !dh) return undefined;
  return { sign: Number(sv[1]), verify: Number(sv[2]), ecdh: Number(dh[1]) };
}

const missing = process.argv.includes('--no-nginx') ? 'nginx column left out (--no-nginx).' : nginxMissing();
const sides: Side[] = [
  { name: 'certbound', script: 'bench/bench-server.ts', args: ['certbound', pki.dir], ...(profile ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/certbound-profiles'] } : {}) },
  { name: 'bare node:https', script: 'bench/bench-server.ts', args: ['https', pki.dir] },
  { name: 'bare fastify', script: 'bench/bench-server.ts', args: ['fastify', pki.dir] },
  ...(missing ? [] : [{ name: 'nginx', start: () => startNginx(pki) }]),
];
const cmp = await compare(
  sides,
  rounds,
  maxMs,
  'handshakes',
  (port, window) => handshakeLoad(port, material, { concurrency, seconds, warmupSeconds: 1, path: '/bench', window }),
);
console.log(`### Full mTLS handshakes/s (a new connection per request)\n`);
console.log(`${tls12 ? 'TLS 1.2' : 'TLS 1.3'}, ECDHE with X25519 (Node's first default group), ECDSA P-256 server and client certificates (client chain: leaf, intermediate, root), no resumption; ${concurrency} concurrent connect-request-close loops, ${seconds} s per round after 1 s warm-up; servers on CPU 0, load generator on CPU 1. Targets: certbound >= 0.95 of bare node:https and >= 0.97 of bare fastify.\n`);
console.log(cmp.markdown);
if (missing) console.log(`\n${missing}`);
if (!profile) {
  const [cb, https, fastify] = cmp.sides.map((x) => median(x.perCpuSecond)) as [number, number, number];
  const label = tls12 ? 'full handshakes (TLS 1.2)' : 'full handshakes';
  printTarget({ target: `${label}: certbound / bare node:https`, measured: (cb / https).toFixed(3), goal: '>= 0.95', met: cb / https >= 0.95 });
  printTarget({ target: `${label}: certbound / bare fastify`, measured: (cb / fastify).toFixed(3), goal: '>= 0.97', met: cb / fastify >= 0.97 });
}
const ceiling = opensslCeiling();
if (ceiling) {
  // Server side of one full handshake: one ECDHE key generation + derivation (counted as one
  // P-256 ecdh op, an upper bound of X25519's cost), one ECDSA signature (CertificateVerify / ServerKeyExchange), and the client's
  // CertificateVerify plus its chain (leaf by intermediate, intermediate by root): three verifies.
  const perHandshake = 1 / ceiling.ecdh + 1 / ceiling.sign + 3 / ceiling.verify;
  console.log(`\nCrypto ceiling on one core (\`openssl speed -seconds 2 ecdsap256 ecdhp256\`):\n`);
  console.log(table(['P-256 operation', 'per second'], [['ECDSA sign', ceiling.sign], ['ECDSA verify', ceiling.verify], ['ECDH', ceiling.ecdh], ['server-side handshake crypto (1 ECDH + 1 sign + 3 verify)', 1 / perHandshake]]));
} else {
  console.log('\n(openssl speed output not understood: no ceiling printed)');
}
