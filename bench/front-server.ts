// Server side of bench/front.ts, pinned to its core by bench/lib/child.ts.
// Usage: node --import tsx bench/front-server.ts <upstream|certbound|reply-from|nginx> <dev-pki-dir> [upstream-port]
// Prints {"port":N} once listening; stdin `stats` answers {"cpuMicros","handshakes","connections"}
// (for nginx: its one process's CPU time from /proc); end of stdin stops it.
import { createInterface } from 'node:readline';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';
import { Pool } from 'undici';
import { serializeByteSequence, serializeList } from 'structured-headers';
import { createServer } from '../src/server/server.js';
import { devPkiPaths } from '../src/tls/dev-pki.js';

const kind = process.argv[2] ?? 'certbound';
const pki = devPkiPaths(resolve(process.argv[3] ?? '.certbound'));
const upstreamPort = Number(process.argv[4] ?? 0);
const upstream = `http://127.0.0.1:${upstreamPort}`;
const cert = readFileSync(pki.server);
const key = readFileSync(pki.serverKey);
const ca = readFileSync(pki.caBundle);
// What the upstream answers: a small JSON body with a Content-Length.
const BODY = JSON.stringify({ ok: true, pad: '0'.repeat(64) });

let handshakes = 0;
let connections = 0;
const count = (server: { on(e: 'secureConnection', f: (s: TLSSocket) => void): unknown }) => {
  server.on('secureConnection', (s: TLSSocket) => {
    handshakes++;
    connections++;
    s.once('close', () => connections--);
  });
};
let cpuMicros = (): number => { const c = process.cpuUsage(); return c.user + c.system; };

let close: () => Promise<void>;
let port: number;
if (kind === 'upstream') {
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) });
    res.end(BODY);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
} else if (kind === 'certbound') {
  const server = createServer({ cert, key, ca, clientAuth: 'optional', logger: false, upstream: { url: upstream } });
  count(server.server);
  port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
  close = () => server.close();
} else if (kind === 'reply-from') {
  // Bare fastify + @fastify/reply-from doing the same proxying: the same undici pool size, the
  // leaf and its issuers as RFC 9440 Client-Cert / Client-Cert-Chain when the chain verified
  // (serialized once per connection, as certbound does), Forwarded and X-Forwarded-* from the socket.
  const app = Fastify({ logger: false, https: { cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' } });
  await app.register(replyFrom, { base: upstream, undici: new Pool(upstream, { connections: 128 }) as never, disableRequestLogging: true });
  const perSocket = new WeakMap<TLSSocket, Record<string, string>>();
  const certHeaders = (s: TLSSocket): Record<string, string> => {
    let h = perSocket.get(s);
    if (h) return h;
    h = {};
    if (s.authorized) {
      const leaf = s.getPeerCertificate(true);
      h['client-cert'] = serializeByteSequence(leaf.raw);
      const issuers: Buffer[] = [];
      for (let c = leaf.issuerCertificate; c && issuers.length < 8 && !issuers.some((x) => x.equals(c.raw)); c = c.issuerCertificate) issuers.push(c.raw);
      if (issuers.length > 0) h['client-cert-chain'] = serializeList(issuers.map((c) => [c, new Map()]));
    }
    perSocket.set(s, h);
    return h;
  };
  app.get('/*', (request, reply) => reply.from(request.url, {
    rewriteRequestHeaders: (req, headers) => {
      const s = req.raw.socket as TLSSocket;
      const out: Record<string, string | string[] | undefined> = { ...headers };
      delete out['client-cert'];
      delete out['client-cert-chain'];
      const ip = s.remoteAddress ?? '';
      out.forwarded = `for=${ip};proto=https;host="${req.headers.host ?? ''}"`;
      out['x-forwarded-for'] = ip;
      out['x-forwarded-proto'] = 'https';
      out['x-forwarded-host'] = req.headers.host;
      return Object.assign(out, certHeaders(s)) as never;
    },
  }));
  count(app.server as never);
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
  close = () => app.close();
} else if (kind === 'nginx') {
  // nginx 1.22 (Debian), one process (master_process off), pinned with this wrapper.
  const dir = mkdtempSync(join(tmpdir(), 'certbound-nginx-'));
  port = await new Promise<number>((r) => { const s = createNetServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => r(p)); }); });
  writeFileSync(join(dir, 'nginx.conf'), `
daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream backend { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${pki.server}; ssl_certificate_key ${pki.serverKey};
    ssl_client_certificate ${pki.caBundle}; ssl_verify_client optional; ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;
    keepalive_requests 1000000; keepalive_timeout 65s;
    location / {
      proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Client-Cert $ssl_client_escaped_cert;
      proxy_set_header Certbound-Client-Cert-Flags $ssl_client_verify;
      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto https;
    }
  }
}`);
  const child = spawn('/usr/sbin/nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  // Listening once its port takes a connection (at most 5 s).
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => { const x = connect(port, '127.0.0.1', () => { x.destroy(); r(true); }); x.on('error', () => r(false)); });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  cpuMicros = () => {
    // utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat), 100 per second.
    const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(f[11]) + Number(f[12])) * 10_000;
  };
  close = async () => { child.kill('SIGTERM'); };
} else {
  throw new Error(`unknown server kind ${kind}`);
}

process.stdout.write(JSON.stringify({ port }) + '\n');
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line === 'stats') process.stdout.write(JSON.stringify({ cpuMicros: cpuMicros(), handshakes, connections }) + '\n');
});
rl.on('close', () => {
  void close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
});
