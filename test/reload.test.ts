// Certificate reload without a restart, on real processes: `certbound serve` (bin/certbound.js
// over dist/) gets SIGHUP while a bounded load loop runs, and openssl s_client checks what new
// connections present (fingerprint, staple, the TLS 1.2 twin's protocol). Bad files keep the
// certificate in use and log one CB_ERR_RELOAD line; CAs and CRLs changed by a reload apply to
// new connections and to renegotiations on connections opened before it; with --workers 2 the
// reload reaches both workers. Also the library API, createServer().reload().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants as cryptoConstants, createHash, X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { freePort, run } from './helpers/exec.js';
import { getOverTls } from './helpers/tls-get.js';
import { tempDir } from './helpers/pki.js';
import { createDevPki, type DevPkiPaths } from '../src/tls/dev-pki.js';
import { issueCertificate, issueCrl, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { startDevPkiResponder } from '../src/ocsp/dev-responder.js';
import type { DevOcspResponder } from '../src/ocsp/responder.js';
import { createServer } from '../src/server/server.js';
import { isCertboundError } from '../src/errors.js';
import { reloadTrust, type ReloadEvent } from '../src/server/reload.js';
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { certboundPlugin } from '../src/server/plugin.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'certbound.js');
const DAY = 86_400_000;

interface Fx {
  pki: DevPkiPaths;
  responder: DevOcspResponder;
  /** Two server certificates for localhost from the dev root, both with the responder's AIA URL. */
  a: IssuedCertificate;
  b: IssuedCertificate;
  /** Two certificates for other.test only (the config file's `certificates` list). */
  c: IssuedCertificate;
  d: IssuedCertificate;
  expired: IssuedCertificate;
  client: IssuedCertificate;
  crls: { root: string; clientCa: string; untrusted: string; clientCaRevokingClient: string };
}
let fx: Fx;

before(async () => {
  const dir = join(tempDir('certbound-reload-'), 'pki');
  const ocspPort = await freePort();
  const ocspUrl = `http://127.0.0.1:${ocspPort}/`;
  const pki = await createDevPki(dir, { ocspUrl });
  const responder = await startDevPkiResponder(dir, { port: ocspPort });
  const root = await loadIssuer(readFileSync(pki.rootCa, 'utf8'), readFileSync(pki.rootCaKey, 'utf8'));
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const untrustedCa = await loadIssuer(readFileSync(pki.untrustedCa, 'utf8'), readFileSync(pki.untrustedCaKey, 'utf8'));
  const server = (cn: string, extra: { notBefore?: Date; notAfter?: Date } = {}) => issueCertificate({ subject: { commonName: cn }, issuer: root, extKeyUsage: [OID.serverAuth], altNames: ['localhost', '127.0.0.1', 'twin.test'], ocspUrl, ...extra });
  const other = (cn: string) => issueCertificate({ subject: { commonName: cn }, issuer: root, extKeyUsage: [OID.serverAuth], altNames: ['other.test'], ocspUrl });
  const [a, b, expired, c, d] = await Promise.all([server('server A'), server('server B'), server('server expired', { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) }), other('other C'), other('other D')]);
  const client = await loadIssuer(readFileSync(pki.client, 'utf8'), readFileSync(pki.clientKey, 'utf8'));
  fx = {
    pki, responder, a, b, c, d, expired, client,
    crls: {
      root: await issueCrl({ issuer: root }),
      clientCa: await issueCrl({ issuer: clientCa }),
      untrusted: await issueCrl({ issuer: untrustedCa }),
      clientCaRevokingClient: await issueCrl({ issuer: clientCa, revoked: [client] }),
    },
  };
});
after(() => fx?.responder.close());

