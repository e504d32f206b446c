// The ClientHello reader (strict, bounded, never throws) and per-host TLS 1.2 caps decided
// from it, with real ClientHellos from openssl, curl and python3.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseClientHello, MAX_CLIENT_HELLO_BYTES } from '../src/tls/client-hello.js';
import { hostMatches } from '../src/tls/host-policy.js';
import { devPki } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { startServer } from './helpers/server.js';

/** Captures the first bytes a real client sends (its ClientHello), then hangs up. */
async function captureHello(client: (port: number) => Promise<unknown>): Promise<Buffer> {
  let captured = Buffer.alloc(0);
  const srv = createNetServer((s: Socket) => {
    s.on('data', (d: Buffer) => {
      captured = Buffer.concat([captured, d]);
      if (parseClientHello(captured).status !== 'incomplete') s.destroy();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await client(port).catch(() => {});
  await new Promise((r) => srv.close(r));
  return captured;
}

test('real ClientHellos: SNI, ALPN and versions from openssl, curl and python3', async () => {
  const openssl = await captureHello((port) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'Example.TEST', '-alpn', 'h2,http/1.1'], { timeoutMs: 5000 }));
  const o = parseClientHello(openssl);
  assert.equal(o.status, 'ok');
  if (o.status === 'ok') {
    assert.equal(o.hello.serverName, 'example.test');
    assert.deepEqual(o.hello.alpn, ['h2', 'http/1.1']);
    assert.ok(o.hello.versions.includes(0x0304));
  }
  const curl = await captureHello((port) => run('curl', ['-s', '--max-time', '3', '--http1.1', '--tls-max', '1.2', '--resolve', `svc.local:${port}:127.0.0.1`, `https://svc.local:${port}/`], { timeoutMs: 5000 }));
  const c = parseClientHello(curl);
  assert.equal(c.status, 'ok');
  if (c.status === 'ok') {
    assert.equal(c.hello.serverName, 'svc.local');
    assert.deepEqual(c.hello.alpn, ['http/1.1']);
    assert.ok(!c.hello.versions.includes(0x0304), 'capped at 1.2 by the client');
  }
  const py = await captureHello((port) => run('python3', ['-c', `import ssl,socket\nctx=ssl.create_default_context()\ntry: ctx.wrap_socket(socket.create_connection(("127.0.0.1",${port})), server_hostname="127.0.0.1")\nexcept Exception: pass`], { timeoutMs: 5000 }));
  const p = parseClientHello(py);
  assert.equal(p.status, 'ok');
  if (p.status === 'ok') assert.equal(p.hello.serverName, null, 'no SNI for an IP address');

  // Every strict prefix is incomplete, never ok or a throw.
  for (let i = 0; i < openssl.length; i++) assert.equal(parseClientHello(openssl.subarray(0, i)).status, 'incomplete', `prefix ${i}`);
});

test('malformed ClientHellos are invalid with a reason', async () => {
  const hello = await captureHello((port) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'a.test'], { timeoutMs: 5000 }));
  const mutate = (f: (b: Buffer) => void) => { const b = Buffer.from(hello); f(b); return parseClientHello(b); };
  const cases: [string, ReturnType<typeof parseClientHello>, RegExp][] = [
    ['HTTP instead of TLS', parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), /not a TLS handshake/],
    ['record version', mutate((b) => { b[1] = 2; }), /record version/],
    ['zero record length', mutate((b) => { b.writeUInt16BE(0, 3); }), /record length/],
    ['huge record length', mutate((b) => { b.writeUInt16BE(0xffff, 3); }), /record length/],
    ['ServerHello type', mutate((b) => { b[5] = 2; }), /not a ClientHello/],
    ['session id too long', mutate((b) => { b[5 + 4 + 2 + 32] = 33; }), /session_id/],
    ['trailing data', parseClientHello(Buffer.concat([Buffer.from([22, 3, 1]), u16(hello.readUInt16BE(3) + 1), hello.subarray(5), Buffer.from([0])])), /./],
  ];
  for (const [name, r, reason] of cases) {
    assert.equal(r.status, 'invalid', name);
    if (r.status === 'invalid') assert.match(r.reason, reason, name);
  }
  // The SNI host_name: OpenSSL accepts 1–255 bytes without a NUL, and so does the reader.
  const idx = hello.indexOf(Buffer.from('a.test'));
  assert.ok(idx > 0);
  const withByte = (byte: number) => { const b = Buffer.from(hello); b[idx + 1] = byte; return parseClientHello(b); };
  assert.equal(withByte(0x00).status, 'invalid', 'a NUL byte in the name');
  // OpenSSL checks only the major record version: a 0x0305 record is read like any other.
  const minor5 = Buffer.from(hello);
  minor5[2] = 5;
  assert.equal(parseClientHello(minor5).status, 'ok', 'record version 0x0305');
  for (const [byte, name] of [[0x5f, 'a_test'], [0x20, 'a test'], [0x2a, 'a*test']] as const) {
    const r = withByte(byte);
    assert.equal(r.status, 'ok', name);
    if (r.status === 'ok') assert.equal(r.hello.serverName, name);
  }
});

