// Metrics (prom-client text format on a separate listener) scraped after real mTLS traffic:
// good, untrusted, revoked and resumed handshakes, a failed one, an on-demand renegotiation on
// the TLS 1.2 twin and a TLS 1.3 refusal; `serve --metrics` with --workers 2 summed by the
// primary; metrics off loads no prom-client. Expiry warnings: the pure rule as a table, the
// monitor with an injected clock and once with a real timer, and a CRL past its nextUpdate at
// start-up (warned at error level, and really failing the clients it covers).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import { join, resolve, sep } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { issueCertificate, issueCrl, loadIssuer, OID } from '../src/tls/cert-builder.js';
import { expiryFindings, ExpiryMonitor, type ExpiryItem } from '../src/server/expiry.js';
import { parseHostPort } from '../src/server/metrics-listener.js';
import { isCertboundError } from '../src/errors.js';
import { expectTypeOf } from 'expect-type';
import type { AddressInfo } from 'node:net';
import type { CertboundServer, CreateServerOptions, ExpiryFinding, ServerMetrics, ServerMetricsOptions } from '../src/index.js';
import { freePort, run } from './helpers/exec.js';
import { startDevPkiResponder } from '../src/ocsp/dev-responder.js';
import { fetchOcsp } from '../src/ocsp/fetch.js';
import type { DevOcspResponder } from '../src/ocsp/responder.js';
import { devPki, tempDir } from './helpers/pki.js';
import { startServer, type Started } from './helpers/server.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'certbound.js');

interface Answer { status: number; body: string; session: Buffer | undefined; reused: boolean; protocol: string | null }

/** One HTTP/1.1 GET over a fresh TLS connection (Connection: close), as a client would. */
function tlsGet(port: number, path: string, opts: { servername?: string; cert?: string; key?: string; maxVersion?: 'TLSv1.2'; session?: Buffer } = {}): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    let session: Buffer | undefined;
    const s: TLSSocket = connect({
      host: '127.0.0.1', port, servername: opts.servername ?? 'localhost', rejectUnauthorized: false,
      ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key ?? '') } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      ...(opts.session ? { session: opts.session } : {}),
    }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    s.on('session', (x: Buffer) => { session = x; });
    let raw = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { raw += d; });
    s.setTimeout(8000, () => s.destroy(new Error('timeout')));
    s.on('error', reject);
    s.on('end', () => resolvePromise({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1] ?? 0), body: raw.slice(raw.indexOf('\r\n\r\n') + 4), session, reused: s.isSessionReused(), protocol: s.getProtocol() }));
  });
}

/** GET http://127.0.0.1:port/metrics: the exposition text. */
function scrape(port: number, path = '/metrics'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolvePromise, reject) => {
    httpRequest({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    }).on('error', reject).end();
  });
}

