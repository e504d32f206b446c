// src/tls/renegotiation-guard.ts with real peers on 127.0.0.1:
// - openssl s_client (its `R` command, handshake messages read from -msg);
// - Node's tls client;
// - gnutls: gnutls-cli, and libgnutls through python3 ctypes for a legacy client (no RFC 5746)
//   that tries once.
// Also the Node internals the guard relies on (the pin test).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { connect, CLIENT_RENEG_LIMIT, type TLSSocket } from 'node:tls';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants, X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hasCertCallbackInternals, installRenegotiationGuard, type RenegotiationGuard, type RenegotiationRefusal } from '../src/tls/renegotiation-guard.js';
import { devPki } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { startServer } from './helpers/server.js';

const sha1Of = (pemPath: string) => new X509Certificate(readFileSync(pemPath)).fingerprint;

interface Guarded {
  port: number;
  server: Server;
  refusals: RenegotiationRefusal[];
  /** Guards in connection order. */
  guards: RenegotiationGuard[];
  /** 'secure' events seen after the initial handshake, all connections. */
  secureEvents: () => number;
}

/**
 * A bare node:https server (no certbound) with the guard installed at 'secureConnection'
 * (unless `guard: false`). Routes:
 * - `/` answers 200 with the guard's counters;
 * - `/reneg` renegotiates inside allowServerHandshake and answers the client cert's SHA-1.
 */
async function guardedServer(t: TestContext, opts: { guard?: boolean; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; secureOptions?: number } = {}): Promise<Guarded> {
  const pki = await devPki();
  const refusals: RenegotiationRefusal[] = [];
  const guards: RenegotiationGuard[] = [];
  const bySocket = new WeakMap<TLSSocket, RenegotiationGuard>();
  let secureEvents = 0;
  const server = createServer({
    key: readFileSync(pki.serverKey), cert: readFileSync(pki.server), ca: readFileSync(pki.caBundle),
    maxVersion: opts.maxVersion ?? 'TLSv1.2',
    secureOptions: opts.secureOptions ?? constants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
  }, (req, res) => {
    const socket = req.socket as TLSSocket;
    const guard = bySocket.get(socket);
    if (req.url === '/reneg') {
      const renegotiate = () => socket.renegotiate({ requestCert: true, rejectUnauthorized: false }, (err) => {
        if (err) return void res.writeHead(500).end(String(err));
        res.end(JSON.stringify({ sha1: socket.getPeerX509Certificate()?.fingerprint ?? null, handshakes: guard?.handshakes ?? null }));
      });
      if (guard) guard.allowServerHandshake(renegotiate);
      else renegotiate();
      return;
    }
    res.end(JSON.stringify({ handshakes: guard?.handshakes ?? null, ignored: guard?.ignored ?? null }));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.on('secure', () => { secureEvents += 1; });
    if (opts.guard === false) return;
    const guard = installRenegotiationGuard(socket, { onRefused: (reason) => refusals.push(reason) });
    bySocket.set(socket, guard);
    guards.push(guard);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return { port: (server.address() as AddressInfo).port, server, refusals, guards, secureEvents: () => secureEvents };
}

interface Scripted { out: string; code: number | null; closedEarly: boolean }

/**
 * Runs a peer and writes each step's text once the output since the previous write matches
 * its `waitFor`. Stdin stays open until `holdMs` after the last write. `closedEarly` is true
 * when the peer exited before that (e.g. the server closed the connection).
 */
function scripted(cmd: string, args: string[], steps: { waitFor?: RegExp; write: string }[], holdMs = 6000): Promise<Scripted> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let mark = 0;
    let i = 0;
    let stdinEnded = false;
    let hold: NodeJS.Timeout | undefined;
    const kill = setTimeout(() => child.kill('SIGKILL'), holdMs + 15_000);
    const advance = () => {
      while (i < steps.length) {
        const step = steps[i]!;
        if (step.waitFor && !step.waitFor.test(out.slice(mark))) return;
        mark = out.length;
        child.stdin.write(step.write);
        i += 1;
      }
      hold ??= setTimeout(() => { stdinEnded = true; child.stdin.end(); }, holdMs);
    };
    const onData = (d: Buffer) => { out += d.toString(); advance(); };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.stdin.on('error', () => {});
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(kill);
      clearTimeout(hold);
      resolve({ out, code, closedEarly: !stdinEnded });
    });
    advance();
  });
}

