// On-demand client certificates (TLS 1.2 renegotiation) with real peers: curl, openssl
// s_client, python3 ssl, Node's https client and gnutls-cli; and every way it can go wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TLSSocket } from 'node:tls';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { Agent, request } from 'node:https';
import { readFileSync } from 'node:fs';
import { X509Certificate, constants as cryptoConstants } from 'node:crypto';
import { Win32 } from '../src/status.js';
import { receiveClientCertificateAsync } from '../src/server/receive.js';
import { devPki } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { startServer } from './helpers/server.js';

const sha1Of = (pemPath: string) => new X509Certificate(readFileSync(pemPath)).fingerprint.replace(/:/g, '').toLowerCase();

interface WhoAmI { sha1?: string; certFlags?: number; handshakes: number; protocol: string; code?: string }

async function curl(args: string[]) {
  const r = await run('curl', ['-s', '-S', '--max-time', '15', '-w', '\n%{http_code} %{http_version}', ...args]);
  const lines = r.stdout.trimEnd().split('\n');
  const [status, version] = (lines.pop() ?? '').split(' ');
  return { status: Number(status), version, body: lines.join('\n'), stderr: r.stderr };
}

/** Raw TLS client: writes `payload`, collects everything until the server closes or `ms` pass. */
function rawExchange(port: number, payload: string, opts: { cert?: string; key?: string; secureOptions?: number; ms?: number } = {}): Promise<{ data: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const sock = connect({
      host: '127.0.0.1', port, servername: 'localhost', maxVersion: 'TLSv1.2', rejectUnauthorized: false,
      ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key ?? '') } : {}),
      ...(opts.secureOptions ? { secureOptions: opts.secureOptions } : {}),
    }, () => sock.write(payload));
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => { data += d; });
    const timer = setTimeout(() => { sock.destroy(); resolve({ data, closedByServer: false }); }, opts.ms ?? 8000);
    sock.on('close', () => { clearTimeout(timer); resolve({ data, closedByServer: true }); });
    sock.on('error', () => {});
  });
}

test('curl, s_client, python and Node present their certificate when asked on demand (TLS 1.2)', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) });
  const want = sha1Of(pki.client);

  const c = await curl(['--tls-max', '1.2', '--cacert', pki.rootCa, '--cert', pki.client, '--key', pki.clientKey, '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/whoami`]);
  assert.equal(c.status, 200, c.body + c.stderr);
  const who = JSON.parse(c.body) as WhoAmI;
  assert.equal(who.sha1, want);
  assert.equal(who.certFlags, 0);
  assert.equal(who.handshakes, 2, 'one renegotiation');

  const s = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_2', '-CAfile', pki.rootCa, '-cert', pki.client, '-key', pki.clientKey, '-quiet'],
    { input: 'GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', timeoutMs: 15_000 });
  assert.match(s.stdout, /^HTTP\/1\.1 200/m, s.stdout + s.stderr);
  assert.match(s.stdout, new RegExp(`"sha1":"${want}"`));

  const py = [
    'import ssl, socket, sys',
    `ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.rootCa)})`,
    'ctx.maximum_version = ssl.TLSVersion.TLSv1_2',
    `ctx.load_cert_chain(${JSON.stringify(pki.client)}, ${JSON.stringify(pki.clientKey)})`,
    `s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ${port})), server_hostname="localhost")`,
    's.sendall(b"GET /whoami HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")',
    'out = b""',
    'while True:',
    '    d = s.recv(65536)',
    '    if not d: break',
    '    out += d',
    'sys.stdout.write(out.decode())',
  ].join('\n');
  const p = await run('python3', ['-c', py], { timeoutMs: 15_000 });
  assert.match(p.stdout, /^HTTP\/1\.1 200/m, p.stdout + p.stderr);
  assert.match(p.stdout, new RegExp(`"sha1":"${want}"`));

  const node = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/whoami', servername: 'localhost', agent: false, maxVersion: 'TLSv1.2', ca: readFileSync(pki.rootCa), cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(node.status, 200, node.body);
  assert.equal((JSON.parse(node.body) as WhoAmI).sha1, want);

});

test('gnutls-cli presents its certificate on demand when the server issues no session tickets', async (t) => {
  // gnutls rejects the NewSessionTicket that OpenSSL sends inside a renegotiation
  // ("unexpected TLS packet"): servers with gnutls clients turn tickets off (docs/on-demand.md).
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), tls: { secureOptions: cryptoConstants.SSL_OP_NO_TICKET } });
  const g = await run('gnutls-cli', ['--port', String(port), '--x509cafile', pki.rootCa, '--x509certfile', pki.client, '--x509keyfile', pki.clientKey, '--priority', 'NORMAL:-VERS-TLS1.3', '--sni-hostname', 'localhost', '127.0.0.1'],
    { input: 'GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', timeoutMs: 15_000, holdStdinMs: 10_000 });
  assert.match(g.stdout, /HTTP\/1\.1 200/, g.stdout + g.stderr);
  assert.match(g.stdout, new RegExp(`"sha1":"${sha1Of(pki.client)}"`));
  assert.match(g.stdout, /"handshakes":2/);
});