/** The value of one series (exact name and labels as Prometheus prints them), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const metricsPort = (s: Started) => s.server.metrics?.address()?.port as number;

let pki: Awaited<ReturnType<typeof devPki>>;
let victim: { pem: string; key: string };
let crl: string;
let mtls: Started;
let onDemand: Started;
let responder: DevOcspResponder;

let promClientLoadedWithoutMetrics: number | undefined;
let metricsOffServer: unknown;

before(async () => {
  pki = await devPki();
  // Before any server with metrics: one without them loads no prom-client at all.
  const off = await startServer(undefined, 'optional');
  await tlsGet(off.port, '/connection', { cert: pki.client, key: pki.clientKey });
  metricsOffServer = off.server.metrics;
  await off.server.close();
  promClientLoadedWithoutMetrics = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes(`${sep}prom-client${sep}`)).length;
  const dir = tempDir();
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const v = await issueCertificate({ subject: { commonName: 'revoked-by-crl' }, issuer: clientCa, extKeyUsage: [OID.clientAuth] });
  victim = { pem: join(dir, 'v.pem'), key: join(dir, 'v.key') };
  writeFileSync(victim.pem, v.pem);
  writeFileSync(victim.key, v.keyPem);
  crl = await issueCrl({ issuer: clientCa, revoked: [v] });
  // optional mode, revocation from the loaded CRL (no network), stapling from a real dev
  // responder on a port of this test (the fetcher sends the AIA's request there).
  responder = await startDevPkiResponder(pki.dir, { port: 0 });
  const at = responder.url;
  mtls = await startServer(undefined, 'optional', {
    metrics: { port: 0 },
    revocation: { crls: [crl], ocsp: false, fetchCrlDistributionPoints: false },
    ocsp: { fetcher: (_url, der, o) => fetchOcsp(at, der, o) },
  });
  // none mode: certificates only on demand, on the TLS 1.2 twin for twin.localhost.
  onDemand = await startServer(undefined, 'none', { metrics: { port: 0, defaultMetrics: false }, onDemandHosts: ['twin.localhost'] });
});
after(async () => {
  await mtls.server.close();
  await onDemand.server.close();
  await responder.close();
});

test('after real mTLS traffic the metrics listener shows exact counts: handshakes, verdicts, revocation checks, requests, open connections', async () => {
  const good = { cert: pki.client, key: pki.clientKey };
  assert.equal((await tlsGet(mtls.port, '/connection', good)).status, 200);
  assert.equal((await tlsGet(mtls.port, '/connection', { cert: pki.clientUntrusted, key: pki.clientUntrustedKey })).status, 403);
  assert.equal((await tlsGet(mtls.port, '/connection', { cert: victim.pem, key: victim.key })).status, 403);
  const first = await tlsGet(mtls.port, '/connection', { ...good, maxVersion: 'TLSv1.2' });
  assert.equal(first.status, 200);
  const again = await tlsGet(mtls.port, '/connection', { ...good, maxVersion: 'TLSv1.2', ...(first.session ? { session: first.session } : {}) });
  assert.equal(again.reused, true, 'the TLS 1.2 session resumed');
  // A client that offers only TLS 1.1: the handshake fails.
  const failed = await new Promise<string>((r) => {
    const s = connect({ host: '127.0.0.1', port: mtls.port, servername: 'localhost', rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => r('connected'));
    s.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message));
  });
  assert.notEqual(failed, 'connected');
  // One connection held open (handshake done, no request) while scraping.
  const held = await new Promise<TLSSocket>((r) => { const s = connect({ host: '127.0.0.1', port: mtls.port, servername: 'localhost', rejectUnauthorized: false, ...good, cert: readFileSync(good.cert), key: readFileSync(good.key) }, () => r(s)); });
  try {
    const serial = mtls.server.ocsp?.states()[0]?.serial ?? '?';
    const m = await scrape(metricsPort(mtls));
    assert.equal(m.status, 200);
    const nextUpdate = sample(m.body, `certbound_ocsp_staple_next_update_seconds{certificate="localhost",serial="${serial}"}`) ?? 0;
    assert.ok(nextUpdate > 3000 && nextUpdate <= 3600, `the staple is valid for about an hour: ${nextUpdate}`);
    assert.match(m.type, /^text\/plain; version=0\.0\.4/);
    const expect: Record<string, number> = {
      'certbound_tls_handshakes_total{protocol="TLSv1.3",resumed="false",result="ok"}': 4,
      'certbound_tls_handshakes_total{protocol="TLSv1.2",resumed="false",result="ok"}': 1,
      'certbound_tls_handshakes_total{protocol="TLSv1.2",resumed="true",result="ok"}': 1,
      'certbound_tls_handshakes_total{protocol="other",resumed="false",result="failed"}': 1,
      'certbound_client_certificate_verdicts_total{cert_flags="OK"}': 3,
      'certbound_client_certificate_verdicts_total{cert_flags="CERT_E_UNTRUSTEDCA"}': 1,
      'certbound_client_certificate_verdicts_total{cert_flags="CERT_E_REVOKED"}': 1,
      'certbound_revocation_checks_total{source="crl",outcome="good"}': 3,
      'certbound_revocation_checks_total{source="crl",outcome="revoked"}': 1,
      // The untrusted chain ends at a CA the server does not hold: revocation cannot be told.
      'certbound_revocation_checks_total{source="none",outcome="no-check"}': 1,
      'certbound_http_request_duration_seconds_count{method="GET",status_class="2xx"}': 3,
      'certbound_http_request_duration_seconds_count{method="GET",status_class="4xx"}': 2,
      'certbound_open_connections': 1,
      'certbound_ocsp_staple_updates_total{outcome="stapled",reason="none"}': 1,
      [`certbound_ocsp_stapled{certificate="localhost",serial="${serial}"}`]: 1,
    };
    const got = Object.fromEntries(Object.keys(expect).map((k) => [k, sample(m.body, k)]));
    assert.deepEqual(got, expect, m.body.split('\n').filter((l) => l.startsWith('certbound_')).join('\n'));
    assert.equal(sample(m.body, 'certbound_certificate_expiry_seconds{kind="server",subject="localhost",sha1="' + (await sha1Of(pki.server)) + '"}')! > 300 * 86_400, true, 'the dev server certificate has about a year left');
    assert.ok(sample(m.body, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics are on');
    assert.equal((await scrape(metricsPort(mtls), '/')).status, 404);
  } finally {
    held.destroy();
  }
});

async function sha1Of(path: string): Promise<string> {
  const { X509Certificate } = await import('node:crypto');
  return new X509Certificate(readFileSync(path)).fingerprint.replace(/:/g, '').toLowerCase();
}

test('an on-demand renegotiation on the TLS 1.2 twin and a refusal on TLS 1.3 are counted, with the renegotiation\'s duration', async () => {
  const who = await tlsGet(onDemand.port, '/whoami', { servername: 'twin.localhost', cert: pki.client, key: pki.clientKey });
  assert.equal(who.status, 200, who.body);
  assert.equal(who.protocol, 'TLSv1.2');
  const refused = await tlsGet(onDemand.port, '/whoami', { cert: pki.client, key: pki.clientKey });
  assert.equal(refused.status, 403);
  const m = (await scrape(metricsPort(onDemand))).body;
  const expect: Record<string, number> = {
    'certbound_negotiations_total{outcome="certificate"}': 1,
    'certbound_negotiations_total{outcome="tls13"}': 1,
    'certbound_negotiation_duration_seconds_count{outcome="certificate"}': 1,
    'certbound_tls_handshakes_total{protocol="TLSv1.2",resumed="false",result="ok"}': 1,
    'certbound_tls_handshakes_total{protocol="TLSv1.3",resumed="false",result="ok"}': 1,
    // Each handshake's decision: none at the first (no certificate yet, twice), OK after the renegotiation.
    'certbound_client_certificate_verdicts_total{cert_flags="none"}': 2,
    'certbound_client_certificate_verdicts_total{cert_flags="OK"}': 1,
  };
  assert.deepEqual(Object.fromEntries(Object.keys(expect).map((k) => [k, sample(m, k)])), expect, m);
  assert.equal(sample(m, 'certbound_negotiation_duration_seconds_count{outcome="tls13"}'), undefined, 'a refusal has no duration');
  assert.equal(sample(m, 'process_cpu_user_seconds_total'), undefined, 'defaultMetrics: false');
});

test('--metrics / metrics option: bad addresses are CB_ERR_INVALID_OPTION; a port in use is CB_ERR_LISTEN', async () => {
  for (const [value, want] of [['127.0.0.1:9464', { host: '127.0.0.1', port: 9464 }], ['[::1]:9464', { host: '::1', port: 9464 }], ['9464', { host: '127.0.0.1', port: 9464 }], ['localhost:0', { host: 'localhost', port: 0 }]] as const) {
    assert.deepEqual(parseHostPort(value, '--metrics'), want, value);
  }
  for (const bad of ['', '127.0.0.1', '127.0.0.1:65536', 'http://127.0.0.1:9464', '::1:9464', '[::g]:1', '127.0.0.1:-1', 'a b:1']) {
    assert.throws(() => parseHostPort(bad, '--metrics'), (e: unknown) => isCertboundError(e, 'CB_ERR_INVALID_OPTION'), bad);
  }
  await assert.rejects(startServer(undefined, 'none', { metrics: { port: 70000 } }), (e: unknown) => isCertboundError(e, 'CB_ERR_INVALID_OPTION') && /metrics\.port/.test((e as Error).message));
  await assert.rejects(startServer(undefined, 'none', { metrics: { registry: {} as never } }), (e: unknown) => isCertboundError(e, 'CB_ERR_INVALID_OPTION'));
  // One registry for two servers: the second is refused with a code, not prom-client's bare Error.
  await assert.rejects(startServer(undefined, 'none', { metrics: { registry: mtls.server.metrics?.registry as never } }), (e: unknown) => isCertboundError(e, 'CB_ERR_INVALID_OPTION') && /metrics\.registry: .*already been registered/.test((e as Error).message));
  const taken = metricsPort(mtls);
  await assert.rejects(startServer(undefined, 'none', { metrics: { port: taken } }), (e: unknown) => isCertboundError(e, 'CB_ERR_LISTEN') && /metrics listener: the port is in use/.test((e as Error).message));
  // The CLI: one coded line, exit 1 (main() in this process).
  const { main } = await import('../src/server/cli.js');
  const errors: string[] = [];
  const original = console.error;
  console.error = (line: string) => errors.push(line);
  try {
    assert.equal(await main(['serve', '--workers', '1', '--port', '0', '--metrics', 'localhost']), 1);
    assert.equal(await main(['serve', '--workers', '1', '--port', '0', '--metrics', `127.0.0.1:${taken}`, '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--log-level', 'silent']), 1);
  } finally {
    console.error = original;
  }
  assert.match(errors[0] ?? '', /^certbound: CB_ERR_INVALID_OPTION: Invalid option --metrics: expected host:port/);
  assert.match(errors[1] ?? '', new RegExp(`^certbound: CB_ERR_LISTEN: Cannot listen on 127\\.0\\.0\\.1:${taken}: metrics listener: the port is in use`));
});

test('metrics off: a server with traffic loaded no prom-client, and server.metrics is undefined', () => {
  assert.equal(metricsOffServer, undefined);
  assert.equal(promClientLoadedWithoutMetrics, 0);
});

test('serve --workers 2 --metrics: the primary serves the workers\' counts summed', async (t) => {
  const port = await freePort();
  const mport = await freePort();
  const child = spawn(process.execPath, [BIN, 'serve', '--workers', '2', '--port', String(port), '--metrics', `127.0.0.1:${mport}`, '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--log-level', 'warn'], { cwd: tempDir(), stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const deadline = Date.now() + 30_000; // two workers forking on a loaded machine
  while (!out.includes('metrics on http://') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, new RegExp(`certbound: metrics on http://127\\.0\\.0\\.1:${mport}/metrics \\(summed over the workers\\)`), out);
  const N = 8;
  const workers = new Set<bigint>();
  for (let i = 0; i < N; i++) {
    const a = await tlsGet(port, '/connection', { cert: pki.client, key: pki.clientKey });
    assert.equal(a.status, 200);
    workers.add(BigInt((JSON.parse(a.body) as { connectionId: string }).connectionId) >> 48n);
  }
  assert.equal(workers.size, 2, 'both workers served');
  const m = (await scrape(mport)).body;
  assert.equal(sample(m, 'certbound_tls_handshakes_total{protocol="TLSv1.3",resumed="false",result="ok"}'), N);
  assert.equal(sample(m, 'certbound_client_certificate_verdicts_total{cert_flags="OK"}'), N);
  assert.equal(sample(m, 'certbound_http_request_duration_seconds_count{method="GET",status_class="2xx"}'), N);
  assert.ok((sample(m, 'certbound_certificate_expiry_seconds{kind="server",subject="localhost",sha1="' + (await sha1Of(pki.server)) + '"}') ?? 0) > 0, 'the primary\'s expiry gauges are in');
  // A worker killed and restarted by the primary starts from zero: the machine's totals stay.
  const pids = async () => (await run('ps', ['-o', 'pid=', '--ppid', String(child.pid)])).stdout.split('\n').map((x) => Number(x.trim())).filter((x) => x > 0);
  const before = await pids();
  assert.equal(before.length, 2);
  process.kill(before[0] as number, 'SIGKILL');
  const until = Date.now() + 30_000;
  let now = before;
  while (Date.now() < until && (now.length !== 2 || now.includes(before[0] as number))) {
    await new Promise((r) => setTimeout(r, 100));
    now = await pids();
  }
  assert.equal(now.length, 2, 'the primary restarted the worker');
  let served = 0;
  while (served < 1 && Date.now() < until + 4000) served += (await tlsGet(port, '/connection', { cert: pki.client, key: pki.clientKey }).catch(() => ({ status: 0 }))).status === 200 ? 1 : 0;
  const after = (await scrape(mport)).body;
  assert.equal(sample(after, 'certbound_tls_handshakes_total{protocol="TLSv1.3",resumed="false",result="ok"}'), N + 1, 'the killed worker\'s handshakes are still counted');
  assert.equal(sample(after, 'certbound_client_certificate_verdicts_total{cert_flags="OK"}'), N + 1);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
});

const DAY = 86_400_000;
const T = Date.UTC(2026, 0, 1);
const item = (kind: ExpiryItem['kind'], expires: number | null): ExpiryItem => ({ kind, subject: kind, id: 'x', expires });

test('expiryFindings: the rule as a table (certificates in days, CRLs in hours; past is an error)', () => {
  const t = { certificateDays: 30, crlHours: 48 };
  const rows: [ExpiryItem, 'ok' | 'warn' | 'error', number | null][] = [
    [item('server', T + 31 * DAY), 'ok', 31 * 86_400],
    [item('server', T + 30 * DAY), 'warn', 30 * 86_400],
    [item('server', T + 1000), 'warn', 1],
    [item('server', T), 'error', 0],
    [item('ca', T - DAY), 'error', -86_400],
    [item('server-chain', T + 29 * DAY), 'warn', 29 * 86_400],
    [item('crl', T + 49 * 3_600_000), 'ok', 49 * 3600],
    [item('crl', T + 48 * 3_600_000), 'warn', 48 * 3600],
    [item('crl', T + 3 * DAY), 'ok', 3 * 86_400],
    [item('crl', T - 1), 'error', -1],
    [item('crl', null), 'ok', null],
  ];
  for (const [it, level, secondsLeft] of rows) {
    const [f] = expiryFindings([it], T, t);
    assert.deepEqual({ level: f?.level, secondsLeft: f?.secondsLeft }, { level, secondsLeft }, JSON.stringify(it));
  }
  assert.equal(expiryFindings([item('server', T + 5 * DAY)], T, { certificateDays: 0, crlHours: 0 })[0]?.level, 'ok', 'threshold 0: only errors');
});

test('ExpiryMonitor: one line per item due, at start and each interval (injected clock; then a real timer)', async () => {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const logger = { warn: (obj: object, msg: string) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }), error: (obj: object, msg: string) => lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }) };
  let now = T;
  const items = [item('server', T + 40 * DAY), item('crl', T + 13 * DAY), item('ca', T + 400 * DAY)];
  const m = new ExpiryMonitor({ items: () => items, logger, now: () => now, intervalMs: 20 });
  assert.deepEqual(m.check().map((f) => f.level), ['ok', 'ok', 'ok']);
  assert.equal(lines.length, 0);
  now = T + 11 * DAY;
  m.check();
  assert.deepEqual(lines.map((l) => [l.level, l.obj.kind, l.msg]), [['warn', 'server', 'server certificate "server" expires in 29 days'], ['warn', 'crl', 'CRL "crl" reaches its nextUpdate in 2 days: load a fresh one before then']]);
  lines.length = 0;
  now = T + 13 * DAY + 1;
  m.check();
  assert.deepEqual(lines.map((l) => [l.level, l.obj.kind]), [['warn', 'server'], ['error', 'crl']]);
  assert.match(lines[1]?.msg ?? '', /past its nextUpdate: every client certificate it covers now fails verification \(OpenSSL CRL_HAS_EXPIRED, certFlags CRYPT_E_NO_REVOCATION_CHECK\)/);
  // The real timer: start() checks at once, then every 20 ms, until stop().
  lines.length = 0;
  m.start();
  assert.equal(lines.length, 2);
  const until = Date.now() + 2000;
  while (lines.length < 6 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  m.stop();
  assert.ok(lines.length >= 6, `two more rounds came from the timer (${lines.length} lines)`);
  const n = lines.length;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(lines.length, n, 'stop() ends the timer');
  // Material that cannot be read at check time: one error line, no findings, no exception.
  lines.length = 0;
  const broken = new ExpiryMonitor({ items: () => { throw new Error('bad CRL'); }, logger, now: () => now });
  assert.deepEqual(broken.check(), []);
  assert.deepEqual(broken.check(), []);
  assert.deepEqual(lines.map((l) => [l.level, l.msg]), [['error', 'expiry check failed: no expiry warnings for this material']]);
});

test('a CRL past its nextUpdate at start-up: an error line and a negative gauge, and clients it covers really fail', async () => {
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const stale = await issueCrl({ issuer: clientCa, thisUpdate: new Date(Date.now() - 3 * DAY), nextUpdate: new Date(Date.now() - DAY) });
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>); } });
  const s = await startServer(undefined, 'optional', { crl: stale, logger, metrics: { port: 0, defaultMetrics: false } });
  try {
    const expiry = lines.filter((l) => l.event === 'expiry');
    assert.deepEqual(expiry.map((l) => [l.level, l.kind, l.subject]), [[50, 'crl', 'certbound dev client CA']]);
    assert.match(String(expiry[0]?.msg), /CRL "certbound dev client CA" is past its nextUpdate/);
    const m = (await scrape(metricsPort(s))).body;
    const gauge = m.split('\n').find((l) => l.startsWith('certbound_crl_next_update_seconds{issuer="certbound dev client CA"'));
    assert.ok(gauge && Number(gauge.split(' ').pop()) < -86_000, gauge);
    // What the line warns about: Node's CRL check refuses the client CA's certificates.
    const a = await tlsGet(s.port, '/connection', { cert: pki.client, key: pki.clientKey });
    assert.equal(a.status, 403);
    assert.equal((JSON.parse(a.body) as { certFlagsName: string }).certFlagsName, 'CRYPT_E_NO_REVOCATION_CHECK');
  } finally {
    await s.server.close();
  }
});

test('public types of metrics and expiry (checked by tsc)', () => {
  expectTypeOf<CreateServerOptions['metrics']>().toEqualTypeOf<ServerMetricsOptions | undefined>();
  expectTypeOf<CertboundServer['metrics']>().toEqualTypeOf<ServerMetrics | undefined>();
  expectTypeOf<ReturnType<ServerMetrics['address']>>().toEqualTypeOf<AddressInfo | null>();
  expectTypeOf<ReturnType<typeof expiryFindings>>().toEqualTypeOf<ExpiryFinding[]>();
  assert.ok(true);
});
