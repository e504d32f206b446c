// Benchmark: certbound as a front (createServer's `upstream`, docs/front.md) vs bare fastify +
// @fastify/reply-from doing the same proxying vs nginx 1.22 (proxy_pass, Client-Cert from
// $ssl_client_escaped_cert), all in front of one node:http upstream, side by side.
// 1. proxied keep-alive requests on established mTLS connections; 2. full mTLS handshakes with
// one proxied request each. Server on CPU 0 (nginx: one process, master_process off), load
// generator and upstream on CPU 1. Rounds alternate the order; medians of requests per second
// and per server CPU-second.
// Usage: node --import tsx bench/front.ts [rounds=3] [seconds=2] [connections=16] [maxSeconds=90] [--profile] [--keepalive-only]
// bench/lib/compare.ts compares two sides; the three-side loop below is a copy of its loop.
import { existsSync } from 'node:fs';
import { pinSelf, benchPki, startChild, type BenchServer, type CpuStats } from './lib/child.js';
import { clientMaterial, handshakeLoad, keepAliveLoad, loadArgs, type LoadResult, type Window } from './lib/load.js';
import { median, table } from './lib/stats.js';

pinSelf();
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const { rounds, connections, maxMs } = loadArgs([args[0] ?? '3', args[1] ?? '2', args[2] ?? '16', args[3] ?? '90'], 16);
const seconds = Number(args[1] ?? 2);
// --profile: a CPU profile of the certbound side in /tmp/certbound-profiles (bench/lib/profile-summary.ts reads it).
const profile = process.argv.includes('--profile');
const pki = await benchPki();
const material = clientMaterial(pki);
const upstream = await startChild('bench/front-server.ts', ['upstream', pki.dir], { cpus: '1' });
const kinds = ['certbound', 'reply-from', ...(existsSync('/usr/sbin/nginx') ? ['nginx'] : [])];
const names: Record<string, string> = { certbound: 'certbound --upstream', 'reply-from': 'fastify + @fastify/reply-from', nginx: 'nginx 1.22 proxy_pass' };

interface Result { name: string; perSecond: number[]; perCpuSecond: number[]; errors: number }

async function compareAll(unit: string, load: (port: number, window: Window) => Promise<LoadResult>): Promise<string> {
  const servers: BenchServer[] = [];
  try {
    for (const k of kinds) servers.push(await startChild('bench/front-server.ts', [k, pki.dir, String(upstream.port)], profile && k === 'certbound' ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/certbound-profiles'] } : {}));
    const results: Result[] = kinds.map((k) => ({ name: names[k] ?? k, perSecond: [], perCpuSecond: [], errors: 0 }));
    const start = Date.now();
    for (let round = 0; round < rounds && (round < 3 || Date.now() - start < maxMs); round++) {
      // Each round starts with a different server.
      const order = kinds.map((_, i) => (i + round) % kinds.length);
      for (const i of order) {
        const server = servers[i] as BenchServer;
        let before: CpuStats | undefined;
        let after: CpuStats | undefined;
        const r = await load(server.port, { start: async () => { before = await server.ask<CpuStats>('stats'); }, end: async () => { after = await server.ask<CpuStats>('stats'); } });
        if (!before || !after) throw new Error('no window');
        const res = results[i] as Result;
        res.perSecond.push(r.perSecond);
        res.perCpuSecond.push(r.count / ((after.cpuMicros - before.cpuMicros) / 1e6));
        res.errors += r.errors;
      }
    }
    const base = results[0] as Result;
    return table(
      ['server', `${unit}/s (median)`, `${unit} per server CPU-second (median)`, 'certbound / this, per CPU-second', 'errors'],
      results.map((r) => [r.name, median(r.perSecond), median(r.perCpuSecond), (median(base.perCpuSecond) / median(r.perCpuSecond)).toFixed(3), r.errors]),
    ) + `\n\n${base.perSecond.length} rounds each, alternating order, ${seconds} s measured per round after 1 s warm-up.`;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

try {
  console.log('### Proxied keep-alive requests on established mTLS connections\n');
  console.log(`TLS 1.3, ECDSA P-256, ${connections} connections, one request in flight each; upstream: node:http on CPU 1 with the load generator.\n`);
  console.log(await compareAll('requests', (port, window) => keepAliveLoad(port, material, { connections, seconds, warmupSeconds: 1, path: '/api/item', window })));
  if (!process.argv.includes('--keepalive-only')) console.log('\n### Full mTLS handshakes, one proxied request each\n');
  if (!process.argv.includes('--keepalive-only')) console.log(await compareAll('handshakes', (port, window) => handshakeLoad(port, material, { concurrency: Math.min(connections, 8), seconds, warmupSeconds: 1, path: '/api/item', window })));
} finally {
  await upstream.stop();
}