test('a client without a certificate gets 403, and a second attempt on that connection a clean 403, never a 400', async (t) => {
  const { port } = await startServer(t, 'none', { ca: readFileSync((await devPki()).caBundle) });
  const agent = new Agent({ keepAlive: true, maxSockets: 1, maxVersion: 'TLSv1.2', rejectUnauthorized: false });
  t.after(() => agent.destroy());
  const ask = () => new Promise<{ status: number; body: string; port: number | undefined }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/whoami', servername: 'localhost', agent }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, port: res.socket?.localPort }));
    });
    req.on('error', reject);
    req.end();
  });
  const first = await ask();
  assert.equal(first.status, 403);
  assert.equal((JSON.parse(first.body) as { code: string }).code, 'CB_ERR_CLIENT_CERT_REQUIRED');
  const second = await ask();
  assert.equal(second.port, first.port, 'same connection');
  assert.equal(second.status, 403);
  assert.equal((JSON.parse(second.body) as { code: string }).code, 'CB_ERR_NEGOTIATE_LIMIT');
  const c = await curl(['-k', '--tls-max', '1.2', `https://127.0.0.1:${port}/whoami`]);
  assert.equal(c.status, 403);
});

test('a client that refuses or never answers the renegotiation is cut at the timeout; nothing leaks', async (t) => {
  const pki = await devPki();
  const { server, port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), negotiationTimeout: 400 });
  const started = Date.now();
  const refused = await rawExchange(port, 'GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n', { cert: pki.client, key: pki.clientKey, secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION });
  assert.equal(refused.closedByServer, true);
  assert.equal(refused.data, '', 'no HTTP answer on a connection that refused');
  assert.ok(Date.now() - started < 5000);

  // A client that never sees the HelloRequest: a proxy that stops forwarding server → client.
  const proxy = createNetServer((client: Socket) => {
    const upstream = netConnect(port, '127.0.0.1');
    let bytesToClient = 0;
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => {
      // Forward the handshake, then drop everything once the request has been sent.
      if (bytesToClient < 1 || !requestSent) { bytesToClient += d.length; client.write(d); }
    });
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  let requestSent = false;
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.after(() => proxy.close());
  const proxyPort = (proxy.address() as { port: number }).port;
  const silent = await new Promise<{ closed: boolean; ms: number }>((resolve) => {
    const s0 = Date.now();
    const sock: TLSSocket = connect({ host: '127.0.0.1', port: proxyPort, servername: 'localhost', maxVersion: 'TLSv1.2', rejectUnauthorized: false, cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) }, () => {
      requestSent = true;
      sock.write('GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    sock.on('error', () => {});
    const timer = setTimeout(() => { sock.destroy(); resolve({ closed: false, ms: Date.now() - s0 }); }, 5000);
    sock.on('close', () => { clearTimeout(timer); resolve({ closed: true, ms: Date.now() - s0 }); });
  });
  assert.equal(silent.closed, true, 'the server closed the silent connection');
  assert.ok(silent.ms < 4000, `closed after ${silent.ms} ms`);
  // Every connection is gone from the registry: no entry, timer or listener is left behind.
  for (let i = 0; i < 50 && server.registry.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(server.registry.size, 0);
});

test('a completed negotiation leaves no listener behind on the connection', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) }, ({ app }) => {
    app.get('/listeners', async (request) => {
      const s = request.connection!.socket;
      return { close: s.listenerCount('close'), error: s.listenerCount('error'), secure: s.listenerCount('secure') };
    });
  });
  let counts: number[] = [];
  const r = await rawExchange(port, 'GET /listeners HTTP/1.1\r\nHost: localhost\r\n\r\nGET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\nGET /listeners HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', { cert: pki.client, key: pki.clientKey });
  counts = [...r.data.matchAll(/\{"close":(\d+),"error":(\d+),"secure":(\d+)\}/g)].map((m) => Number(m[1]) + Number(m[2]) + Number(m[3]));
  assert.equal(counts.length, 2, r.data);
  assert.equal(counts[1], counts[0], 'as many listeners after the negotiation as before');
  assert.match(r.data, /"handshakes":2/);
});

