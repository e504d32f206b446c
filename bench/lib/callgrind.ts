// Instruction counts per request or per handshake, server side, under valgrind's callgrind:
// a count that does not depend on the machine's load, for paired before/after comparisons of
// small changes (the timed benches cannot see a 2 % change on this shared machine).
// Each server (bench/bench-server.ts of this checkout or of another worktree) runs under
// `valgrind --tool=callgrind`; the load is warmed up, the counters are zeroed
// (`callgrind_control -z`), a fixed number of requests (keep-alive) or full handshakes each
// with one request is run, and the counters are dumped (`callgrind_control -d`).
// Servers: bench/lib/checkout-server.ts with the certbound code of CHECKOUT (a directory).
// Usage: node --import tsx bench/lib/callgrind.ts <keepalive|handshakes> <count> NAME=CHECKOUT:KIND ...
//   e.g. node --import tsx bench/lib/callgrind.ts keepalive 4000 after=.:certbound
//        before=/work/wt-before:certbound fastify=.:fastify
// Bounded: `count` requests, 8 connections (keep-alive) or 4 loops (handshakes), 25 minutes in all.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { connect, type TLSSocket } from 'node:tls';
import { benchPki } from './child.js';
import { clientMaterial, ResponseReader, type ClientMaterial } from './load.js';

const [mode, countArg, ...specs] = process.argv.slice(2);
if ((mode !== 'keepalive' && mode !== 'handshakes') || !countArg || specs.length === 0) {
  console.error('usage: callgrind.ts <keepalive|handshakes> <count> NAME=CHECKOUT:KIND ...');
  process.exit(2);
}
const count = Number(countArg);
const deadline = setTimeout(() => { console.error('callgrind.ts: 25 minutes, giving up'); process.exit(1); }, 25 * 60_000);
deadline.unref();
const pki = await benchPki();
const material = clientMaterial(pki);

function open(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: material.context }, () => resolve(s));
    s.once('error', reject);
  });
}

/** `n` GET /bench on `connections` keep-alive connections; resolves when all are answered 200. */
async function keepAlive(port: number, n: number, connections = 8): Promise<void> {
  const request = Buffer.from('GET /bench HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const sockets = await Promise.all(Array.from({ length: connections }, () => open(port)));
  let left = n;
  await Promise.all(sockets.map((s) => new Promise<void>((resolve, reject) => {
    const reader = new ResponseReader();
    const next = () => { if (left > 0) { left--; s.write(request); } else resolve(); };
    s.on('data', (chunk: Buffer) => {
      for (const status of reader.push(chunk)) {
        if (status !== 200) reject(new Error(`status ${status}`));
        next();
      }
    });
    s.once('error', reject);
    next();
  })));
  for (const s of sockets) s.destroy();
}

/** `n` full handshakes (no session offered), each with one `Connection: close` request. */
async function handshakes(port: number, n: number, _material: ClientMaterial = material, loops = 4): Promise<void> {
  const request = Buffer.from('GET /bench HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  let left = n;
  const one = () => new Promise<void>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: material.context }, () => {
      if (s.isSessionReused()) reject(new Error('resumed'));
      s.write(request);
    });
    const reader = new ResponseReader();
    s.on('data', (chunk: Buffer) => { if (reader.push(chunk).includes(200)) s.destroy(); });
    s.once('error', reject);
    s.once('close', () => resolve());
  });
  await Promise.all(Array.from({ length: loops }, async () => { while (left-- > 0) await one(); }));
}

function control(args: string[]): void {
  const r = spawnSync('callgrind_control', args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${r.stderr || r.stdout}`);
}

/** Total instructions (Ir) of the last dump written for `prefix`. */
function lastDumpTotal(prefix: string): number {
  const dir = '/tmp';
  const base = prefix.slice(dir.length + 1);
  const dumps = readdirSync(dir).filter((f) => f.startsWith(`${base}.`) && /\.\d+$/.test(f)).sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
  const last = dumps.at(-1);
  if (!last) throw new Error(`no dump for ${prefix}`);
  const m = /^(?:summary|totals): (\d+)/m.exec(readFileSync(`${dir}/${last}`, 'utf8'));
  if (!m) throw new Error(`no totals in ${last}`);
  return Number(m[1]);
}

const run = mode === 'keepalive' ? keepAlive : handshakes;
const results: Array<{ name: string; perOp: number }> = [];
for (const spec of specs) {
  const m = /^([^=]+)=(.+):(\w[\w-]*)$/.exec(spec);
  if (!m) throw new Error(`bad server spec ${spec}`);
  const [, name, checkout, kind] = m as unknown as [string, string, string, string];
  const out = `/tmp/cg-${process.pid}-${name}`;
  const child = spawn('valgrind', ['--tool=callgrind', '--vgdb=yes', `--callgrind-out-file=${out}`, process.execPath, '--import', 'tsx', 'bench/lib/checkout-server.ts', checkout, kind, pki.dir], { stdio: ['pipe', 'pipe', 'ignore'] });
  const lines = createInterface({ input: child.stdout });
  const port = await new Promise<number>((resolve, reject) => {
    lines.once('line', (l) => resolve((JSON.parse(l) as { port: number }).port));
    child.once('exit', (c) => reject(new Error(`${name} exited ${c}`)));
  });
  try {
    await run(port, Math.max(200, Math.floor(count / 4)));
    control(['-z', String(child.pid)]);
    await run(port, count);
    control(['-d', String(child.pid)]);
    const total = lastDumpTotal(out);
    results.push({ name, perOp: total / count });
    console.log(`${name}: ${(total / count).toFixed(0)} instructions per ${mode === 'keepalive' ? 'request' : 'handshake'} (${count}, ${checkout} ${kind})`);
  } finally {
    child.stdin.end();
    const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    clearTimeout(kill);
    for (const f of readdirSync('/tmp').filter((f) => f.startsWith(`cg-${process.pid}-${name}`))) rmSync(`/tmp/${f}`, { force: true });
  }
}
const first = results[0];
if (first) for (const r of results.slice(1)) console.log(`${first.name} / ${r.name}: ${(first.perOp / r.perOp).toFixed(3)} (instructions, lower is cheaper)`);
