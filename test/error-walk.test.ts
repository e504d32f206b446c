// Walks the ERRORS table of src/errors.ts and provokes every code for real, one row per code:
// the `certbound` command over bad files and flags (a new process, as a user runs it), a
// library call, or a request to a real server (test/helpers/provoke.ts runs and checks them).
// A code without a row fails this test, and `tsc`: a new code comes with a way to provoke it.
// Adding one: a line `CB_ERR_X: cli(…) | call(…) | request(…)` below. More ways per code, the
// start-up errors above all, are in test/startup-errors.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, type ErrorCode } from '../src/errors.js';
import { createServer } from '../src/server/server.js';
import { parseCertificate } from '../src/ocsp/request.js';
import { createStapler } from '../src/ocsp/stapler.js';
import { pemBlocks } from '../src/tls/pem.js';
import { ask, call, cli, fetchReply, oneConnection, provokeAll, request, warning, type Fixtures, type Reply, type Row } from './helpers/provoke.js';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { fileURLToPath } from 'node:url';
import { checkSecretFile, ensurePrivateDir } from '../src/secret-file.js';
import { freePort, run } from './helpers/exec.js';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { certboundPlugin } from '../src/server/plugin.js';
import { devPki } from './helpers/pki.js';
import { drip, pipelineAfter, responseWithStatus } from './helpers/lifetime.js';
import { createFleet } from '../src/fleet/fleet.js';
import { startRedis } from './helpers/redis.js';

/** One GET through a front (createServer's `upstream`) to the upstream `make` starts. */
async function frontAsk(fx: Fixtures, make: () => Promise<{ url: string; timeout?: number; close(): Promise<void> }>): Promise<Reply> {
  const up = await make();
  const server = createServer(fx.serverOptions({ clientAuth: 'optional', upstream: { url: up.url, ...(up.timeout ? { timeout: up.timeout } : {}) } }));
  try {
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
    return await ask(port, '/proxied');
  } finally {
    await server.close();
    await up.close();
  }
}

const BIN = fileURLToPath(new URL('../bin/certbound.js', import.meta.url));

/** A GET with a body of `bytes` (fastify does not read GET bodies; an on-demand route must). */
async function bigGet(port: number, path: string, bytes: number): Promise<Reply> {
  const pki = await devPki();
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, method: 'GET', servername: 'localhost', ca: readFileSync(pki.rootCa), agent: false, maxVersion: 'TLSv1.2', headers: { 'content-length': String(bytes) } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(Math.min(bytes, 1_200_000), 0x61));
  });
}

