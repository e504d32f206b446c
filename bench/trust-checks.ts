// Benchmark: what OCSP stapling and client-certificate revocation checking (warm cache) cost
// per full handshake + one request, against the same certbound server with them off. Each
// comparison has two identical "off" servers: the spread of their per-round ratio is the
// noise band of the run, so "within noise" is a measured statement.
// - stapling: `ocsp: true` (the server certificate's AIA responder, a dev responder run here on
//   loopback; the staple is fetched at start and answered from memory), the client asks for a
//   staple on every handshake (status_request), and every one must get it;
// - revocation: `revocation: { crls: [the client CA's CRL] }` (a loaded file) and
//   `revocation: { ocsp: true }` (the client leaf's AIA responder: fetched once in the warm-up,
//   then cached until its nextUpdate, an hour away).
// The PKI is bench/lib/trust-pki.ts (the dev PKI's shape, written to a temp dir).
// Usage: node --import tsx bench/trust-checks.ts [rounds=5] [seconds=4] [concurrency=8] [maxSeconds=150] [--only stapling|revocation]
import { pinSelf } from './lib/child.js';
import { compare, perRoundRatios, range, type Comparison, type Side } from './lib/compare.js';
import { clientMaterial, fetchOnce, handshakeLoad, loadArgs, type ClientMaterial } from './lib/load.js';
import { median, printTarget, table } from './lib/stats.js';
import { createTrustPki } from './lib/trust-pki.js';

pinSelf();
const argv = process.argv.slice(2);
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
const { rounds, seconds, connections: concurrency, maxMs } = loadArgs(argv.filter((a, i) => argv[i - 1] !== '--only'), 8);
const pki = await createTrustPki();

/**
 * The noise band and the verdict of a comparison whose sides are [off, off (twin), on…]:
 * band = min–max over rounds of off / off-twin and its inverse; an "on" side is within noise
 * when its median ratio on / off lies inside the band.
 */
function verdicts(cmp: Comparison): string {
  const [off, twin, ...ons] = cmp.sides as [Comparison['sides'][number], Comparison['sides'][number], ...Comparison['sides']];
  const noise = perRoundRatios(off.perCpuSecond, twin.perCpuSecond);
  // Which of the two identical servers is the reference is arbitrary: the band holds each
  // round's ratio both ways (r and 1/r), so it always includes 1.
  const both = noise.flatMap((r) => [r, 1 / r]);
  const lo = Math.min(...both);
  const hi = Math.max(...both);
  const rows = ons.map((on) => {
    const r = median(on.perCpuSecond) / median(off.perCpuSecond);
    const rounds = perRoundRatios(on.perCpuSecond, off.perCpuSecond);
    const within = r >= lo && r <= hi;
    printTarget({ target: `${on.name} / ${off.name} (full handshakes + one request)`, measured: `${r.toFixed(3)} (noise band ${lo.toFixed(3)}–${hi.toFixed(3)})`, goal: 'within noise', met: within || r > hi });
    return [`${on.name} / ${off.name}`, `**${r.toFixed(3)}**`, range(rounds), within ? 'within noise' : r < lo ? `below the band by ${(lo - r).toFixed(3)}` : `above the band by ${(r - hi).toFixed(3)}`];
  });
  return table(['ratio per server CPU-second', 'median', 'per round, min–max', 'against the noise band'], [
    [`${off.name} / ${twin.name} (noise band)`, (median(off.perCpuSecond) / median(twin.perCpuSecond)).toFixed(3), range(noise), `band ${lo.toFixed(3)}–${hi.toFixed(3)}`],
    ...rows,
  ]);
}

const offSides = (kind: string): Side[] => [
  { name: 'off', script: 'bench/bench-server.ts', args: ['certbound', pki.paths.dir] },
  { name: 'off (twin)', script: 'bench/bench-server.ts', args: ['certbound', pki.paths.dir] },
].map((s) => ({ ...s, name: `${kind} ${s.name}` }));

async function state(port: number, material: ClientMaterial): Promise<{ certFlags: number | null; revocation: { source: string; fromCache?: boolean } | null; ocsp: { stapled: boolean; reason: string | null } }> {
  const r = await fetchOnce(port, material, '/state');
  if (r.status !== 200) throw new Error(`GET /state: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

try {
  const material = clientMaterial(pki.paths);
  if (only !== 'revocation') {
    const waitForStaple = async (port: number) => {
      // The stapler fetches at start: wait (bounded) until it holds a staple.
      for (let i = 0; i < 100; i++) {
        if ((await state(port, material)).ocsp.stapled) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('stapling on, but no staple after 10 s');
    };
    const sides: Side[] = [...offSides('stapling'), { name: 'stapling on', script: 'bench/bench-server.ts', args: ['certbound-stapling', pki.paths.dir], check: waitForStaple }];
    let missing = 0;
    const cmp = await compare(sides, rounds, maxMs, 'handshakes', async (port, window, side) => {
      const r = await handshakeLoad(port, material, { concurrency, seconds, warmupSeconds: 1, path: '/bench', requestOCSP: true, window });
      if (side.name === 'stapling on') missing += r.count - (r.stapled ?? 0);
      else if ((r.stapled ?? 0) > 0) throw new Error(`${side.name}: a staple was served`);
      return r;
    });
    console.log('### OCSP stapling on vs off (full handshakes + one request)\n');
    console.log(`TLS 1.3, ECDSA P-256, client certificate (chain of 3), every client asks for a staple (status_request); ${concurrency} concurrent connect-request-close loops, ${seconds} s per round after 1 s warm-up; servers on CPU 0, load generator on CPU 1. Handshakes of "stapling on" without a staple: ${missing}. Target: within noise.\n`);
    console.log(cmp.markdown);
    console.log('');
    console.log(verdicts(cmp));
    console.log('');
  }
  if (only !== 'stapling') {
    const checked = (source: string) => async (port: number) => {
      const s = await state(port, material);
      if (s.certFlags !== 0 || s.revocation?.source !== source) throw new Error(`revocation via ${source} expected, got ${JSON.stringify(s)}`);
    };
    const sides: Side[] = [
      ...offSides('revocation'),
      { name: 'revocation on, CRL (loaded)', script: 'bench/bench-server.ts', args: ['certbound-revocation-crl', pki.paths.dir], check: checked('crl') },
      { name: 'revocation on, OCSP (cached)', script: 'bench/bench-server.ts', args: ['certbound-revocation-ocsp', pki.paths.dir], check: checked('ocsp') },
    ];
    const before = pki.clientResponder.requests;
    const cmp = await compare(sides, rounds, maxMs, 'handshakes', (port, window) => handshakeLoad(port, material, { concurrency, seconds, warmupSeconds: 1, path: '/bench', window }));
    console.log('### Client-certificate revocation checking, warm cache, on vs off (full handshakes + one request)\n');
    console.log(`TLS 1.3, ECDSA P-256, client certificate (chain of 3) checked once per connection; ${concurrency} concurrent connect-request-close loops, ${seconds} s per round after 1 s warm-up; servers on CPU 0, load generator on CPU 1. Requests the client CA's OCSP responder got during the rounds: ${pki.clientResponder.requests - before} (the cache answers). Target: within noise.\n`);
    console.log(cmp.markdown);
    console.log('');
    console.log(verdicts(cmp));
  }
} finally {
  await pki.close();
}
