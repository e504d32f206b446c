// CRL refresh (src/server/crl-refresh.ts): a --crl near its nextUpdate is fetched again from
// its CA's distribution point (a node:http server on 127.0.0.1 here), checked fail-closed and
// put in force on every listener; a bad answer changes nothing; a kept CRL survives a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { request } from 'node:https';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { issueCertificate, issueCrl, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { nextCrlRefresh } from '../src/server/crl-refresh.js';
import { tempDir } from './helpers/pki.js';
import { pkijs } from '../src/tls/pkijs-engine.js';
import { pemBlocks } from '../src/tls/pem.js';

const HOUR = 3_600_000;
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
interface Fx {
  ca: IssuedCertificate; impostor: IssuedCertificate; server: IssuedCertificate; good: IssuedCertificate; revoked: IssuedCertificate;
  /** In force at start: past half its validity (thisUpdate 2 h ago, nextUpdate in 1 h), so refreshed at once. */
  oldCrl: string;
  newCrl: string; olderCrl: string; impostorCrl: string; expiredCrl: string;
  /** A CA without a CRL distribution point, and its CRL (which has no issuing distribution point either). */
  noUrlCa: IssuedCertificate; noUrlCrl: string;
}
let fx: Fx;
let http: HttpServer;
/** What the distribution point answers now. */
let answer: { status: number; body: Buffer | string } = { status: 503, body: '' };