/** Handshake messages of one type in s_client -msg output ('<<<' from the server, '>>>' to it). */
function count(out: string, dir: '<<<' | '>>>', type: string): number {
  return out.match(new RegExp(`^${dir} TLS 1\\.2, Handshake \\[length [0-9a-f]+\\], ${type}\\s*$`, 'gm'))?.length ?? 0;
}

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`;

/** s_client on TLS 1.2: GET /, wait for the 200, then the `R` command (client renegotiation). */
async function sClientRenegotiates(port: number, extra: string[] = [], first = '/'): Promise<Scripted> {
  return scripted('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-msg', ...extra], [
    { write: GET(first) },
    { waitFor: /HTTP\/1\.1 200[\s\S]*\}/, write: 'R\n' },
  ]);
}

test('pin: the Node internals the guard relies on are present (fails on a Node that changed them)', async (t) => {
  const { port, guards, refusals } = await guardedServer(t);
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(s));
    s.on('error', reject);
  });
  t.after(() => socket.destroy());
  await new Promise((r) => setTimeout(r, 50));
  const guard = guards[0];
  assert.ok(guard, 'the server installed a guard');
  assert.equal(guard.mode, 'client-hello',
    `Node ${process.version}: the TLSWrap handle no longer has enableCertCb()/certCbDone()/oncertcb, which ` +
    'src/tls/renegotiation-guard.ts uses to refuse a client-initiated renegotiation at its ClientHello ' +
    '(lib/_tls_wrap.js loadSNI/requestOCSPDone, crypto_tls.cc SSLCertCallback/CertCbDone). The guard now only ' +
    'closes such a connection after its handshake completed: re-check those internals before upgrading.');
  // The same check on a fresh server-side handle, before the guard replaced oncertcb.
  const probe = await guardedServer(t, { guard: false });
  const handle = await new Promise<unknown>((resolve, reject) => {
    probe.server.once('secureConnection', (s: TLSSocket) => resolve((s as unknown as { _handle: unknown })._handle));
    const c = connect({ host: '127.0.0.1', port: probe.port, rejectUnauthorized: false }, () => c.end());
    c.on('error', reject);
  });
  assert.ok(hasCertCallbackInternals(handle), `Node ${process.version}: TLSWrap lacks enableCertCb/certCbDone/oncertcb`);
  assert.equal((handle as { oncertcb: { name: string } }).oncertcb.name, 'loadSNI', 'Node\'s own oncertcb is loadSNI (lib/_tls_wrap.js)');
  // The callback really runs for a client renegotiation's ClientHello: the refusal is the
  // pre-handshake one, not the 'secure' fallback.
  const closed = new Promise((r) => socket.once('close', r));
  socket.renegotiate({}, () => {});
  await closed;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(refusals, ['client-renegotiation']);
});

test('s_client R: refused at the second ClientHello, the server sends no second ServerHello or Certificate, and closes', async (t) => {
  const { port, refusals, guards } = await guardedServer(t);
  const s = await sClientRenegotiates(port);
  assert.match(s.out, /HTTP\/1\.1 200/, 'served before the renegotiation');
  assert.match(s.out, /RENEGOTIATING/);
  assert.equal(count(s.out, '>>>', 'ClientHello'), 2, s.out);
  assert.equal(count(s.out, '<<<', 'ServerHello'), 1, 'no ServerHello after the second ClientHello');
  assert.equal(count(s.out, '<<<', 'Certificate'), 1, 'no Certificate after the second ClientHello');
  assert.equal(s.closedEarly, true, 'the server closed the connection (s_client exited while its stdin was open)');
  assert.deepEqual(refusals, ['client-renegotiation']);
  assert.equal(guards[0]?.handshakes, 0);
});

test('control: without the guard, Node runs the client renegotiation to completion (a second Certificate)', async (t) => {
  const { port } = await guardedServer(t, { guard: false });
  const s = await sClientRenegotiates(port);
  assert.equal(count(s.out, '<<<', 'Certificate'), 2, 'the measurement above can see a second Certificate');
});

test('Node\'s tls client renegotiate(): refused before the server answers, the connection closes', async (t) => {
  const pki = await devPki();
  const { port, refusals, guards, secureEvents } = await guardedServer(t);
  const outcome = await new Promise<{ renegotiated: boolean; closed: boolean; served: number }>((resolve) => {
    let body = '';
    let renegotiated = false;
    const sock = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) }, () => sock.write(GET('/')));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      body += d;
      if (/\}$/.test(body) && !renegotiated) sock.renegotiate({}, (err) => { renegotiated = !err; if (!err) sock.write(GET('/')); });
    });
    sock.on('error', () => {});
    const timer = setTimeout(() => { sock.destroy(); resolve({ renegotiated, closed: false, served: 0 }); }, 8000);
    sock.on('close', () => { clearTimeout(timer); resolve({ renegotiated, closed: true, served: body.match(/HTTP\/1\.1 200/g)?.length ?? 0 }); });
  });
  assert.equal(outcome.closed, true);
  assert.equal(outcome.renegotiated, false, 'the client never completed its renegotiation');
  assert.equal(outcome.served, 1, 'nothing served after the attempt');
  assert.deepEqual(refusals, ['client-renegotiation']);
  assert.equal(guards[0]?.handshakes, 0);
  assert.equal(secureEvents(), 0, 'no handshake completed after the first');
});

test('the server\'s own renegotiation gets the client certificate, before and after a refused attempt on another connection, and on the same connection', async (t) => {
  const pki = await devPki();
  const { port, refusals } = await guardedServer(t);
  const want = sha1Of(pki.client);
  const ask = () => new Promise<{ sha1: string | null; handshakes: number }>((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) }, () => sock.write(`GET /reneg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    let body = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => { body += d; });
    sock.on('error', reject);
    sock.on('close', () => {
      const json = body.slice(body.indexOf('{'));
      try { resolve(JSON.parse(json) as { sha1: string | null; handshakes: number }); } catch { reject(new Error(body)); }
    });
  });

  assert.deepEqual(await ask(), { sha1: want, handshakes: 1 }, 'before');
  const refused = await sClientRenegotiates(port);
  assert.equal(count(refused.out, '<<<', 'Certificate'), 1);
  assert.deepEqual(refusals, ['client-renegotiation']);
  assert.deepEqual(await ask(), { sha1: want, handshakes: 1 }, 'after');

  // Same connection: the server renegotiates (s_client answers the HelloRequest with its
  // certificate), then the client tries on its own and is refused at its ClientHello.
  const s = await sClientRenegotiates(port, ['-cert', pki.client, '-key', pki.clientKey], '/reneg');
  assert.match(s.out, /"handshakes":1/, s.out);
  assert.match(s.out, new RegExp(`"sha1":"${want}"`));
  assert.equal(count(s.out, '<<<', 'HelloRequest'), 1);
  assert.equal(count(s.out, '>>>', 'ClientHello'), 3, 'initial, answer to HelloRequest, R');
  assert.equal(count(s.out, '<<<', 'Certificate'), 2, 'initial and the server\'s renegotiation only');
  assert.equal(count(s.out, '<<<', 'ServerHello'), 2);
  assert.equal(s.closedEarly, true);
  assert.deepEqual(refusals, ['client-renegotiation', 'client-renegotiation']);
});

