// Benchmark 3: memory per idle mTLS connection, measured in the server process: RSS and V8
// heap after two full GCs (--expose-gc), before and after opening N connections (each with one
// answered keep-alive request, then idle). certbound vs bare node:https, alternating.
// Usage: node --import tsx bench/memory.ts [counts=1000,5000] [rounds=3] [maxSeconds=240]
import { spawnSync } from 'node:child_process';
import { pinSelf, benchPki, startChild } from './lib/child.js';
import { clientMaterial, openIdle, sleep } from './lib/load.js';
import { median, table } from './lib/stats.js';

pinSelf();
const counts = (process.argv[2] ?? '1000,5000').split(',').map(Number);
const rounds = Math.max(3, Number(process.argv[3] ?? 3));
const maxMs = Number(process.argv[4] ?? 240) * 1000;
const pki = await benchPki();
const material = clientMaterial(pki);

interface Mem { rss: number; heapUsed: number; external: number; connections: number }
// Each connection needs a descriptor on both sides: the server child raises its soft limit
// in its shell (`ulimit -n`), this process must already have enough.
const need = Math.max(...counts) + 200;
const hard = Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 0;
const soft = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) || 0;
const usable = counts.filter((n) => n + 200 <= Math.min(hard, soft));
const skipped = counts.filter((n) => !usable.includes(n));

const kinds = [['certbound', 'certbound'], ['bare node:https', 'https']] as const;
const results = new Map<string, { rss: number[]; heap: number[] }>();
const start = Date.now();
for (let round = 0; round < rounds && (round < 3 || Date.now() - start < maxMs); round++) {
  for (const n of usable) {
    const order = round % 2 === 0 ? kinds : [...kinds].reverse();
    for (const [name, kind] of order) {
      const server = await startChild('bench/bench-server.ts', [kind, pki.dir], { nodeArgs: ['--expose-gc'], shellPrefix: `ulimit -n ${Math.min(hard, need)} 2>/dev/null;` });
      try {
        // Warm the server up (code paths compiled, pools allocated) before the baseline.
        for (const s of await openIdle(server.port, material, 50)) s.destroy();
        await sleep(300);
        const before = await server.ask<Mem>('mem');
        const sockets = await openIdle(server.port, material, n);
        await sleep(300);
        const after = await server.ask<Mem>('mem');
        for (const s of sockets) s.destroy();
        if (after.connections < n) throw new Error(`${name}: only ${after.connections} of ${n} connections open`);
        const key = `${name}|${n}`;
        const r = results.get(key) ?? { rss: [], heap: [] };
        r.rss.push((after.rss - before.rss) / n);
        r.heap.push((after.heapUsed + after.external - before.heapUsed - before.external) / n);
        results.set(key, r);
      } finally {
        await server.stop();
      }
    }
  }
}
const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
console.log('### Memory per idle mTLS connection\n');
console.log(`TLS 1.3, ECDSA P-256, each connection with one answered keep-alive request, then idle; measured in the server process after two full GCs; ${rounds} rounds, alternating, a fresh server per measurement (file descriptor limit: soft ${soft}, hard ${hard}).\n`);
console.log(table(['server', 'connections', 'RSS per connection (median)', 'V8 heap + external per connection (median)', 'rounds'],
  [...results].map(([key, r]) => { const [name, n] = key.split('|'); return [name as string, n as string, kb(median(r.rss)), kb(median(r.heap)), String(r.rss.length)]; })));
for (const n of skipped) console.log(`\n${n} connections skipped: the file descriptor limit (soft ${soft}, hard ${hard}) is below ${n + 200}; raise it with \`ulimit -n\`.`);
