// Memory per idle connection, paired: bench/memory.ts's measurement (RSS and V8 heap + external
// after two full GCs, before and after opening N idle connections with one answered request
// each, a fresh server per measurement) for servers from different checkouts, alternating, so
// that the code before a change and after it are measured in the same run.
// Usage: node --import tsx bench/lib/memory-paired.ts <n> <rounds> NAME=CHECKOUT:KIND ...
//   e.g. node --import tsx bench/lib/memory-paired.ts 1000 3 before=/work/wt-before:certbound after=.:certbound https=.:https
// Bounded: rounds x servers measurements of n connections; 10 minutes in all.
import { benchPki, startChild } from './child.js';
import { clientMaterial, openIdle, sleep } from './load.js';
import { median } from './stats.js';

const [nArg, roundsArg, ...specs] = process.argv.slice(2);
const n = Number(nArg);
const rounds = Number(roundsArg);
if (!(n > 0) || !(rounds > 0) || specs.length === 0) {
  console.error('usage: memory-paired.ts <n> <rounds> NAME=CHECKOUT:KIND ...');
  process.exit(2);
}
setTimeout(() => { console.error('memory-paired.ts: 10 minutes, giving up'); process.exit(1); }, 10 * 60_000).unref();
const pki = await benchPki();
const material = clientMaterial(pki);
interface Mem { rss: number; heapUsed: number; external: number; connections: number }
const sides = specs.map((spec) => {
  const m = /^([^=]+)=(.+):(\w[\w-]*)$/.exec(spec);
  if (!m) throw new Error(`bad server spec ${spec}`);
  return { name: m[1] as string, checkout: m[2] as string, kind: m[3] as string, rss: [] as number[], heap: [] as number[] };
});
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? sides : [...sides].reverse();
  for (const side of order) {
    const server = await startChild('bench/lib/checkout-server.ts', [side.checkout, side.kind, pki.dir], { nodeArgs: ['--expose-gc'], shellPrefix: `ulimit -n ${n + 500} 2>/dev/null;` });
    try {
      for (const s of await openIdle(server.port, material, 50)) s.destroy();
      await sleep(300);
      const before = await server.ask<Mem>('mem');
      const sockets = await openIdle(server.port, material, n);
      await sleep(300);
      const after = await server.ask<Mem>('mem');
      for (const s of sockets) s.destroy();
      if (after.connections < n) throw new Error(`${side.name}: only ${after.connections} of ${n} connections open`);
      side.rss.push((after.rss - before.rss) / n);
      side.heap.push((after.heapUsed + after.external - before.heapUsed - before.external) / n);
    } finally {
      await server.stop();
    }
  }
}
const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
for (const s of sides) console.log(`${s.name}: RSS ${kb(median(s.rss))} (rounds ${s.rss.map(kb).join(', ')}), heap+external ${kb(median(s.heap))} (rounds ${s.heap.map(kb).join(', ')}) per connection, ${n} connections`);