before(async () => {
  http = createHttpServer((_req, res) => {
    res.writeHead(answer.status, { 'content-type': 'application/pkix-crl' });
    res.end(answer.body);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const crlUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/ca.crl`;
  const ca = await issueCertificate({ subject: { commonName: 'crl-refresh CA' }, ca: true, keyUsage: ['keyCertSign', 'cRLSign'], crlUrl });
  const impostor = await issueCertificate({ subject: { commonName: 'crl-refresh CA' }, ca: true, keyUsage: ['keyCertSign', 'cRLSign'] });
  const noUrlCa = await issueCertificate({ subject: { commonName: 'no-url CA' }, ca: true, keyUsage: ['keyCertSign', 'cRLSign'] });
  const [server, good, revoked] = await Promise.all([
    issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost', '127.0.0.1', 'twin.test'] }),
    issueCertificate({ subject: { commonName: 'good client' }, issuer: ca, extKeyUsage: [OID.clientAuth] }),
    issueCertificate({ subject: { commonName: 'revoked client' }, issuer: ca, extKeyUsage: [OID.clientAuth] }),
  ]);
  const now = Date.now();
  fx = {
    ca, impostor, server, good, revoked,
    oldCrl: await issueCrl({ issuer: ca, thisUpdate: new Date(now - 2 * HOUR), nextUpdate: new Date(now + HOUR) }),
    newCrl: await issueCrl({ issuer: ca, revoked: [revoked], thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 7 * 24 * HOUR) }),
    olderCrl: await issueCrl({ issuer: ca, revoked: [revoked], thisUpdate: new Date(now - 3 * HOUR), nextUpdate: new Date(now + 2 * HOUR) }),
    expiredCrl: await issueCrl({ issuer: ca, revoked: [revoked], thisUpdate: new Date(now - 90 * 60_000), nextUpdate: new Date(now - 60_000) }),
    noUrlCa, noUrlCrl: await issueCrl({ issuer: noUrlCa }),
    impostorCrl: await issueCrl({ issuer: impostor, revoked: [revoked], thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 7 * 24 * HOUR) }),
  };
});
after(() => new Promise<void>((r) => http.close(() => r())));

interface Logged { lines: string[]; waitFor(re: RegExp, from?: number): Promise<string> }

function capture(): Logged & { logger: Logger } {
  const lines: string[] = [];
  const logger: Logger = pino({ level: 'info' }, { write: (s: string) => { lines.push(s); } });
  return {
    lines, logger,
    async waitFor(re, from = 0) {
      const until = Date.now() + 4000;
      for (;;) {
        const hit = lines.slice(from).find((l) => re.test(l));
        if (hit) return hit;
        if (Date.now() > until) throw new Error(`no log line ${re} in:\n${lines.join('')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

async function start(log: Logged & { logger: Logger }, dir?: string, metrics = false, twin = false): Promise<{ server: CertboundServer; port: number }> {
  const server = createServer({
    cert: fx.server.pem, key: fx.server.keyPem,
    // The no-url CA's CRL cannot be refreshed: reported once, left alone.
    ca: [fx.ca.pem, fx.noUrlCa.pem], crl: [fx.oldCrl, fx.noUrlCrl],
    clientAuth: 'optional', referenceRoutes: true, logger: log.logger,
    crlRefresh: { retryMinMs: 50, retryMaxMs: 100, timeoutMs: 1000, ...(dir ? { dir } : {}) },
    ...(metrics ? { metrics: { defaultMetrics: false } } : {}),
    ...(twin ? { onDemandHosts: ['twin.test'] } : {}),
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, port };
}

/** GET /connection on a new connection with `client`: the status and certFlagsName. */
/** A CRL's nextUpdate (ms), read with pkijs. */
class X509Crl {
  readonly nextUpdate: number | undefined;
  constructor(pem: string) {
    this.nextUpdate = pkijs.CertificateRevocationList.fromBER(pemBlocks(pem, 'X509 CRL')[0] as Buffer).nextUpdate?.value.getTime();
  }
}

/** The TLS protocol of the last connection(). */
let lastProtocol: string | null = null;

/** With servername twin.test (an onDemandHosts name) the connection goes to the TLS 1.2 twin listener. */
function connection(port: number, client: IssuedCertificate, servername = 'localhost'): Promise<{ status: number; flags: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/connection', agent: false, servername, ca: fx.ca.pem, cert: client.pem, key: client.keyPem }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => {
        // 403: the refusal's certFlagsName; 200: the /connection JSON's clientCertificate.
        const json = JSON.parse(body) as { certFlagsName?: string; protocol?: string; clientCertificate?: { certFlagsName?: string } | null };
        lastProtocol = json.protocol ?? (res.socket as { getProtocol?: () => string | null }).getProtocol?.() ?? null;
        resolve({ status: res.statusCode ?? 0, flags: json.certFlagsName ?? json.clientCertificate?.certFlagsName });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

test('a CRL near its nextUpdate is fetched again from its CA\'s distribution point, retried after a failure, and revokes on new connections', async () => {
  answer = { status: 503, body: '' };
  const log = capture();
  const { server, port } = await start(log, undefined, false, true);
  try {
    assert.match(await log.waitFor(/CRL refresh failed/), /"reason":"fetch-http-status"/);
    assert.equal(server.expiry?.findings().find((x) => x.kind === 'crl')?.expires, new X509Crl(fx.oldCrl).nextUpdate);
    assert.deepEqual(await connection(port, fx.revoked), { status: 200, flags: 'OK' }, 'the old CRL revokes nobody');
    assert.deepEqual(await connection(port, fx.revoked, 'twin.test'), { status: 200, flags: 'OK' });
    const at = log.lines.length;
    answer = { status: 200, body: fx.newCrl };
    const line = await log.waitFor(/"msg":"CRL refreshed"/, at);
    assert.match(line, /"outcome":"refreshed"/);
    assert.deepEqual(await connection(port, fx.revoked), { status: 403, flags: 'CERT_E_REVOKED' });
    assert.deepEqual(await connection(port, fx.good), { status: 200, flags: 'OK' });
    assert.deepEqual(await connection(port, fx.revoked, 'twin.test'), { status: 403, flags: 'CERT_E_REVOKED' }, 'the TLS 1.2 twin has the new CRL too');
    assert.deepEqual(await connection(port, fx.good, 'twin.test'), { status: 200, flags: 'OK' });
    assert.equal(lastProtocol, 'TLSv1.2', 'twin.test went to the twin (capped at TLS 1.2)');
    assert.match(await log.waitFor(/"msg":"certificates reloaded"/, at), /"listeners":2/);
    const crlFinding = server.expiry?.findings().find((x) => x.kind === 'crl');
    assert.equal(crlFinding?.expires, new X509Crl(fx.newCrl).nextUpdate, 'the expiry warnings and gauges follow the refreshed CRL');
  } finally {
    await server.close();
  }
});

test('a refresh answered with garbage, a CRL of another key or an older CRL is refused with its reason, and the CRL in force stays', async () => {
  const log = capture();
  answer = { status: 200, body: 'not a CRL at all' };
  const { server, port } = await start(log, undefined, true);
  try {
    for (const [body, reason] of [['not a CRL at all', 'crl-malformed'], [fx.impostorCrl, 'crl-signature'], [fx.olderCrl, 'crl-not-newer'], [fx.expiredCrl, 'crl-expired']] as const) {
      const at = log.lines.length;
      answer = { status: 200, body };
      const line = await log.waitFor(new RegExp(`CRL refresh refused \\(${reason}\\)`), at);
      assert.match(line, new RegExp(`"reason":"${reason}"`));
      assert.deepEqual(await connection(port, fx.revoked), { status: 200, flags: 'OK' }, `after ${reason}, the old CRL is in force`);
    }
    assert.ok(!log.lines.some((l) => /CRL refreshed/.test(l)), 'nothing was put in force');
    const noUrl = log.lines.filter((l) => /"outcome":"no-url"/.test(l));
    assert.equal(noUrl.length, 1, 'a CRL without a URL is reported once');
    assert.match(noUrl[0] as string, /"reason":"crl-no-url","issuer":"no-url CA"/);
    const text = await server.metrics?.registry.metrics() ?? '';
    for (const reason of ['crl-malformed', 'crl-signature', 'crl-not-newer', 'crl-expired']) assert.match(text, new RegExp(`certbound_crl_refresh_total\\{outcome="refused",reason="${reason}"\\} [1-9]`));
  } finally {
    await server.close();
  }
});

test('the refresh schedule (injected clock): before nextUpdate by the lead or half the validity, never in the past; bounded backoff after failures', () => {
  const c = { leadMs: 72 * HOUR, retryMinMs: 30_000, retryMaxMs: 900_000 };
  const t0 = Date.UTC(2026, 0, 1);
  const rows: Array<[string, { now: number; thisUpdate: number; nextUpdate: number | null; failures: number }, number]> = [
    ['a 7-day CRL: 72 h before nextUpdate', { now: t0, thisUpdate: t0, nextUpdate: t0 + 168 * HOUR, failures: 0 }, t0 + 96 * HOUR],
    ['a 24-hour CRL: at half its validity', { now: t0, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 0 }, t0 + 12 * HOUR],
    ['past half its validity: now', { now: t0 + 20 * HOUR, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 0 }, t0 + 20 * HOUR],
    ['already expired: now', { now: t0 + 30 * HOUR, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 0 }, t0 + 30 * HOUR],
    ['no nextUpdate: now', { now: t0, thisUpdate: t0, nextUpdate: null, failures: 0 }, t0],
    ['1 failure: retryMinMs', { now: t0, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 1 }, t0 + 30_000],
    ['3 failures: doubled twice', { now: t0, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 3 }, t0 + 120_000],
    ['10 failures: capped at retryMaxMs', { now: t0, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 10 }, t0 + 900_000],
    ['1000 failures: still capped (keeps trying)', { now: t0, thisUpdate: t0, nextUpdate: t0 + 24 * HOUR, failures: 1000 }, t0 + 900_000],
  ];
  for (const [name, s, want] of rows) assert.equal(nextCrlRefresh(s, c), want, name);
});

test('a restart with the distribution point down uses the kept CRL (0600 in a 0700 directory), checked again', async () => {
  const dir = join(tempDir('certbound-crl-keep-'), 'crl');
  answer = { status: 200, body: fx.newCrl };
  const first = capture();
  const a = await start(first, dir);
  await first.waitFor(/"msg":"CRL refreshed"/);
  await a.server.close();
  const files = readdirSync(dir);
  assert.equal(files.length, 1);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, files[0] as string)).mode & 0o777, 0o600);

  answer = { status: 503, body: '' };
  const second = capture();
  const b = await start(second, dir);
  try {
    // Put in force before listen() returned: the first connection already sees it.
    assert.deepEqual(await connection(b.port, fx.revoked), { status: 403, flags: 'CERT_E_REVOKED' });
    assert.match(await second.waitFor(/"msg":"kept CRL loaded"/), /"outcome":"loaded"/);
    assert.ok(existsSync(join(dir, files[0] as string)));
  } finally {
    await b.server.close();
  }
});

for (const workers of [[], ['--workers', '1']]) test(`serve${workers.map((w) => ` ${w}`).join('')} --crl-refresh: ${workers.length > 0 ? 'the primary fetches, the worker serves the new CRL' : 'the new CRL is served'}, the --crl file is left alone, the CRL is kept in <state-dir>/crl, and a SIGHUP does not go back to the older file`, async () => {
  const work = tempDir('certbound-crl-serve-');
  const f = { cert: join(work, 'server.pem'), key: join(work, 'server.key'), ca: join(work, 'ca.pem'), crl: join(work, 'crl.pem'), state: join(work, 'state') };
  writeFileSync(f.cert, fx.server.pem);
  writeFileSync(f.key, fx.server.keyPem, { mode: 0o600 });
  writeFileSync(f.ca, fx.ca.pem);
  writeFileSync(f.crl, fx.oldCrl);
  answer = { status: 200, body: fx.newCrl };
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'certbound.js'), 'serve', '--host', '127.0.0.1', '--port', '0', ...workers, '--crl-refresh', '--ocsp', 'off', '--client-auth', 'optional', '--log-level', 'info',
    '--cert', f.cert, '--key', f.key, '--ca', f.ca, '--crl', f.crl, '--state-dir', f.state], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const waitFor = async (re: RegExp) => {
    for (let i = 0; i < 400; i++) {
      const hit = re.exec(out);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no ${re} in the server output:\n${out}`);
  };
  try {
    const port = Number((await waitFor(/serving https:\/\/localhost:(\d+)\//))[1]);
    assert.match((await waitFor(/.*"msg":"CRL refreshed".*/))[0], /"component":"crl-refresh"/);
    assert.deepEqual(await connection(port, fx.revoked), { status: 403, flags: 'CERT_E_REVOKED' }, 'the worker serves the fetched CRL');
    assert.deepEqual(await connection(port, fx.good), { status: 200, flags: 'OK' });
    assert.equal(readFileSync(f.crl, 'utf8'), fx.oldCrl, 'the --crl file is never written');
    const kept = readdirSync(join(f.state, 'crl'));
    assert.equal(kept.length, 1);
    assert.equal(statSync(join(f.state, 'crl', kept[0] as string)).mode & 0o777, 0o600);
    // A reload of the files (the --crl file still the old CRL) keeps the newer fetched one
    // (the distribution point down, so that no new fetch can mend it).
    answer = { status: 503, body: '' };
    const at = out.length;
    child.kill('SIGHUP');
    for (let i = 0; i < 400 && !/certificates reloaded/.test(out.slice(at)); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(out.slice(at), /certificates reloaded/);
    assert.deepEqual(await connection(port, fx.revoked), { status: 403, flags: 'CERT_E_REVOKED' }, 'after SIGHUP the fetched CRL is still in force');
  } finally {
    if (child.pid) try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    child.stdout.destroy();
    child.stderr.destroy();
  }
});