/** Replaces `path` with `content` as a deployment tool would: a new file renamed into place. */
function put(path: string, content: string): void {
  rmSync(path, { recursive: true, force: true });
  writeFileSync(`${path}.tmp`, content, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

const sha256 = (pem: string) => new X509Certificate(pem).fingerprint256;
const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toUpperCase().replace(/^0+/, '');

/** The SHA-256 fingerprint of a PEM file as `openssl x509 -fingerprint` prints it. */
async function fileFingerprint(path: string): Promise<string> {
  const r = await run('openssl', ['x509', '-in', path, '-noout', '-fingerprint', '-sha256']);
  return (/=([0-9A-F:]+)/.exec(r.stdout)?.[1]) ?? `no fingerprint: ${r.stderr}`;
}

interface Seen { fingerprint: string; protocol: string; stapledSerial: string | null; stapled: boolean }

/** What `openssl s_client` sees on a new connection: the server certificate's fingerprint, the protocol, the staple's serial. */
async function sClient(port: number, servername: string, extra: string[] = []): Promise<Seen> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-status', '-CAfile', fx.pki.rootCa, ...extra], { input: '', timeoutMs: 8000 });
  // The server certificate follows "Server certificate" (a staple printed before it may hold the responder's).
  const pem = /Server certificate\n(-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----)/.exec(r.stdout)?.[1];
  if (!pem) return { fingerprint: `none (${r.stderr.split('\n').find((l) => /error|alert/i.test(l)) ?? r.code})`, protocol: '', stapledSerial: null, stapled: false };
  const fp = await run('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pem });
  return {
    fingerprint: /=([0-9A-F:]+)/.exec(fp.stdout)?.[1] ?? '',
    protocol: /(?:New|Reused), (TLSv[\d.]+),/.exec(r.stdout)?.[1] ?? '',
    stapled: /OCSP Response Status: successful/.test(r.stdout),
    stapledSerial: /Serial Number: ([0-9A-F]+)/.exec(r.stdout)?.[1] ?? null,
  };
}

interface Serve { child: ChildProcess; port: number; output: () => string; waitFor(re: RegExp, from: number): Promise<string>; mark(): number }

async function startServe(args: string[]): Promise<Serve> {
  const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const waitFor = async (re: RegExp, from: number) => {
    // Bounded (15 s: a shared machine starts two workers slowly), polled every 25 ms.
    for (let i = 0; i < 600; i++) {
      const hit = re.exec(out.slice(from));
      if (hit) return hit[0];
      await sleep(25);
    }
    throw new Error(`no ${re} in the server output:\n${out.slice(from)}`);
  };
  let banner: string;
  try {
    banner = await waitFor(/serving https:\/\/localhost:(\d+)\//, 0);
  } catch (err) {
    stop({ child });
    throw err;
  }
  return { child, port: Number(/:(\d+)\//.exec(banner)?.[1]), output: () => out, waitFor, mark: () => out.length };
}

function stop(s: { child: ChildProcess } | undefined): void {
  if (s?.child.pid) try { process.kill(-s.child.pid, 'SIGKILL'); } catch { /* gone */ }
  s?.child.stdout?.destroy();
  s?.child.stderr?.destroy();
}

interface Reply { status: number; body: string }

function get(port: number, path: string, agent: Agent | false, creds: { cert?: string; key?: string } = {}): Promise<Reply> {
  return new Promise((resolveReply, reject) => {
    const req = request({ host: '127.0.0.1', port, path, servername: 'localhost', ca: readFileSync(fx.pki.rootCa), agent, maxVersion: 'TLSv1.2', ...creds, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolveReply({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** One keep-alive connection (TLS 1.2, so that /whoami can renegotiate), optionally with a client certificate. */
function keepAlive(creds: { cert?: string; key?: string } = {}): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(fx.pki.rootCa), maxVersion: 'TLSv1.2', servername: 'localhost', ...creds });
}

const idOf = (r: Reply) => (JSON.parse(r.body) as { connectionId: string }).connectionId;

/**
 * Requests until `until` resolves (or 400 requests, or 8 s): half on one keep-alive agent, half
 * on new connections. Answers how many ran and what failed.
 */
async function loadLoop(port: number, until: Promise<void>): Promise<{ done: number; failures: string[] }> {
  let stopped = false;
  void until.finally(() => { stopped = true; });
  const deadline = Date.now() + 8000;
  const agent = keepAlive();
  const failures: string[] = [];
  let done = 0;
  const lane = async (a: Agent | false) => {
    while (!stopped && done < 400 && Date.now() < deadline) {
      done += 1;
      try {
        const r = await get(port, '/healthz', a);
        if (r.status !== 200) failures.push(`status ${r.status}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  await Promise.all([lane(agent), lane(agent), lane(false), lane(false)]);
  agent.destroy();
  return { done, failures };
}

/** Fingerprints new connections see, and which worker (connection-id epoch) answered, until both workers answered (bounded). */
async function acrossWorkers(port: number, names = ['localhost', 'twin.test']): Promise<{ worker: bigint; fingerprint: string; servername: string }[]> {
  const seen: { worker: bigint; fingerprint: string; servername: string }[] = [];
  for (let i = 0; i < 12 && (new Set(seen.map((v) => v.worker)).size < 2 || seen.length < 4); i++) {
    const servername = names[i % names.length] as string;
    seen.push(await new Promise((resolveSeen, reject) => {
      const sock = connect({ host: '127.0.0.1', port, servername, ca: readFileSync(fx.pki.rootCa) }, () => sock.write('GET /connection HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
      let raw = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => { raw += d; });
      sock.on('error', reject);
      sock.on('end', () => {
        const id = BigInt((JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { connectionId: string }).connectionId);
        resolveSeen({ worker: id >> 48n, fingerprint: sock.getPeerX509Certificate()?.fingerprint256 ?? '', servername });
      });
    }));
  }
  return seen;
}

// The cases run side by side (separate processes and servers): the file's wall time is the longest one's.
describe('reload', { concurrency: true }, () => {
  test('SIGHUP reloads cert, key, CAs and CRLs into the main listener and the TLS 1.2 twin, under load, without dropping a request', async (t) => {
    const live = join(tempDir('certbound-reload-live-'));
    mkdirSync(live, { recursive: true });
    const f = { cert: join(live, 'server.pem'), key: join(live, 'server.key'), ca: join(live, 'ca.pem'), crl: join(live, 'crl.pem') };
    const bundle = readFileSync(fx.pki.caBundle, 'utf8');
    const untrustedCaPem = readFileSync(fx.pki.untrustedCa, 'utf8');
    const goodCrls = fx.crls.root + fx.crls.clientCa + fx.crls.untrusted;
    put(f.cert, fx.a.pem); put(f.key, fx.a.keyPem); put(f.ca, bundle); put(f.crl, goodCrls);
    const s = await startServe(['--workers', '1', '--client-auth', 'none', '--on-demand-host', 'twin.test', '--log-level', 'info', '--cert', f.cert, '--key', f.key, '--ca', f.ca, '--crl', f.crl]);
    t.after(() => stop(s));
    const fpB = sha256(fx.b.pem);
    assert.equal((await sClient(s.port, 'localhost')).fingerprint, await fileFingerprint(f.cert));

    // A keep-alive connection opened before the reloads carries on after them.
    const before = keepAlive();
    t.after(() => before.destroy());
    const firstId = idOf(await get(s.port, '/connection', before));

    // Reloads A → B → A → B while the load loop runs; each one checked with openssl.
    let endLoad!: () => void;
    const loading = loadLoop(s.port, new Promise<void>((r) => { endLoad = r; }));
    for (const next of [fx.b, fx.a, fx.b]) {
      const at = s.mark();
      put(f.cert, next.pem); put(f.key, next.keyPem);
      s.child.kill('SIGHUP');
      const line = await s.waitFor(/"msg":"certificates reloaded"/, at);
      assert.ok(line);
      assert.equal((await sClient(s.port, 'localhost')).fingerprint, await fileFingerprint(f.cert), 'a new connection presents the reloaded certificate');
    }
    endLoad();
    const load = await loading;
    assert.deepEqual(load.failures, [], 'no request failed during the reloads');
    assert.ok(load.done >= 20, `the load loop ran (${load.done} requests)`);
    t.diagnostic(`load loop: ${load.done} requests (half keep-alive, half new connections) across 3 reloads, ${load.failures.length} failed`);

    const main = await sClient(s.port, 'localhost');
    assert.equal(main.fingerprint, fpB);
    assert.equal(main.protocol, 'TLSv1.3');
    assert.equal(main.stapled, true, 'the new certificate is stapled');
    assert.equal(main.stapledSerial?.replace(/^0+/, ''), serialOf(fx.b.pem), 'the staple names the new certificate\'s serial, never the old one\'s');
    const twin = await sClient(s.port, 'twin.test');
    assert.equal(twin.fingerprint, fpB, 'the twin presents the new certificate');
    assert.equal(twin.protocol, 'TLSv1.2', 'the twin keeps maxVersion TLS 1.2 after the reloads');
    assert.equal(twin.stapledSerial?.replace(/^0+/, ''), serialOf(fx.b.pem));
    assert.notEqual((await sClient(s.port, 'twin.test', ['-tls1_3'])).fingerprint, fpB, 'the twin refuses TLS 1.3');
    const again = await get(s.port, '/connection', before);
    assert.equal(again.status, 200);
    assert.equal(idOf(again), firstId, 'the keep-alive connection from before the reloads still serves');
    // tls-server-end-point (RFC 5929: SHA-256 of the DER for an ECDSA-SHA-256 certificate) follows the context each connection was served with.
    const endPoint = (r: Reply) => (JSON.parse(r.body) as { channelBindings: Record<string, string | null> }).channelBindings['tls-server-end-point'];
    const derHash = (c: IssuedCertificate) => createHash('sha256').update(c.der).digest('hex');
    assert.equal(endPoint(again), derHash(fx.a), 'the old connection keeps the binding of the certificate it was served');
    assert.equal(endPoint(await get(s.port, '/connection', false)), derHash(fx.b), 'a new connection has the binding of the reloaded certificate');

    // Bad files: the certificate in use stays (exact fingerprint), one reload-failed line each.
    const bad: [string, () => void, RegExp][] = [
      ['garbage', () => put(f.cert, 'garbage\n'), /"code":"CB_ERR_RELOAD","cause":"CB_ERR_PEM_INVALID"/],
      ['a key that is not the certificate\'s', () => { put(f.cert, fx.a.pem); put(f.key, fx.b.keyPem); }, /"code":"CB_ERR_RELOAD","cause":"CB_ERR_KEY_MISMATCH"/],
      ['an expired certificate', () => { put(f.cert, fx.expired.pem); put(f.key, fx.expired.keyPem); }, /"code":"CB_ERR_RELOAD","cause":null,"msg":"reload failed: .*expired on/],
      ['an unreadable key (a directory)', () => { put(f.cert, fx.a.pem); rmSync(f.key); mkdirSync(f.key); }, /"code":"CB_ERR_RELOAD","cause":"CB_ERR_PEM_MISSING".*Cannot read key file \S*server\.key/],
    ];
    for (const [what, make, expected] of bad) {
      const at = s.mark();
      make();
      s.child.kill('SIGHUP');
      await s.waitFor(expected, at);
      assert.equal((s.output().slice(at).match(/reload failed/g) ?? []).length, 1, `${what}: one line`);
      assert.equal((await sClient(s.port, 'localhost')).fingerprint, fpB, `${what}: the old certificate stays`);
    }
    assert.equal((await get(s.port, '/healthz', false)).status, 200, 'still serving');
    put(f.cert, fx.b.pem); put(f.key, fx.b.keyPem);

    const untrusted = { cert: readFileSync(fx.pki.clientUntrusted, 'utf8'), key: readFileSync(fx.pki.clientUntrustedKey, 'utf8') };
    const client = { cert: readFileSync(fx.pki.client, 'utf8'), key: readFileSync(fx.pki.clientKey, 'utf8') };
    const whoami = (a: Agent | false, creds = {}) => get(s.port, '/whoami', a, creds);
    const flagsName = (r: Reply) => (JSON.parse(r.body) as { certFlagsName?: string }).certFlagsName;
    assert.equal((await whoami(false, untrusted)).status, 403, 'a client of a CA not in --ca is refused');

    // A CA added by a reload lets its clients in on new connections.
    let at = s.mark();
    put(f.ca, bundle + untrustedCaPem);
    s.child.kill('SIGHUP');
    await s.waitFor(/"msg":"certificates reloaded"/, at);
    assert.equal((await whoami(false, untrusted)).status, 200, 'the added CA lets its client in');
    // Connections opened now, before the next reload; they renegotiate after it.
    const oldUntrusted = keepAlive(untrusted);
    const oldClient = keepAlive(client);
    t.after(() => { oldUntrusted.destroy(); oldClient.destroy(); });
    assert.equal((await get(s.port, '/connection', oldUntrusted)).status, 200);
    assert.equal((await get(s.port, '/connection', oldClient)).status, 200);

    // The CA removed again and a CRL that revokes the dev client: new connections and
    // renegotiations on the connections opened before both see it.
    at = s.mark();
    put(f.ca, bundle);
    put(f.crl, fx.crls.root + fx.crls.clientCaRevokingClient + fx.crls.untrusted);
    s.child.kill('SIGHUP');
    await s.waitFor(/"msg":"certificates reloaded"/, at);
    const removed = await whoami(false, untrusted);
    assert.equal(removed.status, 403, 'the removed CA refuses on a new connection');
    assert.equal(flagsName(removed), 'CERT_E_UNTRUSTEDCA');
    const revoked = await whoami(false, client);
    assert.equal(revoked.status, 403);
    assert.equal(flagsName(revoked), 'CERT_E_REVOKED', 'the CRL replaced by the reload revokes on a new connection');
    const oldRemoved = await whoami(oldUntrusted);
    assert.equal(oldRemoved.status, 403, 'a renegotiation on a connection from before the reload is judged against the new CAs');
    assert.equal(flagsName(oldRemoved), 'CERT_E_UNTRUSTEDCA', 'the same verdict as on a new connection');
    const oldRevoked = await whoami(oldClient);
    assert.equal(oldRevoked.status, 403);
    assert.equal(flagsName(oldRevoked), 'CERT_E_REVOKED', 'a renegotiation on a connection from before the reload is judged against the new CRLs');
  });

  test('serve --workers 2 --watch-certs, two names (a config `certificates` list): SIGHUP to the primary, and a change of the files, reload both workers', async (t) => {
    const live = join(tempDir('certbound-reload-cluster-'));
    const f = { cert: join(live, 'server.pem'), key: join(live, 'server.key'), other: join(live, 'other.pem'), otherKey: join(live, 'other.key'), config: join(live, 'certbound.json') };
    put(f.cert, fx.a.pem); put(f.key, fx.a.keyPem); put(f.other, fx.c.pem); put(f.otherKey, fx.c.keyPem);
    writeFileSync(f.config, JSON.stringify({ certificates: [{ cert: f.other, key: f.otherKey }] }));
    const s = await startServe(['--workers', '2', '--watch-certs', '--log-level', 'info', '--config', f.config, '--cert', f.cert, '--key', f.key, '--ca', fx.pki.caBundle, '--on-demand-host', 'twin.test']);
    t.after(() => stop(s));

    // SIGHUP at once (before the watch's quiet time ends): the reload it starts reaches both workers.
    let at = s.mark();
    put(f.cert, fx.b.pem); put(f.key, fx.b.keyPem);
    s.child.kill('SIGHUP');
    await s.waitFor(/"trigger":"SIGHUP"[^\n]*\n(.*\n)*?.*"msg":"certificates reloaded in 2 workers"/, at);
    let seen = await acrossWorkers(s.port);
    assert.deepEqual([...new Set(seen.map((v) => v.worker))].sort(), [1n, 2n], 'connections reached both workers');
    assert.deepEqual([...new Set(seen.map((v) => v.fingerprint))], [sha256(fx.b.pem)], 'every worker, main and twin, presents the reloaded certificate');
    assert.equal((await sClient(s.port, 'twin.test')).protocol, 'TLSv1.2', 'the twins keep TLS 1.2');
    assert.equal((await sClient(s.port, 'other.test')).fingerprint, sha256(fx.c.pem), 'the other name keeps its unchanged certificate');

    // A change of the files alone (--watch-certs): the config list's certificate for other.test.
    await s.waitFor(/"trigger":"file change"/, at); // the watch saw the SIGHUP's files too; let that reload end
    await sleep(300);
    at = s.mark();
    put(f.other, fx.d.pem); put(f.otherKey, fx.d.keyPem);
    await s.waitFor(/"trigger":"file change"[^\n]*\n(.*\n)*?.*"msg":"certificates reloaded in 2 workers"/, at);
    seen = await acrossWorkers(s.port, ['other.test', 'localhost']);
    assert.deepEqual([...new Set(seen.map((v) => v.worker))].sort(), [1n, 2n]);
    assert.deepEqual([...new Set(seen.filter((v) => v.servername === 'other.test').map((v) => v.fingerprint))], [sha256(fx.d.pem)], 'the watched change of the list entry reached every worker');
    assert.deepEqual([...new Set(seen.filter((v) => v.servername === 'localhost').map((v) => v.fingerprint))], [sha256(fx.b.pem)], 'the unchanged name keeps its certificate');
    const otherSeen = await sClient(s.port, 'other.test');
    assert.equal(otherSeen.fingerprint, await fileFingerprint(f.other), 'openssl -servername other.test: the new certificate');
    assert.equal(otherSeen.stapledSerial?.replace(/^0+/, ''), serialOf(fx.d.pem), 'the workers staple the new certificate\'s response, never the old one\'s');

    // One bad certificate in the list: neither name changes.
    at = s.mark();
    put(f.other, 'garbage\n');
    await s.waitFor(/"code":"CB_ERR_RELOAD","cause":"CB_ERR_PEM_INVALID"/, at);
    assert.equal((await sClient(s.port, 'localhost')).fingerprint, sha256(fx.b.pem), 'a bad file keeps every certificate in use');
    assert.equal((await sClient(s.port, 'other.test')).fingerprint, sha256(fx.d.pem));
  });

  test('serve --workers 2, two certificates by SNI, --client-auth require: sessions resume across workers, and after a SIGHUP that revokes the client by CRL a resumed session is refused (403 CERT_E_REVOKED), TLS 1.3 and 1.2', async (t) => {
    const live = join(tempDir('certbound-reload-resume-'));
    const f = { crl: join(live, 'crl.pem'), config: join(live, 'certbound.json'), other: join(live, 'other.pem'), otherKey: join(live, 'other.key') };
    put(f.crl, fx.crls.root + fx.crls.clientCa); put(f.other, fx.c.pem); put(f.otherKey, fx.c.keyPem);
    writeFileSync(f.config, JSON.stringify({ certificates: [{ cert: f.other, key: f.otherKey }] }));
    const s = await startServe(['--workers', '2', '--log-level', 'info', '--ocsp', 'off', '--config', f.config, '--cert', fx.pki.server, '--key', fx.pki.serverKey, '--ca', fx.pki.caBundle, '--crl', f.crl, '--client-auth', 'require']);
    t.after(() => stop(s));
    const creds = { cert: readFileSync(fx.pki.client, 'utf8'), key: readFileSync(fx.pki.clientKey, 'utf8'), servername: 'other.test' };
    const flagsOf = (body: string) => (JSON.parse(body) as { certFlagsName?: string; clientCertificate?: { certFlagsName: string } });
    const sessions = new Map<'TLSv1.3' | 'TLSv1.2', Buffer>();
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      const first = await getOverTls(s.port, '/connection', { version, ...creds });
      assert.deepEqual([first.status, first.reused, flagsOf(first.body).clientCertificate?.certFlagsName], [200, false, 'OK']);
      sessions.set(version, first.session as Buffer);
      // Both workers resume it (shared ticket keys, one session id context on every context).
      for (let i = 0; i < 2; i++) {
        const again = await getOverTls(s.port, '/connection', { version, session: first.session as Buffer, ...creds });
        assert.deepEqual([again.status, again.reused], [200, true], `${version} before the reload`);
      }
    }
    const at = s.mark();
    put(f.crl, fx.crls.root + fx.crls.clientCaRevokingClient);
    s.child.kill('SIGHUP');
    await s.waitFor(/"msg":"certificates reloaded in 2 workers"/, at);
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      for (let i = 0; i < 2; i++) {
        const resumed = await getOverTls(s.port, '/connection', { version, session: sessions.get(version) as Buffer, ...creds });
        assert.deepEqual([resumed.reused, resumed.status, flagsOf(resumed.body).certFlagsName, resumed.ended], [true, 403, 'CERT_E_REVOKED', true], `${version} after the reload`);
      }
    }
  });

  test('library: reload() answers what it put in place, refuses bad material with CB_ERR_RELOAD, and tells onReload listeners', async (t) => {
    const server = createServer({ cert: fx.a.pem, key: fx.a.keyPem, ca: readFileSync(fx.pki.caBundle), logger: false, underPressure: false, onDemandHosts: ['twin.test'] });
    t.after(() => server.close());
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
    const events: ReloadEvent[] = [];
    server.onReload((e) => events.push(e));
    // TLS 1.2 sessions from before the reload, on the main listener and on the twin.
    const session = (servername: string, saved?: Buffer) => new Promise<{ session: Buffer | undefined; reused: boolean }>((resolveSession, reject) => {
      let ticket: Buffer | undefined;
      const sock = connect({ host: '127.0.0.1', port, servername, maxVersion: 'TLSv1.2', ca: readFileSync(fx.pki.rootCa), ...(saved ? { session: saved } : {}) }, () => {
        sock.write('GET /nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      });
      sock.on('session', (s: Buffer) => { ticket = s; });
      sock.on('error', reject);
      sock.resume();
      sock.on('end', () => resolveSession({ session: ticket, reused: sock.isSessionReused() }));
    });
    const sessions = { main: (await session('localhost')).session, twin: (await session('twin.test')).session };
    assert.ok(sessions.main && sessions.twin, 'both listeners issued session tickets');
    // `ca` left out: the CAs in force stay (optional mode would refuse a reload without any).
    const result = await server.reload({ cert: fx.b.pem, key: fx.b.keyPem });
    assert.equal(result.sha256, sha256(fx.b.pem).replace(/:/g, '').toLowerCase());
    assert.deepEqual(result.certificates.map((c) => [c.sha256, c.names]), [[sha256(fx.b.pem).replace(/:/g, '').toLowerCase(), ['localhost', 'twin.test']]]);
    assert.equal(result.listeners, 2, 'main and twin');
    assert.equal(result.caCertificates, 2);
    assert.equal((await sClient(port, 'twin.test')).fingerprint, sha256(fx.b.pem));
    assert.equal((await session('localhost', sessions.main)).reused, true, 'the main listener kept its ticket keys');
    assert.equal((await session('twin.test', sessions.twin)).reused, true, 'the twin kept its ticket keys');
    await assert.rejects(server.reload({ cert: fx.a.pem, key: fx.b.keyPem }), (err: unknown) => isCertboundError(err, 'CB_ERR_RELOAD') && /CB_ERR_KEY_MISMATCH/.test(err.message) && isCertboundError(err.cause, 'CB_ERR_KEY_MISMATCH'));
    await assert.rejects(server.reload({ cert: fx.expired.pem, key: fx.expired.keyPem }), /expired on/);
    // Started with one certificate (no ClientHello reader): several are refused, none swapped.
    await assert.rejects(server.reload({ certificates: [{ cert: fx.a.pem, key: fx.a.keyPem }, { cert: fx.c.pem, key: fx.c.keyPem }] }), (err: unknown) => isCertboundError(err, 'CB_ERR_RELOAD') && isCertboundError(err.cause, 'CB_ERR_INVALID_OPTION') && /restart it to serve several/.test(err.message));
    assert.deepEqual(events.map((e) => e.ok), [true, false, false, false]);
    assert.equal((await sClient(port, 'localhost')).fingerprint, sha256(fx.b.pem), 'the refused reloads changed nothing');
  });

  test('plugin on an app\'s own server: setSecureContext + reloadTrust judge renegotiations on older connections by the new CAs', async (t) => {
    const bundle = readFileSync(fx.pki.caBundle, 'utf8');
    const untrustedCaPem = readFileSync(fx.pki.untrustedCa, 'utf8');
    // As docs/on-demand.md asks of an app's own server: no session resumption on renegotiation.
    const base = { cert: fx.a.pem, key: fx.a.keyPem, minVersion: 'TLSv1.2' as const, secureOptions: cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION };
    const app = Fastify({ https: { ...base, ca: [bundle, untrustedCaPem] } });
    await app.register(certboundPlugin, { clientAuth: 'none' });
    app.get('/connection', async (request) => ({ connectionId: String(request.connectionId) }));
    app.get('/whoami', { config: { clientCertificate: 'on-demand' } }, async (request) => ({ subject: request.clientCertificate()?.subject }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    const untrusted = { cert: readFileSync(fx.pki.clientUntrusted, 'utf8'), key: readFileSync(fx.pki.clientUntrustedKey, 'utf8') };
    const old = keepAlive(untrusted);
    t.after(() => old.destroy());
    assert.equal((await get(port, '/connection', old)).status, 200);
    // The app drops the untrusted CA from its server and tells certbound.
    (app.server as unknown as TlsServer).setSecureContext({ ...base, ca: [bundle] });
    await reloadTrust(app.certbound.registry, app.server as unknown as TlsServer, { ca: [bundle] });
    assert.equal((await get(port, '/whoami', false, untrusted)).status, 403, 'a new connection is refused');
    const r = await get(port, '/whoami', old);
    assert.equal(r.status, 403, 'the renegotiation on the older connection is judged against the new CAs');
    assert.equal((JSON.parse(r.body) as { certFlagsName?: string }).certFlagsName, 'CERT_E_UNTRUSTEDCA');
    await assert.rejects(reloadTrust(app.certbound.registry, app.server as unknown as TlsServer, { ca: 'garbage' }), (err: unknown) => isCertboundError(err, 'CB_ERR_RELOAD'));
  });
});
