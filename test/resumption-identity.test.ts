// A resumed handshake gives the client identity and verdict exactly as the full handshake did
// (TLS 1.3 tickets, TLS 1.2 tickets, the TLS 1.2 twin of onDemandHosts, openssl s_client
// -sess_out/-sess_in), even when the client's intermediate is not in the server's CA bundle (a
// ticket keeps the leaf, not the chain: ssl/ssl_asn1.c); the revocation check runs on resumed
// connections with the checker's state now; a reload retires the cached verdicts; and a session
// never outlives its chain's notAfter, on resumption and on a keep-alive connection (an
// injected clock, and once for real with a certificate that expires two seconds after it is made).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants as cryptoConstants, createHash, X509Certificate } from 'node:crypto';
import { connect, type SecureVersion, type TLSSocket } from 'node:tls';
import Fastify, { type FastifyInstance } from 'fastify';
import { createDevPki, type DevPkiPaths } from '../src/tls/dev-pki.js';
import { issueCertificate, issueCrl, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { anchorsFromPem } from '../src/tls/peer-chain.js';
import { sessionChainStats } from '../src/tls/session-chains.js';
import { RevocationChecker } from '../src/ocsp/revocation.js';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { ConnectionRegistry } from '../src/server/registry.js';
import certboundPlugin from '../src/server/plugin.js';
import { run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

interface CertJson { subject: string; sha1: string; sha256: string; certFlags: number; certFlagsName: string; identity: string | null; deniedByMapper: boolean; chainLength: number; authorized: boolean; reason: string; revocation: { status: number; source: string } | null }
interface ConnectionJson { resumed: boolean; protocol: string; clientCertificate: CertJson | null }

/** A keep-alive TLS client: GETs on one connection, the session it was handed. */
class Client {
  readonly socket: TLSSocket;
  session: Buffer | undefined;
  #buf = '';
  #waiting: ((s: string) => void) | undefined;
  constructor(port: number, o: { version: SecureVersion; cert: string; key: string; session?: Buffer | undefined; servername?: string }) {
    this.socket = connect({
      host: '127.0.0.1', port, servername: o.servername ?? 'localhost', rejectUnauthorized: false, cert: o.cert, key: o.key,
      minVersion: o.version, maxVersion: o.version, ...(o.session ? { session: o.session } : {}),
    });
    this.socket.setEncoding('utf8');
    this.socket.on('session', (s: Buffer) => { this.session = s; });
    this.socket.on('data', (d: string) => { this.#buf += d; this.#poll(); });
    this.socket.on('error', () => {});
  }
  #poll(): void {
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0 || !this.#waiting) return;
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(this.#buf.slice(0, end))?.[1] ?? 0);
    if (this.#buf.length < end + 4 + length) return;
    const answer = this.#buf.slice(0, end + 4 + length);
    this.#buf = this.#buf.slice(end + 4 + length);
    const w = this.#waiting;
    this.#waiting = undefined;
    w(answer);
  }
  /** GET `path`: status and parsed JSON body. */
  async get<T>(path: string): Promise<{ status: number; body: T }> {
    if (!this.socket.readyState || this.socket.connecting) await new Promise((r) => this.socket.once('secureConnect', r));
    const raw = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${path}`)), 5000);
      this.#waiting = (s) => { clearTimeout(timer); resolve(s); };
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      this.#poll();
    });
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1]), body: JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as T };
  }
  /** Waits for the session ticket (TLS 1.3 sends it after the handshake). */
  async ticket(): Promise<Buffer> {
    for (let i = 0; i < 100 && !this.session; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(this.session, 'the server handed out a session');
    return this.session;
  }
  close(): void {
    this.socket.destroy();
  }
}

/** One connection, one GET /connection (and /whoami when asked), then closed. */
async function visit(port: number, o: { version: SecureVersion; cert: string; key: string; session?: Buffer | undefined; servername?: string }, path = '/connection') {
  const c = new Client(port, o);
  try {
    const r = await c.get<ConnectionJson>(path);
    const session = o.session ?? await c.ticket();
    return { ...r, reused: c.socket.isSessionReused(), session };
  } finally {
    c.close();
  }
}

interface Fx { pki: DevPkiPaths; dir: string; root: string; clientChain: string; clientKey: string; clientCaSha1: string; crls: { clientCa: string; revoking: string; root: string }; clientCa: IssuedCertificate }
let fx: Fx;

before(async () => {
  const dir = tempDir('certbound-resume-id-');
  const pki = await createDevPki(join(dir, 'pki'));
  const rootIssuer = await loadIssuer(readFileSync(pki.rootCa, 'utf8'), readFileSync(pki.rootCaKey, 'utf8'));
  const clientCa = await loadIssuer(readFileSync(pki.clientCa, 'utf8'), readFileSync(pki.clientCaKey, 'utf8'));
  const client = await loadIssuer(readFileSync(pki.client, 'utf8'), readFileSync(pki.clientKey, 'utf8'));
  fx = {
    pki, dir, clientCa,
    root: readFileSync(pki.rootCa, 'utf8'),
    // The leaf and its intermediate: the server's CA bundle holds the root only.
    clientChain: client.pem + clientCa.pem,
    clientKey: readFileSync(pki.clientKey, 'utf8'),
    clientCaSha1: createHash('sha1').update(clientCa.der).digest('hex'),
    crls: { clientCa: await issueCrl({ issuer: clientCa }), revoking: await issueCrl({ issuer: clientCa, revoked: [client] }), root: await issueCrl({ issuer: rootIssuer }) },
  };
});

describe('one server, CA bundle without the client\'s intermediate', () => {
  let server: CertboundServer;
  let port: number;
  let checker: RevocationChecker;
  let shortLived: Promise<{ c: Client; first: { status: number; body: ConnectionJson }; session: Buffer; notAfter: number; short: IssuedCertificate }>;
  const opts = (version: SecureVersion, session?: Buffer, servername?: string) => ({ version, cert: fx.clientChain, key: fx.clientKey, ...(session ? { session } : {}), ...(servername ? { servername } : {}) });

  before(async () => {
    checker = new RevocationChecker({ crls: [fx.crls.clientCa] });
    server = createServer({
      cert: readFileSync(fx.pki.server, 'utf8'), key: readFileSync(fx.pki.serverKey, 'utf8'), ca: fx.root,
      clientAuth: 'accept-untrusted', logger: false, referenceRoutes: true, onDemandHosts: ['twin.localhost'],
      // The identity depends on the chain: the mapping names the client CA, above the leaf.
      mapper: { manyToOne: [{ name: 'dev users', rules: [], issuerThumbprint: fx.clientCaSha1, identity: 'dev-users' }] },
      revocation: checker,
    });
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
    // The short-lived certificate's first request happens now; its test runs last, when the
    // tests in between have used up most of its two seconds.
    shortLived = (async () => {
      const issuer = await loadIssuer(fx.clientCa.pem, fx.clientCa.keyPem);
      const short = await issueCertificate({ subject: { commonName: 'short-lived' }, issuer, extKeyUsage: [OID.clientAuth], notAfter: new Date(Date.now() + 2000) });
      const notAfter = Date.parse(new X509Certificate(short.der).validTo);
      const c = new Client(port, { version: 'TLSv1.3', cert: short.pem + fx.clientCa.pem, key: short.keyPem });
      const first = await c.get<ConnectionJson>('/connection');
      return { c, first, session: await c.ticket(), notAfter, short };
    })();
    await shortLived;
  });
  after(() => server.close());

  for (const [version, servername] of [['TLSv1.3', undefined], ['TLSv1.2', undefined], ['TLSv1.2', 'twin.localhost']] as const) {
    test(`${version}${servername ? ' on the TLS 1.2 twin (onDemandHosts)' : ''}: the resumed connection's /connection and /whoami equal the full one's (subject, thumbprints, chain of 3, certFlags, mapper identity, revocation), from the cache`, async () => {
      const full = await visit(port, opts(version, undefined, servername));
      assert.equal(full.status, 200);
      const cert = full.body.clientCertificate as CertJson;
      assert.deepEqual([full.body.resumed, cert.authorized, cert.certFlagsName, cert.identity, cert.chainLength, cert.revocation?.status, cert.revocation?.source], [false, true, 'OK', 'dev-users', 3, 0, 'crl']);
      const hits = sessionChainStats.hits;
      const resumed = await visit(port, opts(version, full.session, servername));
      assert.deepEqual([resumed.status, resumed.reused, resumed.body.resumed, resumed.body.protocol], [200, true, true, version]);
      assert.deepEqual(resumed.body.clientCertificate, cert);
      assert.equal(sessionChainStats.hits, hits + 1, 'answered from the verified-chain cache (no chain verification)');
      const whoFull = await visit(port, opts(version, undefined, servername), '/whoami');
      const whoResumed = await visit(port, opts(version, whoFull.session, servername), '/whoami');
      const strip = (b: unknown) => { const { connectionId: _id, ...rest } = b as { connectionId: string }; return rest; };
      assert.equal(whoResumed.reused, true);
      assert.deepEqual(strip(whoResumed.body), strip(whoFull.body));
    });
  }

  test('openssl s_client -tls1_2 -sess_out / -sess_in (an independent client, TLS 1.2 ticket): the same identity and verdict resumed', async () => {
    const sess = join(fx.dir, 'sess-tls1_2');
    const leaf = join(fx.dir, 'leaf.pem');
    const chain = join(fx.dir, 'chain.pem');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(leaf, fx.clientChain.slice(0, fx.clientChain.indexOf('-----END CERTIFICATE-----') + 26));
    writeFileSync(chain, fx.clientCa.pem);
    const sClient = (extra: string[]) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_2', '-cert', leaf, '-cert_chain', chain, '-key', fx.pki.clientKey, '-quiet', '-ign_eof', ...extra],
      { input: 'GET /connection HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', holdStdinMs: 600, timeoutMs: 8000 });
    const json = (out: string) => JSON.parse(out.slice(out.indexOf('{'))) as ConnectionJson;
    const first = json((await sClient(['-sess_out', sess])).stdout);
    const again = json((await sClient(['-sess_in', sess])).stdout);
    assert.deepEqual([first.resumed, again.resumed], [false, true]);
    assert.deepEqual([first.clientCertificate?.authorized, first.clientCertificate?.identity, first.clientCertificate?.chainLength], [true, 'dev-users', 3]);
    assert.deepEqual(again.clientCertificate, first.clientCertificate);
  });

  test('the revocation check runs on a resumed connection with the checker\'s state now: a ticket from before the client was revoked resumes as CERT_E_REVOKED', async (t) => {
    const full = await visit(port, opts('TLSv1.3'));
    assert.equal(full.body.clientCertificate?.authorized, true);
    checker.replaceCrls([fx.crls.revoking]);
    t.after(() => checker.replaceCrls([fx.crls.clientCa]));
    const resumed = await visit(port, opts('TLSv1.3', full.session));
    assert.equal(resumed.reused, true);
    assert.deepEqual([resumed.status, resumed.body.clientCertificate?.authorized, resumed.body.clientCertificate?.reason, resumed.body.clientCertificate?.certFlagsName, resumed.body.clientCertificate?.identity],
      [200, false, 'revoked', 'CERT_E_REVOKED', null]);
  });

  test('a reload retires the cached verdicts: the same material rebuilds the same answer; a CRL that revokes the client makes the old ticket CERT_E_REVOKED (TLS 1.3 and 1.2)', async () => {
    const cert = readFileSync(fx.pki.server, 'utf8');
    const key = readFileSync(fx.pki.serverKey, 'utf8');
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      const full = await visit(port, opts(version));
      const before = full.body.clientCertificate;
      await server.reload({ cert, key });
      const misses = sessionChainStats.misses;
      const rebuilt = await visit(port, opts(version, full.session));
      assert.equal(rebuilt.reused, true);
      assert.equal(sessionChainStats.misses, misses + 1, 'verified again after the reload, not read from the cache');
      assert.deepEqual(rebuilt.body.clientCertificate, before, 'chain rebuilt from the anchors and the intermediate a full handshake showed');
      await server.reload({ cert, key, crl: [fx.crls.root, fx.crls.revoking] });
      const revoked = await visit(port, opts(version, full.session));
      assert.equal(revoked.reused, true);
      assert.deepEqual([revoked.body.clientCertificate?.authorized, revoked.body.clientCertificate?.certFlagsName, revoked.body.clientCertificate?.identity], [false, 'CERT_E_REVOKED', null]);
      await server.reload({ cert, key, crl: [] });
    }
  });

  test('a certificate that expires two seconds after it is made (real time, made before the tests above): authorized, then CERT_E_EXPIRED on the same keep-alive connection and on resumption', async () => {
    const { c, first, session, notAfter, short } = await shortLived;
    assert.deepEqual([first.body.clientCertificate?.authorized, first.body.clientCertificate?.certFlagsName], [true, 'OK']);
    while (Date.now() <= notAfter + 50) await new Promise((r) => setTimeout(r, Math.max(10, notAfter + 60 - Date.now())));
    const later = await c.get<ConnectionJson>('/connection');
    c.close();
    assert.deepEqual([later.body.resumed, later.body.clientCertificate?.authorized, later.body.clientCertificate?.certFlagsName, later.body.clientCertificate?.identity], [false, false, 'CERT_E_EXPIRED', null]);
    const resumed = await visit(port, { version: 'TLSv1.3', cert: short.pem + fx.clientCa.pem, key: short.keyPem, session });
    assert.equal(resumed.reused, true);
    assert.deepEqual([resumed.body.clientCertificate?.authorized, resumed.body.clientCertificate?.certFlagsName], [false, 'CERT_E_EXPIRED']);
  });
});

describe('the plugin with an injected clock', () => {
  let app: FastifyInstance;
  let port: number;
  let clock = Date.now();
  before(async () => {
    app = Fastify({ https: { cert: readFileSync(fx.pki.server), key: readFileSync(fx.pki.serverKey), ca: fx.root, requestCert: true, rejectUnauthorized: false } });
    await app.register(certboundPlugin, { clientAuth: 'accept-untrusted', registry: new ConnectionRegistry({ anchors: anchorsFromPem([fx.root]), now: () => clock }) });
    app.get('/c', async (request) => request.clientCertificate());
    app.get('/need', { config: { clientCertificate: 'required' } }, async () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => app.close());

  test('past notAfter by the clock: a keep-alive connection stops being authorized, a resumed one is CERT_E_EXPIRED; a required route refuses both', async () => {
    const notAfter = Date.parse(new X509Certificate(fx.clientChain).validTo);
    const c = new Client(port, { version: 'TLSv1.2', cert: fx.clientChain, key: fx.clientKey });
    const now = await c.get<{ authorized: boolean; certFlags: number }>('/c');
    assert.deepEqual([now.body.authorized, now.body.certFlags, (await c.get('/need')).status], [true, 0, 200]);
    const session = await c.ticket();
    clock = notAfter + 1000;
    const later = await c.get<{ authorized: boolean; certFlags: number }>('/c');
    assert.deepEqual([later.body.authorized, later.body.certFlags, (await c.get('/need')).status], [false, 0x800b0101, 403]);
    c.close();
    const resumed = new Client(port, { version: 'TLSv1.2', cert: fx.clientChain, key: fx.clientKey, session });
    const r = await resumed.get<{ authorized: boolean; certFlags: number }>('/c');
    assert.deepEqual([resumed.socket.isSessionReused(), r.body.authorized, r.body.certFlags, (await resumed.get('/need')).status], [true, false, 0x800b0101, 403]);
    resumed.close();
    // Back to now: the same ticket resumes authorized (it was the clock).
    clock = Date.now();
    const back = new Client(port, { version: 'TLSv1.2', cert: fx.clientChain, key: fx.clientKey, session });
    const b = await back.get<{ authorized: boolean; certFlags: number }>('/c');
    assert.deepEqual([back.socket.isSessionReused(), b.body.authorized, b.body.certFlags], [true, true, 0]);
    back.close();
  });
});

describe('TLS 1.2 session ids (no tickets; the application keeps sessions in process with newSession/resumeSession)', () => {
  let server: CertboundServer;
  let port: number;
  before(async () => {
    server = createServer({
      cert: readFileSync(fx.pki.server, 'utf8'), key: readFileSync(fx.pki.serverKey, 'utf8'), ca: fx.root, clientAuth: 'accept-untrusted', logger: false, referenceRoutes: true,
      tls: { secureOptions: cryptoConstants.SSL_OP_NO_TICKET },
      mapper: { manyToOne: [{ name: 'dev users', rules: [], issuerThumbprint: fx.clientCaSha1, identity: 'dev-users' }] },
    });
    const sessions = new Map<string, Buffer>();
    server.server.on('newSession', (id: Buffer, data: Buffer, done: () => void) => { sessions.set(id.toString('hex'), data); done(); });
    server.server.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => done(null, sessions.get(id.toString('hex')) ?? null));
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  });
  after(() => server.close());

  test('a session id resumes with the full handshake\'s identity, chain and verdict', async () => {
    const o = { version: 'TLSv1.2' as const, cert: fx.clientChain, key: fx.clientKey };
    const full = await visit(port, o);
    assert.deepEqual([full.body.clientCertificate?.authorized, full.body.clientCertificate?.identity, full.body.clientCertificate?.chainLength], [true, 'dev-users', 3]);
    const resumed = await visit(port, { ...o, session: full.session });
    assert.deepEqual([resumed.reused, resumed.body.resumed], [true, true]);
    assert.deepEqual(resumed.body.clientCertificate, full.body.clientCertificate);
  });
});