/** A TLS 1.2 client without RFC 5746 (libgnutls, %DISABLE_SAFE_RENEGOTIATION) that renegotiates once, then sends GET. */
const LEGACY_CLIENT = [
  'import ctypes, socket, sys',
  'g = ctypes.CDLL("libgnutls.so.30")',
  'g.gnutls_record_send.restype = g.gnutls_record_recv.restype = ctypes.c_ssize_t',
  'g.gnutls_record_send.argtypes = g.gnutls_record_recv.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]',
  'g.gnutls_strerror.restype = g.gnutls_alert_get_name.restype = ctypes.c_char_p',
  'g.gnutls_handshake.argtypes = g.gnutls_alert_get.argtypes = g.gnutls_safe_renegotiation_status.argtypes = [ctypes.c_void_p]',
  'assert g.gnutls_global_init() == 0',
  'sess = ctypes.c_void_p()',
  'assert g.gnutls_init(ctypes.byref(sess), 2) == 0  # GNUTLS_CLIENT',
  'assert g.gnutls_priority_set_direct(sess, b"NORMAL:-VERS-ALL:+VERS-TLS1.2:%DISABLE_SAFE_RENEGOTIATION", None) == 0',
  'cred = ctypes.c_void_p()',
  'assert g.gnutls_certificate_allocate_credentials(ctypes.byref(cred)) == 0',
  'assert g.gnutls_credentials_set(sess, 1, cred) == 0  # GNUTLS_CRD_CERTIFICATE',
  's = socket.create_connection(("127.0.0.1", int(sys.argv[1])))',
  'g.gnutls_transport_set_int2(sess, s.fileno(), s.fileno())',
  'r = g.gnutls_handshake(sess)',
  'print("handshake", r, "safe-renegotiation", g.gnutls_safe_renegotiation_status(sess), flush=True)',
  'r = g.gnutls_handshake(sess)',
  'print("rehandshake", r, g.gnutls_strerror(r).decode(), g.gnutls_alert_get_name(g.gnutls_alert_get(sess)).decode() if r == -16 else "", flush=True)',
  'req = b"GET /connection HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n"',
  'print("sent", g.gnutls_record_send(sess, req, len(req)), flush=True)',
  'buf = ctypes.create_string_buffer(16384)',
  'while True:',
  '    n = g.gnutls_record_recv(sess, buf, len(buf))',
  '    if n <= 0: break',
  '    sys.stdout.write(buf.raw[:n].decode(errors="replace"))',
].join('\n');