/** A plain-HTTP app with the plugin trusting 127.0.0.1 as a proxy, asked once with `Client-Cert: value`. */
async function forwardedReply(fx: { pki: { caBundle: string } }, value: string): Promise<Reply> {
  const app = Fastify();
  await app.register(certboundPlugin, { trustedProxies: ['127.0.0.1'], ca: readFileSync(fx.pki.caBundle) });
  app.get('/', async () => 'served');
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const r = await fetch(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`, { headers: { 'client-cert': value } });
    return { status: r.status, body: await r.text() };
  } finally {
    await app.close();
  }
}

const WAYS = {
  CB_ERR_INVALID_OPTION: cli('an unknown flag', () => ['serve', '--bogus'], /--bogus/),
  CB_ERR_INVALID_ARGUMENT: call('parseCertificate of bytes that are no certificate', () => parseCertificate(Buffer.from('not a certificate')), /der/),
  CB_ERR_CONFIG_FILE: cli('a missing config file', (fx) => ['serve', '--config', join(fx.dir, 'missing.json')], /missing\.json: ENOENT/),
  CB_ERR_PEM_MISSING: cli('a missing --cert file', (fx) => ['serve', '--cert', join(fx.dir, 'nope.pem'), '--key', fx.pki.serverKey], /certificate file \S*nope\.pem: ENOENT/),
  CB_ERR_PEM_INVALID: cli('a --crl file that is not a CRL', (fx) => ['serve', ...fx.tlsFlags, '--crl', fx.file('not-a-crl.pem', 'garbage\n')], /CRL file \S*not-a-crl\.pem holds no valid PEM CRL/),
  CB_ERR_KEY_MISMATCH: cli('a key that is not the certificate\'s', (fx) => ['serve', '--cert', fx.pki.server, '--key', fx.pki.clientKey], /client\.key/),
  CB_ERR_TLS_CONTEXT: call('createServer with tls.ciphers that match no cipher', (fx) => createServer(fx.serverOptions({ tls: { ciphers: 'NOPE' } })), /the tls options: .*no cipher match/),
  CB_ERR_PFX_INVALID: cli('a --pfx file that is not PKCS#12', (fx) => ['serve', '--pfx', fx.file('bad.p12', 'garbage\n'), '--host', '127.0.0.1', '--port', '0'], /PKCS#12 bundle \S*bad\.p12: /),
  CB_ERR_PASSPHRASE_FILE: cli('a missing --key-passphrase-file', (fx) => ['serve', ...fx.tlsFlags, '--key-passphrase-file', join(fx.dir, 'no-passphrase')], /passphrase file \S*no-passphrase: ENOENT/),
  CB_ERR_LISTEN: cli('a port in use', async (fx) => ['serve', ...fx.tlsFlags, '--port', String(await fx.busyPort())], /EADDRINUSE/),
  CB_ERR_RELOAD: call('reload() with a key that is not the certificate\'s', async (fx) => {
    const s = createServer(fx.serverOptions());
    try {
      return await s.reload({ cert: readFileSync(fx.pki.server), key: readFileSync(fx.pki.clientKey), ca: readFileSync(fx.pki.caBundle) });
    } finally {
      await s.close();
    }
  }, /CB_ERR_KEY_MISMATCH/),
  CB_ERR_DEV_PKI: cli('dev-pki into a read-only directory', (fx) => ['dev-pki', fx.readOnlyDir('read-only')], /read-only: .*\(EACCES\)/, { unprivileged: true }),
  CB_ERR_OCSP_CACHE: call('listen() with ocsp.cacheDir under a regular file', (fx) => createServer(fx.serverOptions({ ocsp: { cacheDir: join(fx.file('plain-file', 'x'), 'cache') } })).listen({ host: '127.0.0.1', port: 0 }), /plain-file/),
  // Something nothing expected (here JSON.parse failing under `certbound version`) still ends with a code.
  CB_ERR_INTERNAL: cli('an unexpected exception', () => ['version'], /unexpected failure for the test/, { nodeArgs: ['--import', 'data:text/javascript,JSON.parse=()=>{throw new TypeError("unexpected failure for the test")}'] }),
  CB_ERR_CLIENT_CERT_REQUIRED: request('a required route without a certificate', async (fx) => ask((await fx.tlsServer()).port, '/required')),
  CB_ERR_CLIENT_CERT_UNTRUSTED: request('an expired certificate', async (fx) => ask((await fx.tlsServer()).port, '/connection', { cert: fx.pki.clientExpired, key: fx.pki.clientExpiredKey })),
  CB_ERR_CLIENT_CERT_DENIED: request('a certificate the mapper does not map (denyUnmapped)', async (fx) => ask((await fx.tlsServer()).port, '/connection', { cert: fx.pki.client, key: fx.pki.clientKey })),
  CB_ERR_TLS_REQUIRED: request('a required route over plain HTTP', async (fx) => fetchReply(`http://127.0.0.1:${(await fx.httpApp()).port}/required`)),
  CB_ERR_ROUTE_UNGUARDED: request('a route declared before the plugin', async (fx) => fetchReply(`http://127.0.0.1:${(await fx.httpApp()).port}/early`)),
  // No client gets there (the renegotiation guard stops their handshakes at the ClientHello):
  // a route renegotiates without certbound recording it, and the next request on the
  // connection is refused and the connection closed. The reply is read on the server side.
  CB_ERR_IDENTITY_CHANGED: request('a request after a handshake certbound did not record', async (fx) => {
    const { port, replies } = await fx.tlsServer();
    await oneConnection(async (agent) => {
      assert.equal((await ask(port, '/renegotiate-unrecorded', { agent })).status, 200);
      await assert.rejects(ask(port, '/connection?after-unrecorded', { agent }), /socket hang up|ECONNRESET/, 'the connection is closed');
    });
    const reply = replies.get('/connection?after-unrecorded');
    assert.ok(reply, 'the server answered');
    return reply;
  }),
  CB_ERR_NEGOTIATE_TLS13: request('an on-demand route over TLS 1.3', async (fx) => ask((await fx.tlsServer()).port, '/whoami', { minVersion: 'TLSv1.3' })),
  CB_ERR_NEGOTIATE_LIMIT: request('a second on-demand request on a connection that renegotiated', async (fx) => {
    const { port } = await fx.tlsServer();
    return oneConnection(async (agent) => {
      const first = await ask(port, '/whoami', { agent });
      assert.equal((JSON.parse(first.body) as { code: string }).code, 'CB_ERR_CLIENT_CERT_REQUIRED', 'asked once, and no certificate came');
      return ask(port, '/whoami', { agent });
    });
  }),
  CB_ERR_NEGOTIATE_BODY: request('negotiateClientCertificate() before the body was read', async (fx) => ask((await fx.tlsServer()).port, '/negotiate-early', { method: 'POST', holdBody: true })),
  CB_ERR_UPSTREAM_UNAVAILABLE: request('a front whose upstream is down', async (fx) => frontAsk(fx, async () => ({ url: `http://127.0.0.1:${await freePort()}`, close: async () => {} }))),
  CB_ERR_UPSTREAM_TIMEOUT: request('a front whose upstream takes the request and never answers', async (fx) => frontAsk(fx, async () => {
    const silent = createNetServer((s) => s.on('data', () => {}));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, timeout: 300, close: async () => { silent.close(); } };
  })),
  CB_ERR_FORWARDED_CERT_INVALID: request('a trusted proxy forwarding Client-Cert with bad base64', async (fx) => forwardedReply(fx, ':not base64!:')),
  CB_ERR_FORWARDED_CERT_TOO_LARGE: request('a trusted proxy forwarding a 13000-byte Client-Cert', async (fx) => forwardedReply(fx, `:${'A'.repeat(13_000)}:`)),
  CB_ERR_CONNECTION_EXPIRED: request('a request pipelined behind a streaming response, after maxConnectionLifetime', async (fx) => {
    // The pipelined request lands after the lifetime (600 ms) while the drip still runs (1 s), which
    // ends before lifetime + grace (1.2 s) cuts it: 200 ms of slack on each side for a loaded machine.
    const server = createServer(fx.serverOptions({ clientAuth: 'optional', maxConnectionLifetime: 600 }));
    server.app.get('/drip', async (_req, reply) => reply.type('text/plain').send(drip(1000)));
    try {
      const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
      const r = await pipelineAfter(port, 'GET /drip HTTP/1.1\r\nHost: localhost\r\n\r\n', 'GET /connection HTTP/1.1\r\nHost: localhost\r\n\r\n', 800);
      const refused = responseWithStatus(r.text, 503);
      assert.ok(refused, r.text.slice(-300));
      return refused;
    } finally {
      await server.close();
    }
  }),
  CB_ERR_CHANNEL_BINDING: request('a channel-binding route without a binding', async (fx) => ask((await fx.tlsServer()).port, '/bound')),
  CB_ERR_BODY_TOO_LARGE: request('a GET with a 2 MiB body to an on-demand route', async (fx) => bigGet((await fx.tlsServer()).port, '/whoami', 2 * 1024 * 1024)),
  CB_ERR_PRIVATE_DIR: call('ensurePrivateDir on a regular file', (fx) => ensurePrivateDir(fx.file('not-a-dir', 'x')), /not-a-dir/),
  CB_ERR_FLEET_SECRET: cli('a --fleet-secret-file that others can read', (fx) => {
    const path = fx.file('fleet-wide.secret', 'a fleet secret that is long enough, 0246813579\n');
    chmodSync(path, 0o644);
    return ['serve', ...fx.tlsFlags, '--fleet', 'redis://127.0.0.1:1', '--fleet-secret-file', path];
  }, /fleet-wide\.secret: mode 0644/),
  CB_ERR_FLEET_UNAVAILABLE: warning('a fleet whose Redis does not answer (nothing listens on its port)', async () => {
    const lines: string[] = [];
    const log = { info: () => {}, error: () => {}, warn: (o: object, m: string) => { lines.push(`${(o as { code?: string }).code}: ${m}`); } };
    const fleet = createFleet({ url: `redis://127.0.0.1:${await freePort()}`, secret: 'a fleet secret that is long enough, 0246813579', connectWaitMs: 300, logger: log });
    await fleet.start();
    assert.equal(fleet.status().state, 'degraded');
    assert.equal(fleet.status().tickets.source, 'local', 'it serves with keys of its own');
    await fleet.close();
    return lines.join('\n');
  }, /is unavailable .*serves with its own ticket keys/),
  CB_ERR_FLEET_TICKETS: warning('a fleet whose ticket-key record in Redis was sealed with another secret', async () => {
    const redis = await startRedis();
    const lines: string[] = [];
    const log = { info: () => {}, warn: () => {}, error: (o: object, m: string) => { lines.push(`${(o as { code?: string }).code}: ${m}`); } };
    const other = createFleet({ url: redis.url, secret: 'another fleet secret, long enough too, 98765', machine: 'other' });
    const fleet = createFleet({ url: redis.url, secret: 'a fleet secret that is long enough, 0246813579', machine: 'this', logger: log });
    try {
      await other.start();
      await fleet.start();
      assert.equal(fleet.status().tickets.source, 'local', 'keys of its own, never the other secret\'s');
      assert.equal(other.status().tickets.source, 'fleet');
    } finally {
      await fleet.close();
      await other.close();
      await redis.stop();
    }
    return lines.join('\n');
  }, /sealed with another fleet secret/),
  CB_ERR_SECRET_FILE: call('checkSecretFile on a missing file', (fx) => checkSecretFile(join(fx.dir, 'missing.key')), /missing\.key/),
  CB_ERR_SECRET_FILE_MODE: warning('checkSecretFile on a 0644 key file', (fx) => {
    const path = fx.file('wide.key', 'key');
    chmodSync(path, 0o644);
    const report = checkSecretFile(path);
    return report ? `${report.code}: ${report.message}` : 'no report';
  }, /wide\.key is mode 0?644/),
  CB_ERR_STORE_DIR_UNSAFE: warning('certbound store list on a store directory that others can write', async (fx) => {
    const store = join(fx.dir, 'stores-wide', 'current-user', 'MY');
    mkdirSync(store, { recursive: true });
    chmodSync(store, 0o777);
    const r = await run(process.execPath, [BIN, 'store', 'list', '--store-root', join(fx.dir, 'stores-wide'), '--location', 'current-user', '--store', 'MY'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, 'the store is still listed');
    return r.stdout;
  }, /stores-wide\/current-user\/MY is mode 0777 \(group or others can write it\)/),
  CB_ERR_JOB_FILE_INVALID: warning('certbound job list with a truncated job file', async (fx) => {
    const jobs = join(fx.dir, 'jobs-invalid');
    mkdirSync(jobs, { recursive: true, mode: 0o700 });
    writeFileSync(join(jobs, '2f1c3b7e-0000-4000-8000-000000000001.json'), '{"id":', { mode: 0o600 });
    const r = await run(process.execPath, [BIN, 'job', 'list', '--jobs-dir', jobs], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, 'the other jobs keep working');
    return r.stderr;
  }),
  CB_ERR_JOB_FILE_UNSAFE: warning('certbound job list with a job file that is a symbolic link', async (fx) => {
    const jobs = join(fx.dir, 'jobs-unsafe');
    mkdirSync(jobs, { recursive: true, mode: 0o700 });
    symlinkSync(fx.file('elsewhere.json', '{}'), join(jobs, '2f1c3b7e-0000-4000-8000-000000000002.json'));
    const r = await run(process.execPath, [BIN, 'job', 'list', '--jobs-dir', jobs], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, 'the other jobs keep working');
    return r.stderr;
  }),
  CB_ERR_OCSP_CHAIN: call('stapler.add with a leaf and no issuer', (fx) => createStapler().add([pemBlocks(readFileSync(fx.pki.server, 'utf8'), 'CERTIFICATE')[0] as Buffer])),
  CB_ERR_OCSP_CLOSED: call('stapler.add after close', async (fx) => {
    const stapler = createStapler();
    await stapler.close();
    return stapler.add([readFileSync(fx.pki.server), readFileSync(fx.pki.rootCa)]);
  }),
} satisfies Record<ErrorCode, Row>;

test('every code of ERRORS has a row in this walk, and every row is a code of ERRORS', () => {
  assert.deepEqual(Object.keys(WAYS).sort(), Object.keys(ERRORS).sort());
});

test('each row provokes its code: a CLI line, a CertboundError, or a refused request', { concurrency: true }, async (t) => {
  await provokeAll(t, Object.entries(WAYS).map(([code, row]) => [code as ErrorCode, row] as const), 4);
});
