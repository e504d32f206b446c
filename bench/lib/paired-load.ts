// Side-by-side timed comparison of two servers from any checkouts (bench/lib/checkout-server.ts),
// with bench/lib/compare.ts's alternating rounds and per-server-CPU-second ratio: the code
// before a change against the code after it, in one run.
// Usage: node --import tsx bench/lib/paired-load.ts <keepalive|handshakes> <rounds> <seconds> NAME=CHECKOUT:KIND NAME=CHECKOUT:KIND
//   e.g. node --import tsx bench/lib/paired-load.ts keepalive 5 2 after=.:certbound before=/work/wt-before:certbound
// Bounded: rounds x 2 sides of (1 + seconds) s, 5 minutes in all; 32 connections (keep-alive) or 16 loops (handshakes).
import { pinSelf, benchPki } from './child.js';
import { compare } from './compare.js';
import { clientMaterial, handshakeLoad, keepAliveLoad } from './load.js';

pinSelf();
const [mode, roundsArg, secondsArg, ...specs] = process.argv.slice(2);
if ((mode !== 'keepalive' && mode !== 'handshakes') || specs.length !== 2) {
  console.error('usage: paired-load.ts <keepalive|handshakes> <rounds> <seconds> NAME=CHECKOUT:KIND NAME=CHECKOUT:KIND');
  process.exit(2);
}
const rounds = Math.max(3, Number(roundsArg));
const seconds = Number(secondsArg);
const pki = await benchPki();
const material = clientMaterial(pki);
const sides = specs.map((spec) => {
  const m = /^([^=]+)=(.+):(\w[\w-]*)$/.exec(spec);
  if (!m) throw new Error(`bad server spec ${spec}`);
  return { name: m[1] as string, script: 'bench/lib/checkout-server.ts', args: [m[2] as string, m[3] as string, pki.dir] };
}) as [{ name: string; script: string; args: string[] }, { name: string; script: string; args: string[] }];
const cmp = await compare(sides, rounds, 300_000, mode === 'keepalive' ? 'requests' : 'handshakes', (port, window) => mode === 'keepalive'
  ? keepAliveLoad(port, material, { connections: 32, seconds, warmupSeconds: 1, path: '/bench', window })
  : handshakeLoad(port, material, { concurrency: 16, seconds, warmupSeconds: 1, path: '/bench', window }));
console.log(cmp.markdown);
