// Benchmark: the latency an on-demand certificate negotiation adds to a request.
// For each round, alternating: a new TLS 1.2 connection that sent its certificate at the
// handshake (baseline) and one that is asked for it on demand; the time measured is from
// writing the request to the end of the response (the initial handshake is excluded).
// Usage: node --import tsx bench/on-demand.ts [rounds=200] [maxSeconds=60]
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { connect, createSecureContext } from 'node:tls';
import { ensureDevPki } from '../src/tls/dev-pki.js';

const rounds = Number(process.argv[2] ?? 200);
const maxMs = Number(process.argv[3] ?? 60) * 1000;
const { paths } = await ensureDevPki('.certbound');
const hasTaskset = existsSync('/usr/bin/taskset');
const server = spawn(hasTaskset ? 'taskset' : process.execPath, [...(hasTaskset ? ['-c', '0', process.execPath] : []), '--import', 'tsx', 'bench/on-demand-server.ts', paths.dir], { stdio: ['pipe', 'pipe', 'inherit'] });
const [line] = (await once(server.stdout, 'data')) as [Buffer];
const ports = JSON.parse(line.toString()) as { atHandshake: number; onDemand: number };
const ctx = createSecureContext({ cert: readFileSync(paths.client), key: readFileSync(paths.clientKey), ca: readFileSync(paths.rootCa), maxVersion: 'TLSv1.2' });

function oneRequest(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: ctx, session: undefined }, () => {
      const t0 = process.hrtime.bigint();
      s.write('GET /id HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      let body = '';
      s.on('data', (d: Buffer) => { body += d.toString(); });
      s.on('end', () => {
        if (!/"sha1":"[0-9a-f]{40}"/.test(body)) return reject(new Error(`no certificate in answer: ${body.slice(0, 200)}`));
        resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      });
    });
    s.on('error', reject);
  });
}

const quantile = (xs: number[], q: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN; };
const base: number[] = [];
const demand: number[] = [];
const start = Date.now();
for (let i = 0; i < rounds && Date.now() - start < maxMs; i++) {
  if (i % 2 === 0) { base.push(await oneRequest(ports.atHandshake)); demand.push(await oneRequest(ports.onDemand)); }
  else { demand.push(await oneRequest(ports.onDemand)); base.push(await oneRequest(ports.atHandshake)); }
}
server.stdin.end();
const fmt = (n: number) => n.toFixed(2).padStart(8);
console.log(`on-demand negotiation latency (TLS 1.2, ECDSA P-256, ${base.length} rounds each, alternating${hasTaskset ? ', server pinned to CPU 0' : ''})`);
console.log('| request on a connection                 | median ms | p99 ms |');
console.log('| --------------------------------------- | --------- | ------ |');
console.log(`| with the certificate from the handshake | ${fmt(quantile(base, 0.5))} | ${fmt(quantile(base, 0.99))} |`);
console.log(`| asked for it on demand (renegotiation)  | ${fmt(quantile(demand, 0.5))} | ${fmt(quantile(demand, 0.99))} |`);
console.log(`| added by the negotiation                | ${fmt(quantile(demand, 0.5) - quantile(base, 0.5))} | ${fmt(quantile(demand, 0.99) - quantile(base, 0.99))} |`);