async function legacyClient(t: TestContext, port: number): Promise<string | undefined> {
  const probe = await run('python3', ['-c', 'import ctypes; ctypes.CDLL("libgnutls.so.30")']).catch(() => ({ code: 1 }));
  if (probe.code !== 0) {
    t.skip('python3 with libgnutls.so.30 is not available');
    return undefined;
  }
  const r = await run('python3', ['-c', LEGACY_CLIENT, String(port)], { timeoutMs: 15_000 });
  assert.match(r.stdout, /^handshake 0 safe-renegotiation 0$/m, 'a legacy client (no RFC 5746): ' + r.stdout + r.stderr);
  assert.match(r.stdout, /^rehandshake -16 .* No renegotiation is allowed$/m, 'OpenSSL refused the renegotiation with a warning alert');
  return r.stdout;
}

test('a legacy renegotiation OpenSSL refused does not end the connection: the next request gets 200', async (t) => {
  const { port, refusals, guards, secureEvents } = await guardedServer(t);
  const out = await legacyClient(t, port);
  if (out === undefined) return;
  assert.match(out, /HTTP\/1\.1 200/, out);
  assert.match(out, /"handshakes":0,"ignored":1/, 'the empty \'secure\' event was ignored, not counted');
  assert.equal(secureEvents(), 1, 'pin: Node emits an empty \'secure\' for a renegotiation OpenSSL refused (if this fails, Node changed; the guard\'s Finished comparison still holds)');
  assert.deepEqual(refusals, []);
  assert.equal(guards[0]?.handshakes, 0);
});