test('onDemandHosts: an SNI with an underscore (internal DNS) is routed like any other name, not closed before TLS', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), onDemandHosts: ['my_host.internal'] });
  const protocolFor = async (servername: string) => {
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-CAfile', pki.rootCa], { input: '', timeoutMs: 8000 });
    return /New, (TLSv1\.[23])/.exec(r.stdout)?.[1] ?? `no TLS: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 200)}`;
  };
  assert.equal(await protocolFor('my_host.internal'), 'TLSv1.2', 'the listed host goes to the TLS 1.2 twin');
  assert.equal(await protocolFor('other_host.internal'), 'TLSv1.3', 'another underscore name is served by the main listener');
  assert.equal(await protocolFor('localhost'), 'TLSv1.3');
});

function u16(n: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16BE(n & 0xffff); return b; }

test('fuzz: random and mutated inputs never throw and are bounded', async () => {
  const hello = await captureHello((port) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'f.test', '-alpn', 'h2'], { timeoutMs: 5000 }));
  const statuses = new Set<string>();
  for (let i = 0; i < 4000; i++) {
    const b = Buffer.from(hello);
    const flips = 1 + (i % 8);
    for (let j = 0; j < flips; j++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
    const cut = i % 3 === 0 ? b.subarray(0, Math.floor(Math.random() * b.length)) : b;
    statuses.add(parseClientHello(cut).status);
    statuses.add(parseClientHello(randomBytes(i % 300)).status);
  }
  assert.ok([...statuses].every((s) => ['ok', 'invalid', 'incomplete'].includes(s)));
  // A stream of handshake records that never completes is refused once it passes the bound.
  const endless = Buffer.concat(Array.from({ length: 6 }, () => Buffer.concat([Buffer.from([22, 3, 1]), u16(16384), Buffer.alloc(16384, 1)])));
  const head = Buffer.from(endless);
  head[5] = 1; head[6] = 0xff; head[7] = 0xff; head[8] = 0xff; // handshake length 16 MiB
  assert.equal(parseClientHello(head).status, 'invalid');
  assert.ok(MAX_CLIENT_HELLO_BYTES < 100_000);
});

test('hostMatches: exact, one-label wildcard, * for everything', () => {
  const table: [string, string | null, boolean][] = [
    ['localhost', 'localhost', true], ['LocalHost', 'localhost', true], ['localhost', 'other', false],
    ['*.example.com', 'a.example.com', true], ['*.example.com', 'a.b.example.com', false], ['*.example.com', 'example.com', false],
    ['*', null, true], ['*', 'x', true], ['localhost', null, false], ['example.com.', 'example.com', true],
  ];
  for (const [p, n, want] of table) assert.equal(hostMatches(p, n), want, `${p} vs ${n}`);
});

test('onDemandHosts: that host is served on TLS 1.2 and can renegotiate; others keep TLS 1.3', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), onDemandHosts: ['localhost'], handshakeTimeout: 500 });
  const sha1 = new X509Certificate(readFileSync(pki.client)).fingerprint.replace(/:/g, '').toLowerCase();
  // curl offers TLS 1.3 but the host is capped: the renegotiation works.
  const c = await run('curl', ['-s', '--max-time', '10', '--cacert', pki.rootCa, '--cert', pki.client, '--key', pki.clientKey, '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/whoami`]);
  const who = JSON.parse(c.stdout) as { protocol: string; sha1: string };
  assert.equal(who.protocol, 'TLSv1.2');
  assert.equal(who.sha1, sha1);
  // Without SNI (an IP address) the connection stays on TLS 1.3.
  const d = await run('curl', ['-s', '--max-time', '10', '-k', `https://127.0.0.1:${port}/connection`]);
  assert.equal((JSON.parse(d.stdout) as { protocol: string }).protocol, 'TLSv1.3');
  // Garbage instead of a ClientHello, and silence, both end the connection.
  for (const payload of ['GET / HTTP/1.1\r\n\r\n', '']) {
    const closed = await new Promise<number>((resolve) => {
      const t0 = Date.now();
      const s = netConnect(port, '127.0.0.1', () => { if (payload) s.write(payload); });
      s.on('error', () => {});
      s.on('close', () => resolve(Date.now() - t0));
      s.resume();
      setTimeout(() => s.destroy(), 5000);
    });
    assert.ok(closed < 3000, `closed after ${closed} ms`);
  }
});
