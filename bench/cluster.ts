// Benchmark: `certbound serve --workers 1` vs `--workers 2` (bin/certbound.js over dist/: run
// `npm run build` first), keep-alive requests/s and full handshakes/s on GET /connection.
// Both clusters run at once, rounds alternate. Server CPU is summed over the primary and its
// workers from /proc. With 2 workers the server may use CPUs 0 and 1 while the load generator
// is on CPU 1: on a 2-core machine the generator and a worker share a core (printed).
// Usage: node --import tsx bench/cluster.ts [rounds=3] [seconds=4] [maxSeconds=150]
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { cpus as osCpus } from 'node:os';
import { benchPki, HAS_TASKSET, pinSelf } from './lib/child.js';
import { clientMaterial, handshakeLoad, keepAliveLoad, sleep, type LoadResult } from './lib/load.js';
import { freePort } from '../test/helpers/exec.js';
import { median, table } from './lib/stats.js';

pinSelf();
const rounds = Math.max(3, Number(process.argv[2] ?? 3));
const seconds = Number(process.argv[3] ?? 4);
const maxMs = Number(process.argv[4] ?? 150) * 1000;
const pki = await benchPki();
const material = clientMaterial(pki);
// os.cpus(), not availableParallelism(): this process is pinned to one CPU.
const cores = osCpus().length;

/** CPU seconds used so far by `pid` and its direct children (utime + stime from /proc). */
function treeCpuSeconds(pid: number): number {
  const ticks = (p: number) => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return { ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]) };
    } catch {
      return undefined;
    }
  };
  let total = ticks(pid)?.cpu ?? 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const t = ticks(Number(d));
    if (t && t.ppid === pid) total += t.cpu;
  }
  return total / 100; // USER_HZ is 100 on Linux
}

interface Cluster { workers: number; port: number; child: ChildProcess; stop(): Promise<void> }

async function startCluster(workers: number): Promise<Cluster> {
  const port = await freePort();
  const cpus = workers === 1 ? '0' : Array.from({ length: Math.min(workers, cores) }, (_, i) => i).join(',');
  const args = ['bin/certbound.js', 'serve', '--workers', String(workers), '--port', String(port), '--log-level', 'silent', '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle];
  const child = spawn(HAS_TASKSET ? 'taskset' : process.execPath, HAS_TASKSET ? ['-c', cpus, process.execPath, ...args] : args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  for (let i = 0; i < 400 && !/serving https/.test(out); i++) await sleep(50);
  if (!/serving https/.test(out)) throw new Error(`cluster with ${workers} workers did not start: ${out}`);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { workers, port, child, async stop() { child.kill('SIGTERM'); await exited; } };
}

const clusters = [await startCluster(1), await startCluster(2)];
type Row = { rate: number[]; perCpu: number[] };
const results: Record<string, Row> = {};
try {
  const start = Date.now();
  for (let round = 0; round < rounds && (round < 3 || Date.now() - start < maxMs); round++) {
    for (const kind of ['requests', 'handshakes'] as const) {
      const order = round % 2 === 0 ? clusters : [...clusters].reverse();
      for (const c of order) {
        let cpu0 = 0;
        let cpu = 0;
        const window = { start: async () => { cpu0 = treeCpuSeconds(c.child.pid as number); }, end: async () => { cpu = treeCpuSeconds(c.child.pid as number) - cpu0; } };
        const r: LoadResult = kind === 'requests'
          ? await keepAliveLoad(c.port, material, { connections: 32, seconds, warmupSeconds: 1, path: '/connection', window })
          : await handshakeLoad(c.port, material, { concurrency: 16, seconds, warmupSeconds: 1, path: '/connection', window });
        const key = `${kind}|${c.workers}`;
        results[key] ??= { rate: [], perCpu: [] };
        results[key].rate.push(r.perSecond);
        results[key].perCpu.push(r.count / cpu);
      }
    }
  }
} finally {
  await Promise.all(clusters.map((c) => c.stop()));
}
console.log('### certbound serve --workers 1 vs 2\n');
console.log(`GET /connection (reference route: certificate, channel bindings, JSON), TLS 1.3, ECDSA P-256, log level silent. ${cores} cores; 1 worker pinned to CPU 0, 2 workers to CPUs 0-1, load generator on CPU 1${cores <= 2 ? ' (shared with the second worker: the 2-worker figures are a lower bound)' : ''}; keep-alive: 32 connections; handshakes: 16 connect-request-close loops; ${seconds} s per round, alternating.\n`);
const rows = Object.entries(results).map(([key, r]) => {
  const [kind, workers] = key.split('|');
  return [kind as string, workers as string, median(r.rate), r.rate.map((x) => Math.round(x)).join(', '), median(r.perCpu)];
});
console.log(table(['load', 'workers', 'per second (median)', 'per round', 'per server CPU-second (median)'], rows));
for (const kind of ['requests', 'handshakes']) {
  const one = results[`${kind}|1`];
  const two = results[`${kind}|2`];
  if (one && two) console.log(`\n${kind}: 2 workers / 1 worker = **${(median(two.rate) / median(one.rate)).toFixed(2)}**`);
}