test('certbound: a legacy refused renegotiation keeps serving; s_client R is refused at its ClientHello', async (t) => {
  const { server, port } = await startServer(t, 'optional');
  const out = await legacyClient(t, port);
  if (out !== undefined) {
    assert.match(out, /HTTP\/1\.1 200/, out);
    assert.equal(server.registry.rogueHandshakes, 0);
  }
  const s = await sClientRenegotiates(port, [], '/connection');
  assert.equal(count(s.out, '<<<', 'Certificate'), 1, s.out);
  assert.equal(count(s.out, '<<<', 'ServerHello'), 1);
  assert.equal(s.closedEarly, true);
  assert.equal(server.registry.rogueHandshakes, 1);
});

test('certbound over HTTP/2 on TLS 1.2: a client renegotiation is refused once and counted once', async (t) => {
  // http2 sessions call disableRenegotiation(): Node's start hook errors first
  // (ERR_TLS_RENEGOTIATION_DISABLED, the registry closes), then OpenSSL reaches the certificate
  // callback on a destroyed socket, which must neither resume the handshake nor count again.
  const { server, port } = await startServer(t, 'optional', { http2: true });
  const s = await scripted('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-alpn', 'h2', '-msg'], [
    { waitFor: /ALPN protocol: h2/, write: 'R\n' },
  ], 3000);
  assert.equal(count(s.out, '>>>', 'ClientHello'), 2, s.out);
  assert.equal(count(s.out, '<<<', 'ServerHello'), 1);
  assert.equal(count(s.out, '<<<', 'Certificate'), 1);
  assert.equal(s.closedEarly, true);
  assert.equal(server.registry.rogueHandshakes, 1);
});

test('gnutls-cli --rehandshake (legacy): the guard refuses nothing itself; gnutls-cli retries and Node\'s CLIENT_RENEG_LIMIT ends it, as on plain node:https', async (t) => {
  // gnutls-cli retries a handshake after every warning alert (do_handshake loops while the
  // error is not fatal), so it never gets to send a request. Each retry is one more refused
  // renegotiation for Node's rate limit (onhandshakestart, lib/_tls_wrap.js L131-143): the
  // one after CLIENT_RENEG_LIMIT raises ERR_TLS_SESSION_ATTACK and the HTTP server closes.
  const args = (port: number) => ['--rehandshake', '--insecure', '--crlf', '--port', String(port), '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.2:%DISABLE_SAFE_RENEGOTIATION', '127.0.0.1'];
  const guarded = await guardedServer(t);
  const plain = await guardedServer(t, { guard: false });
  const g = await run('gnutls-cli', args(guarded.port), { input: GET('/'), holdStdinMs: 5000, timeoutMs: 15_000 });
  const p = await run('gnutls-cli', args(plain.port), { input: GET('/'), holdStdinMs: 5000, timeoutMs: 15_000 });
  const alerts = (out: string) => out.match(/Received alert \[100\]: No renegotiation is allowed/g)?.length ?? 0;
  assert.equal(alerts(p.stdout), CLIENT_RENEG_LIMIT, p.stdout + p.stderr);
  assert.equal(alerts(g.stdout), CLIENT_RENEG_LIMIT, 'as many refusals as plain node:https: ' + g.stdout + g.stderr);
  assert.match(g.stderr, /ReHandshake has failed/);
  assert.deepEqual(guarded.refusals, [], 'the guard itself refused nothing');
  assert.equal(guarded.guards[0]?.ignored, CLIENT_RENEG_LIMIT, 'each refused attempt was an ignored empty \'secure\'');
  assert.equal(guarded.guards[0]?.handshakes, 0);
});

test('TLS 1.3 key updates (s_client K) are untouched: the connection keeps serving', async (t) => {
  const { port, refusals } = await guardedServer(t, { maxVersion: 'TLSv1.3' });
  const s = await scripted('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3'], [
    { write: GET('/') },
    { waitFor: /HTTP\/1\.1 200[\s\S]*\}/, write: 'K\n' },
    { waitFor: /KEYUPDATE/, write: GET('/') },
  ], 1500);
  assert.equal(s.out.match(/HTTP\/1\.1 200/g)?.length, 2, s.out);
  assert.equal(s.closedEarly, false);
  assert.deepEqual(refusals, []);
});