test('requests pipelined behind a negotiation wait for it and see the negotiated identity', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) });
  const r = await rawExchange(port,
    'GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\nGET /connection HTTP/1.1\r\nHost: localhost\r\n\r\nGET /connection HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
    { cert: pki.client, key: pki.clientKey });
  const bodies = r.data.split(/HTTP\/1\.1 /).slice(1);
  assert.equal(bodies.length, 3, r.data);
  for (const b of bodies) assert.match(b, /^200/);
  const want = sha1Of(pki.client);
  for (const b of bodies) assert.match(b, new RegExp(`"sha1":"${want}"`), 'every pipelined response carries the negotiated certificate');
});

test('a request body is read before the renegotiation (POST to an on-demand route)', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) }, ({ app }) => app.post('/upload', { config: { clientCertificate: 'on-demand' } }, async (request) => ({ bytes: (request.body as { data: string }).data.length, sha1: request.clientCertificate()?.sha1 })));
  const body = JSON.stringify({ data: 'x'.repeat(200_000) });
  const r = await rawExchange(port, `POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, { cert: pki.client, key: pki.clientKey });
  assert.match(r.data, /^HTTP\/1\.1 200/);
  assert.match(r.data, /"bytes":200000/);
  assert.match(r.data, new RegExp(`"sha1":"${sha1Of(pki.client)}"`));
});

test('TLS 1.3: the on-demand route answers a clear 403 with the documented code', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) });
  const c = await curl(['--tlsv1.3', '--cacert', pki.rootCa, '--cert', pki.client, '--key', pki.clientKey, '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/whoami`]);
  assert.equal(c.status, 403);
  const body = JSON.parse(c.body) as { code: string; message: string };
  assert.equal(body.code, 'CB_ERR_NEGOTIATE_TLS13');
  assert.match(body.message, /TLS 1\.2/);
});

test('HTTP/2: the stream is reset with HTTP_1_1_REQUIRED and curl retries over HTTP/1.1 successfully', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), http2: true });
  const plain = await curl(['--http2', '--cacert', pki.rootCa, '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/connection`]);
  assert.equal(plain.status, 200);
  assert.equal(plain.version, '2', 'ordinary routes are served over h2');
  const c = await curl(['--http2', '--tls-max', '1.2', '--cacert', pki.rootCa, '--cert', pki.client, '--key', pki.clientKey, '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/whoami`]);
  assert.equal(c.status, 200, c.body + c.stderr);
  assert.equal(c.version, '1.1', 'curl retried over HTTP/1.1');
  assert.equal((JSON.parse(c.body) as WhoAmI).sha1, sha1Of(pki.client));
});

test('a client-initiated renegotiation closes the connection and is counted', async (t) => {
  const pki = await devPki();
  const { server, port } = await startServer(t, 'optional');
  const result = await new Promise<{ first: string; closed: boolean }>((resolve) => {
    let first = '';
    const sock = connect({ host: '127.0.0.1', port, servername: 'localhost', maxVersion: 'TLSv1.2', rejectUnauthorized: false, cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) }, () => {
      sock.write('GET /connection HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      first += d;
      if (first.includes('"clientCertificate"')) sock.renegotiate({}, () => sock.write('GET /connection HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    });
    sock.on('error', () => {});
    const timer = setTimeout(() => { sock.destroy(); resolve({ first, closed: false }); }, 5000);
    sock.on('close', () => { clearTimeout(timer); resolve({ first, closed: true }); });
  });
  assert.equal(result.closed, true);
  assert.equal((result.first.match(/HTTP\/1\.1 200/g) ?? []).length, 1, 'no request is served after the rogue handshake');
  assert.equal(server.registry.rogueHandshakes, 1);
});

test('receiveClientCertificate (overlapped) negotiates on a connection without a certificate', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) }, ({ app, queue }) => {
    app.get('/receive', async (request) => {
      const r = await receiveClientCertificateAsync(queue, request.connectionId!, 0, 4096);
      return { status: r.status, size: r.certInfo?.certEncodedSize ?? null, flags: r.certInfo?.certFlags ?? null };
    });
  });
  const withCert = await rawExchange(port, 'GET /receive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', { cert: pki.client, key: pki.clientKey });
  const der = new X509Certificate(readFileSync(pki.client)).raw;
  assert.match(withCert.data, new RegExp(`\\{"status":${Win32.NO_ERROR},"size":${der.length},"flags":0\\}`));
  const without = await rawExchange(port, 'GET /receive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.match(without.data, new RegExp(`\\{"status":${Win32.ERROR_NOT_FOUND},`));
  const tls13 = await curl(['-k', '--tlsv1.3', '--cert', pki.client, '--key', pki.clientKey, `https://127.0.0.1:${port}/receive`]);
  assert.equal((JSON.parse(tls13.body) as { status: number }).status, Win32.ERROR_NOT_SUPPORTED);
});