/**
 * An OpenSSL client (libssl through python3 ctypes) that asks for an abbreviated (resumed)
 * renegotiation, SSL_renegotiate_abbreviated(), which s_client and Node cannot do.
 */
const ABBREVIATED_CLIENT = [
  'import ctypes, socket, sys',
  'L = ctypes.CDLL("libssl.so.3")',
  'P, I = ctypes.c_void_p, ctypes.c_int',
  'for name, res, args in [("TLS_client_method", P, []), ("SSL_CTX_new", P, [P]), ("SSL_CTX_ctrl", ctypes.c_long, [P, I, ctypes.c_long, P]),',
  '                        ("SSL_new", P, [P]), ("SSL_set_fd", I, [P, I]), ("SSL_connect", I, [P]), ("SSL_renegotiate_abbreviated", I, [P]),',
  '                        ("SSL_do_handshake", I, [P]), ("SSL_session_reused", I, [P]),',
  '                        ("SSL_write", I, [P, ctypes.c_char_p, I]), ("SSL_read", I, [P, ctypes.c_char_p, I])]:',
  '    f = getattr(L, name); f.restype = res; f.argtypes = args',
  'ctx = L.SSL_CTX_new(L.TLS_client_method())',
  'L.SSL_CTX_ctrl(ctx, 124, 0x0303, None)  # SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION)',
  's = socket.create_connection(("127.0.0.1", int(sys.argv[1])))',
  'ssl = L.SSL_new(ctx); L.SSL_set_fd(ssl, s.fileno())',
  'assert L.SSL_connect(ssl) == 1',
  'buf = ctypes.create_string_buffer(16384)',
  'def get():',
  '    req = b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n"',
  '    if L.SSL_write(ssl, req, len(req)) <= 0: return "write failed"',
  '    n = L.SSL_read(ssl, buf, len(buf))',
  '    return buf.raw[:n].decode(errors="replace").split("\\r\\n")[0] if n > 0 else "read %d" % n',
  'print("first", get(), flush=True)',
  'L.SSL_renegotiate_abbreviated(ssl)',
  'print("renegotiation", L.SSL_do_handshake(ssl), "resumed", L.SSL_session_reused(ssl), flush=True)',
  'print("second", get(), flush=True)',
].join('\n');

test('an abbreviated (resumed) client renegotiation: refused at its ClientHello with certbound\'s SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION; without it, closed only after it completed', async (t) => {
  // OpenSSL calls the certificate callback only for a full handshake (`!s->hit`). certbound's
  // createServer always sets the option (src/server/server.ts), so the server never resumes
  // in a renegotiation. Without it, only the 'secure' fallback is left.
  const probe = await run('python3', ['-c', 'import ctypes; ctypes.CDLL("libssl.so.3").SSL_renegotiate_abbreviated']).catch(() => ({ code: 1 }));
  if (probe.code !== 0) return void t.skip('python3 with libssl.so.3 is not available');

  const withOption = await guardedServer(t);
  const a = await run('python3', ['-c', ABBREVIATED_CLIENT, String(withOption.port)], { timeoutMs: 15_000 });
  assert.match(a.stdout, /^first HTTP\/1\.1 200 OK$/m, a.stdout + a.stderr);
  assert.match(a.stdout, /^renegotiation -1 resumed 0$/m, 'the renegotiation failed');
  assert.doesNotMatch(a.stdout, /^second HTTP/m);
  assert.deepEqual(withOption.refusals, ['client-renegotiation'], 'refused at the ClientHello');

  const without = await guardedServer(t, { secureOptions: 0 });
  const b = await run('python3', ['-c', ABBREVIATED_CLIENT, String(without.port)], { timeoutMs: 15_000 });
  assert.match(b.stdout, /^renegotiation 1 resumed 1$/m, 'the server resumed: the handshake completed ' + b.stdout + b.stderr);
  assert.doesNotMatch(b.stdout, /^second HTTP/m, 'but the connection carried nothing after it');
  assert.deepEqual(without.refusals, ['client-handshake-completed']);
});
