// Behind a front: `trustedProxies`. Real servers on 127.0.0.1: a proxy is a client bound to
// 127.0.0.1 (the one trusted address) that sends RFC 9440 headers; every other client binds to
// 127.0.0.2 (localAddress, curl --interface). A forwarded certificate must get exactly the
// decision (certFlags, subject, sha1, identity) that a direct TLS connection with the same
// certificate gets from the same server, compared in the same test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { certboundPlugin } from '../src/server/plugin.js';
import { createServer, type CertboundServer } from '../src/server/server.js';
import { compileTrustedProxies, normalizeAddress } from '../src/server/trusted-proxies.js';
import { readForwardedCertificate, type ForwardedHeaderReason } from '../src/server/forwarded-headers.js';
import { certStatusName } from '../src/status.js';
import { issueCertificate, issueCrl, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import type { MapperConfig } from '../src/tls/mapper.js';
import { isCertboundError } from '../src/errors.js';
import { devPki, read, tempDir } from './helpers/pki.js';

const PROXY = '127.0.0.1';
const OTHER = '127.0.0.2';
const CLIENT_AUTH = OID.clientAuth;

const b64 = (der: Buffer) => `:${der.toString('base64')}:`;
const derOf = (pem: string) => new X509Certificate(pem).raw;
/** The PEM blocks of a file, each as DER. */
const dersOf = (pem: string) => [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => derOf(m[0]));

// ---------------------------------------------------------------------------------------------
// Unit tables: the entries of trustedProxies and the parsing of the headers.

test('trustedProxies entries: addresses, CIDRs (IPv4, IPv6, IPv4-mapped) match exactly what they say', () => {
  const p = compileTrustedProxies(['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8', '::ffff:192.168.0.0/112', '[2001:db8::1]']);
  assert.ok(p);
  const rows: Array<[string | undefined, boolean]> = [
    ['127.0.0.1', true], ['::ffff:127.0.0.1', true], ['127.0.0.2', false],
    ['10.1.2.3', true], ['::ffff:10.255.0.1', true], ['11.0.0.1', false],
    ['::1', true], ['::2', false], ['fd12:3456::1', true], ['fe80::1', false],
    ['192.168.7.9', true], ['::ffff:192.168.7.9', true], ['192.169.0.1', false],
    ['2001:db8::1', true], ['2001:db8::2', false],
    [undefined, false], ['', false], ['not-an-address', false],
  ];
  for (const [address, expected] of rows) assert.equal(p.matchesAddress(address), expected, String(address));
  assert.equal(normalizeAddress('::FFFF:10.0.0.1'), '10.0.0.1');
  assert.equal(normalizeAddress('[::1]'), '::1');
  assert.equal(p.byIdentity, false);
});

test('trustedProxies entries: an mTLS identity counts only on an authorized certificate', () => {
  const sha256 = 'ab'.repeat(32);
  const sha1 = 'cd'.repeat(20);
  const p = compileTrustedProxies([`sha256:${sha256.toUpperCase()}`, `SHA1:${sha1.match(/../g)?.join(':')}`, 'identity:front-1']);
  assert.ok(p);
  assert.equal(p.byIdentity, true);
  assert.equal(p.matchesAddress('127.0.0.1'), false);
  const cert = (over: Partial<{ authorized: boolean; sha1: string; sha256: string; identity: string | null }>) => ({ authorized: true, sha1: '00'.repeat(20), sha256: '00'.repeat(32), identity: null, ...over });
  assert.equal(p.matchesCertificate(cert({ sha256 })), true);
  assert.equal(p.matchesCertificate(cert({ sha1 })), true);
  assert.equal(p.matchesCertificate(cert({ identity: 'front-1' })), true);
  assert.equal(p.matchesCertificate(cert({ identity: 'front-2' })), false);
  assert.equal(p.matchesCertificate(cert({ sha256, authorized: false })), false);
  assert.equal(p.matchesCertificate(null), false);
});

test('trustedProxies: a bad entry stops start-up with CB_ERR_INVALID_OPTION naming it', () => {
  const rows: Array<[string, RegExp]> = [
    ['10.0.0.0/33', /trustedProxies\[0\]: "10\.0\.0\.0\/33": the prefix length is over 32/],
    ['fd00::/129', /over 128/],
    ['10.0.0.0/x', /prefix length must be a number/],
    ['::ffff:10.0.0.0/64', /IPv4-mapped prefix must be \/96 or longer/],
    ['localhost', /"localhost" is not an IP address or CIDR/],
    ['sha256:abcd', /sha256: needs 64 hex digits/],
    ['sha1:' + 'g'.repeat(40), /sha1: needs 40 hex digits/],
    ['identity:', /identity: needs the mapped identity/],
    [' ', /expected an address/],
  ];
  for (const [entry, message] of rows) {
    assert.throws(() => compileTrustedProxies([entry]), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && message.test((err as Error).message), entry);
  }
  assert.equal(compileTrustedProxies([]), undefined);
});

test('RFC 9440 header parsing: every malformed value has its stable reason', async () => {
  const pki = await devPki();
  const leaf = derOf(read(pki.client));
  const ca = derOf(read(pki.clientCa));
  const raw = (...pairs: string[]) => pairs;
  const ok = readForwardedCertificate(raw('Client-Cert', b64(leaf), 'Client-Cert-Chain', `${b64(ca)}, ${b64(derOf(read(pki.rootCa)))}`));
  assert.ok(ok);
  assert.deepEqual([ok.leaf.raw, ...ok.issuers.map((c) => c.raw)], [leaf, ca, derOf(read(pki.rootCa))]);
  assert.equal(readForwardedCertificate(raw('Host', 'x')), null);
  assert.equal(readForwardedCertificate(raw('client-cert', b64(leaf), 'client-cert-chain', ''))?.issuers.length, 0);
  const rows: Array<[string, string[], string, ForwardedHeaderReason]> = [
    ['bad base64', ['Client-Cert', ':not base64!:'], 'client-cert', 'syntax'],
    ['no closing colon', ['Client-Cert', `:${leaf.toString('base64')}`], 'client-cert', 'syntax'],
    ['base64 of text', ['Client-Cert', ':aGVsbG8=:'], 'client-cert', 'not-a-certificate'],
    ['a certificate with bytes after it', ['Client-Cert', b64(Buffer.concat([leaf, Buffer.from([0])]))], 'client-cert', 'not-a-certificate'],
    ['a list where an item is expected', ['Client-Cert', `${b64(leaf)}, ${b64(ca)}`], 'client-cert', 'syntax'],
    ['a token, not a byte sequence', ['Client-Cert', 'abc'], 'client-cert', 'not-a-byte-sequence'],
    ['a string, not a byte sequence', ['Client-Cert', '"abc"'], 'client-cert', 'not-a-byte-sequence'],
    ['parameters on the item', ['Client-Cert', `${b64(leaf)};a=1`], 'client-cert', 'parameters'],
    ['two field lines', ['Client-Cert', b64(leaf), 'client-cert', b64(leaf)], 'client-cert', 'duplicate'],
    ['over the size bound', ['Client-Cert', `:${'A'.repeat(12_288)}:`], 'client-cert', 'too-large'],
    ['a chain without Client-Cert', ['Client-Cert-Chain', b64(ca)], 'client-cert-chain', 'chain-without-certificate'],
    ['a chain member that is a token', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', `${b64(ca)}, abc`], 'client-cert-chain', 'not-a-byte-sequence'],
    ['a chain member that is an inner list', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', `(${b64(ca)})`], 'client-cert-chain', 'not-a-byte-sequence'],
    ['parameters on a chain member', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', `${b64(ca)};x`], 'client-cert-chain', 'parameters'],
    ['a chain member that is no certificate', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', ':AAAA:'], 'client-cert-chain', 'not-a-certificate'],
    ['a chain that is not a list', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', ':AAAA:,'], 'client-cert-chain', 'syntax'],
    ['a chain of 9 certificates', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', Array(9).fill(b64(ca)).join(', ')], 'client-cert-chain', 'too-many-certificates'],
    ['two chain field lines', ['Client-Cert', b64(leaf), 'Client-Cert-Chain', b64(ca), 'Client-Cert-Chain', b64(ca)], 'client-cert-chain', 'duplicate'],
  ];
  for (const [what, headers, header, reason] of rows) {
    assert.throws(() => readForwardedCertificate(headers), (err: unknown) => {
      const e = err as { header: string; reason: string; code: string };
      assert.deepEqual({ header: e.header, reason: e.reason }, { header, reason }, what);
      assert.equal(e.code, reason === 'too-large' || reason === 'too-many-certificates' ? 'CB_ERR_FORWARDED_CERT_TOO_LARGE' : 'CB_ERR_FORWARDED_CERT_INVALID');
      return true;
    }, what);
  }
});

// ---------------------------------------------------------------------------------------------
// Real servers.

interface Cred { cert: string; key: string }
/** A certificate kind: what a client presents directly, and what a proxy forwards for it. */
interface Kind { cred: Cred; leaf: Buffer; chain: Buffer[]; expected: string }

interface Seen { status: number; body: Record<string, unknown> }

/** One request; `localAddress` picks who the server sees. `tls` with an optional client certificate. */
function send(port: number, path: string, opts: { tls?: boolean; localAddress?: string; cred?: Cred; headers?: OutgoingHttpHeaders; agent?: HttpAgent } = {}): Promise<Seen> {
  return devPki().then((pki) => new Promise((resolve, reject) => {
    const common = { host: '127.0.0.1', port, path, method: 'GET', localAddress: opts.localAddress ?? OTHER, headers: opts.headers ?? {}, agent: opts.agent ?? false };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body ? JSON.parse(body) as Record<string, unknown> : {} }));
    };
    const req = opts.tls
      ? httpsRequest({ ...common, servername: 'localhost', ca: readFileSync(pki.rootCa), ...(opts.cred ? { cert: opts.cred.cert, key: opts.cred.key } : {}) }, onResponse)
      : httpRequest(common, onResponse);
    req.on('error', reject);
    req.end();
  }));
}

/** The RFC 9440 headers a proxy sends for `kind`. */
const forwardedHeaders = (k: Kind): OutgoingHttpHeaders => ({ 'client-cert': b64(k.leaf), ...(k.chain.length > 0 ? { 'client-cert-chain': k.chain.map(b64).join(', ') } : {}) });

/** What a route answers: the decision request.clientCertificate() gives. */
function decisionOf(request: FastifyRequest): Record<string, unknown> {
  const c = request.clientCertificate();
  return c
    ? { certFlags: c.certFlags, certFlagsName: certStatusName(c.certFlags) ?? String(c.certFlags), subject: c.subject, sha1: c.sha1, authorized: c.authorized, reason: c.reason, identity: c.identity, deniedByMapper: c.deniedByMapper, forwarded: c.forwarded ?? false, chainLength: c.chain.length, verifyError: c.verifyError }
    : { none: true, clientCert: request.headers['client-cert'] ?? null, flags: request.headers['certbound-client-cert-flags'] ?? null };
}

function routes(app: FastifyInstance): void {
  app.get('/cert', async (request) => decisionOf(request));
  app.get('/required', { config: { clientCertificate: 'required' } }, async (request) => decisionOf(request));
  app.get('/on-demand', { config: { clientCertificate: 'on-demand' } }, async (request) => decisionOf(request));
  app.get('/negotiate', async (request) => {
    const r = await request.negotiateClientCertificate();
    return { status: r.status, authorized: r.authorized, forwarded: r.certificate?.forwarded ?? false };
  });
}

const comparable = (b: Record<string, unknown>) => ({ certFlags: b.certFlags, certFlagsName: b.certFlagsName, subject: b.subject, sha1: b.sha1, authorized: b.authorized, reason: b.reason, identity: b.identity, deniedByMapper: b.deniedByMapper });

describe('behind a trusted proxy', () => {
  const kinds: Record<string, Kind> = {};
  let mapper: MapperConfig;
  let revokedIssued: IssuedCertificate;
  let revocation: { crls: string[]; fetchCrlDistributionPoints: false; ocsp: false; failMode: 'hard' };
  let tlsServer: CertboundServer;
  let tlsPort = 0;
  let plain: FastifyInstance;
  let plainPort = 0;
  const logLines: Array<{ level: number; msg: string; headers?: string[] }> = [];

  before(async () => {
    const pki = await devPki();
    const clientCa = await loadIssuer(read(pki.clientCa), read(pki.clientCaKey));
    const file = (cert: string, key: string): Cred => ({ cert: read(cert), key: read(key) });
    const issued = (c: IssuedCertificate, ...chain: IssuedCertificate[]): Cred => ({ cert: c.pem + chain.map((x) => x.pem).join(''), key: c.keyPem });
    const kind = (cred: Cred, expected: string): Kind => {
      const ders = dersOf(cred.cert);
      return { cred, leaf: ders[0] as Buffer, chain: ders.slice(1), expected };
    };
    const member = await issueCertificate({ subject: { commonName: 'behind-member', organization: 'certbound dev' }, issuer: clientCa, extKeyUsage: [CLIENT_AUTH] });
    const denied = await issueCertificate({ subject: { commonName: 'behind-denied', organization: 'certbound dev' }, issuer: clientCa, extKeyUsage: [CLIENT_AUTH] });
    const revoked = await issueCertificate({ subject: { commonName: 'behind-revoked', organization: 'certbound dev' }, issuer: clientCa, extKeyUsage: [CLIENT_AUTH] });
    revokedIssued = revoked;
    // A forgery whose signature does not verify: it names the client CA (name and key id) but a key of its own signed it.
    const forger = await issueCertificate({ subject: { commonName: 'certbound dev client CA', organization: 'certbound dev' }, ca: true });
    const skid = clientCa.certificate.extensions?.find((e) => e.extnID === '2.5.29.14')?.parsedValue as { valueBlock: { valueHexView: Uint8Array } };
    const forgedSignature = await issueCertificate({ subject: { commonName: 'dev-client', organization: 'certbound dev' }, issuer: forger, extKeyUsage: [CLIENT_AUTH], authorityKeyId: Buffer.from(skid.valueBlock.valueHexView) });
    // The trust matrix's forgery: a CA of its own under the client CA's name, sent along.
    const sameNameCa = await issueCertificate({ subject: { commonName: 'certbound dev client CA', organization: 'certbound dev' }, ca: true });
    const sameName = await issueCertificate({ subject: { commonName: 'dev-client', organization: 'certbound dev' }, issuer: sameNameCa, extKeyUsage: [CLIENT_AUTH] });
    // A chain from an unrelated CA: its intermediate sent, its root not.
    const otherRoot = await issueCertificate({ subject: { commonName: 'unrelated root' }, ca: true });
    const otherCa = await issueCertificate({ subject: { commonName: 'unrelated CA' }, issuer: otherRoot, ca: true });
    const unrelated = await issueCertificate({ subject: { commonName: 'unrelated-client' }, issuer: otherCa, extKeyUsage: [CLIENT_AUTH] });
    // A valid client certificate used as a CA (it signs another): an end entity is no issuer.
    const client = await loadIssuer(read(pki.client), read(pki.clientKey));
    const underLeaf = await issueCertificate({ subject: { commonName: 'under-a-leaf' }, issuer: client, extKeyUsage: [CLIENT_AUTH] });
    Object.assign(kinds, {
      'valid': kind(file(pki.client, pki.clientKey), 'OK'),
      'expired': kind(file(pki.clientExpired, pki.clientExpiredKey), 'CERT_E_EXPIRED'),
      'untrusted root': kind({ cert: read(pki.clientUntrusted) + read(pki.untrustedCa), key: read(pki.clientUntrustedKey) }, 'CERT_E_UNTRUSTEDROOT'),
      'wrong usage': kind(file(pki.clientWrongUsage, pki.clientWrongUsageKey), 'CERT_E_WRONG_USAGE'),
      'revoked by CRL': kind(issued(revoked, clientCa), 'CERT_E_REVOKED'),
      'forged signature': kind(issued(forgedSignature), 'TRUST_E_CERT_SIGNATURE'),
      'forged names, own CA sent': kind(issued(sameName, sameNameCa), 'CERT_E_UNTRUSTEDROOT'),
      'unrelated CA': kind(issued(unrelated, otherCa), 'CERT_E_UNTRUSTEDCA'),
      'mapped many-to-one': kind(issued(member, clientCa), 'OK'),
      'denied by the mapper': kind(issued(denied, clientCa), 'OK'),
      'a leaf as CA': kind(issued(underLeaf, client, clientCa), 'TRUST_E_FAIL'),
    });
    const thumbprint = new X509Certificate(read(pki.client)).fingerprint;
    mapper = { oneToOne: [{ thumbprint, identity: 'alice' }], manyToOne: [{ name: 'denied', rules: [{ field: 'subject', attribute: 'CN', match: 'behind-denied' }], deny: true }, { name: 'dev org', rules: [{ field: 'issuer', attribute: 'O', match: 'certbound dev' }], identity: 'dev-org-member' }] };
    revocation = { crls: [await issueCrl({ issuer: clientCa, revoked: [revoked] })], fetchCrlDistributionPoints: false, ocsp: false, failMode: 'hard' };

    tlsServer = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'accept-untrusted', mapper, revocation, trustedProxies: [PROXY], logger: false, underPressure: false });
    routes(tlsServer.app);
    tlsPort = (await tlsServer.listen({ host: '127.0.0.1', port: 0 })).port;

    const stream = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l) logLines.push(JSON.parse(l) as { level: number; msg: string }); cb(); } });
    plain = Fastify({ logger: { level: 'debug', stream } });
    await plain.register(certboundPlugin, { clientAuth: 'accept-untrusted', trustedProxies: [PROXY], ca: readFileSync(pki.caBundle), mapper, revocation });
    routes(plain);
    plain.get('/headers', async (request) => ({ headers: Object.keys(request.headers).sort(), raw: request.raw.rawHeaders.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase()).sort() }));
    await plain.listen({ host: '127.0.0.1', port: 0 });
    plainPort = (plain.server.address() as AddressInfo).port;
  });
  after(async () => {
    await tlsServer?.close();
    await plain?.close();
  });

  test('a forwarded certificate gets exactly the decision of a direct TLS connection with it (certFlags, subject, sha1, identity)', async () => {
    for (const [name, k] of Object.entries(kinds)) {
      const direct = await send(tlsPort, '/cert', { tls: true, cred: k.cred });
      const viaTls = await send(tlsPort, '/cert', { tls: true, localAddress: PROXY, headers: forwardedHeaders(k) });
      const viaHttp = await send(plainPort, '/cert', { localAddress: PROXY, headers: forwardedHeaders(k) });
      assert.equal(direct.body.certFlagsName, k.expected, `${name}: direct ${JSON.stringify(direct.body)}`);
      assert.equal(direct.body.forwarded, false, name);
      assert.deepEqual(comparable(viaTls.body), comparable(direct.body), `${name}: forwarded over TLS`);
      assert.deepEqual(comparable(viaHttp.body), comparable(direct.body), `${name}: forwarded over plain HTTP`);
      assert.equal(viaTls.body.forwarded, true, name);
      assert.equal(viaHttp.body.forwarded, true, name);
    }
    const identities = await Promise.all(['valid', 'mapped many-to-one', 'denied by the mapper'].map(async (name) => (await send(plainPort, '/cert', { localAddress: PROXY, headers: forwardedHeaders(kinds[name] as Kind) })).body));
    assert.deepEqual(identities.map((b) => [b.identity, b.authorized, b.reason, b.deniedByMapper]), [['alice', true, 'authorized', false], ['dev-org-member', true, 'authorized', false], [null, false, 'denied-by-mapper', true]]);
    const valid = await send(plainPort, '/cert', { localAddress: PROXY, headers: forwardedHeaders(kinds.valid as Kind) });
    assert.deepEqual({ identity: valid.body.identity, authorized: valid.body.authorized, sha1: valid.body.sha1 }, { identity: 'alice', authorized: true, sha1: new X509Certificate((kinds.valid as Kind).leaf).fingerprint.replace(/:/g, '').toLowerCase() });
  });

  test('from a peer that is not a trusted proxy the headers are removed, never read, and logged once per connection', async () => {
    const valid = kinds.valid as Kind;
    const headers = { ...forwardedHeaders(valid), 'certbound-client-cert-flags': 'OK', 'certbound-client-identity': 'alice', 'certbound-connection-id': '7' };
    // Direct TLS from 127.0.0.2 without a certificate: nothing, whatever the headers say.
    assert.deepEqual((await send(tlsPort, '/cert', { tls: true, headers })).body, { none: true, clientCert: null, flags: null });
    // Direct TLS with the expired certificate: the connection's own certificate, not the forwarded one.
    const own = await send(tlsPort, '/cert', { tls: true, cred: (kinds.expired as Kind).cred, headers });
    assert.deepEqual([own.body.certFlagsName, own.body.forwarded], ['CERT_E_EXPIRED', false]);
    // Plain HTTP: neither the app nor certbound sees the headers (headers and rawHeaders).
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1, localAddress: OTHER } as ConstructorParameters<typeof HttpAgent>[0]);
    try {
      const before = logLines.length;
      // Underscore spellings too: CGI-style stacks read Client_Cert as Client-Cert.
      const withUnderscores = { ...headers, Client_Cert: b64(valid.leaf), certbound_client_identity: 'mallory' };
      const first = await send(plainPort, '/headers', { localAddress: OTHER, headers: withUnderscores, agent });
      const second = await send(plainPort, '/headers', { localAddress: OTHER, headers: withUnderscores, agent });
      for (const r of [first, second]) {
        assert.deepEqual(r.body.headers, ['connection', 'host']);
        assert.deepEqual(r.body.raw, ['connection', 'host']);
      }
      const lines = logLines.slice(before).filter((l) => /not a trusted proxy/.test(l.msg));
      const names = ['client-cert', 'client-cert-chain', 'certbound-client-cert-flags', 'certbound-client-identity', 'certbound-connection-id', 'client_cert', 'certbound_client_identity'];
      assert.deepEqual(lines.map((l) => [l.level, l.headers]), [[40, names], [20, names]]);
    } finally {
      agent.destroy();
    }
    // curl from 127.0.0.2: the same.
    // curl from 127.0.0.2: the same; from 127.0.0.1 the header is read.
    const curl = (from: string) => promisify(execFile)('curl', ['-sS', '--max-time', '5', '--interface', from, '-H', `Client-Cert: ${b64(valid.leaf)}`, `http://127.0.0.1:${plainPort}/cert`], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse((await curl(OTHER)).stdout), { none: true, clientCert: null, flags: null });
    assert.equal((JSON.parse((await curl(PROXY)).stdout) as { identity: string }).identity, 'alice');
  });

  test('required routes over plain HTTP: served only for a trusted proxy with an authorized forwarded certificate', async () => {
    const rows: Array<[string, string, OutgoingHttpHeaders, number, string | null]> = [
      ['proxy, valid', PROXY, forwardedHeaders(kinds.valid as Kind), 200, null],
      ['proxy, expired', PROXY, forwardedHeaders(kinds.expired as Kind), 403, 'CB_ERR_CLIENT_CERT_UNTRUSTED'],
      ['proxy, revoked', PROXY, forwardedHeaders(kinds['revoked by CRL'] as Kind), 403, 'CB_ERR_CLIENT_CERT_UNTRUSTED'],
      ['proxy, none', PROXY, {}, 403, 'CB_ERR_CLIENT_CERT_REQUIRED'],
      ['other peer, valid headers', OTHER, forwardedHeaders(kinds.valid as Kind), 403, 'CB_ERR_TLS_REQUIRED'],
    ];
    for (const [what, from, headers, status, code] of rows) {
      for (const path of ['/required', '/on-demand']) {
        const r = await send(plainPort, path, { localAddress: from, headers });
        assert.equal(r.status, status, `${what} ${path}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code ?? null, code, `${what} ${path}`);
        if (status === 200) assert.deepEqual([r.body.identity, r.body.forwarded], ['alice', true]);
      }
    }
    const untrusted = await send(plainPort, '/required', { localAddress: PROXY, headers: forwardedHeaders(kinds.expired as Kind) });
    assert.deepEqual([untrusted.body.certFlagsName, untrusted.body.certFlags], ['CERT_E_EXPIRED', 0x800b0101]);
  });

  test('over TLS from the proxy: on-demand never renegotiates with the proxy; the request API says the proxy must ask', async () => {
    const none = await send(tlsPort, '/on-demand', { tls: true, localAddress: PROXY });
    assert.deepEqual([none.status, none.body.code], [403, 'CB_ERR_CLIENT_CERT_REQUIRED']);
    const served = await send(tlsPort, '/on-demand', { tls: true, localAddress: PROXY, headers: forwardedHeaders(kinds.valid as Kind) });
    assert.deepEqual([served.status, served.body.identity], [200, 'alice']);
    // The proxy's own certificate is never the client's.
    const proxyOwn = await send(tlsPort, '/required', { tls: true, localAddress: PROXY, cred: (kinds.valid as Kind).cred });
    assert.deepEqual([proxyOwn.status, proxyOwn.body.code], [403, 'CB_ERR_CLIENT_CERT_REQUIRED']);
    const negotiate = await send(tlsPort, '/negotiate', { tls: true, localAddress: PROXY, headers: forwardedHeaders(kinds.valid as Kind) });
    assert.deepEqual(negotiate.body, { status: 'error', authorized: true, forwarded: true });
  });

  test('malformed headers from a trusted proxy: 400 with a stable code, header and reason', async () => {
    const leaf = (kinds.valid as Kind).leaf;
    const rows: Array<[OutgoingHttpHeaders, string, string, string]> = [
      [{ 'client-cert': ':not base64!:' }, 'CB_ERR_FORWARDED_CERT_INVALID', 'client-cert', 'syntax'],
      [{ 'client-cert': ':aGVsbG8=:' }, 'CB_ERR_FORWARDED_CERT_INVALID', 'client-cert', 'not-a-certificate'],
      [{ 'client-cert': `${b64(leaf)}, ${b64(leaf)}` }, 'CB_ERR_FORWARDED_CERT_INVALID', 'client-cert', 'syntax'],
      [{ 'client-cert': `${b64(leaf)};v=1` }, 'CB_ERR_FORWARDED_CERT_INVALID', 'client-cert', 'parameters'],
      [{ 'client-cert': [b64(leaf), b64(leaf)] }, 'CB_ERR_FORWARDED_CERT_INVALID', 'client-cert', 'duplicate'],
      [{ 'client-cert-chain': b64(leaf) }, 'CB_ERR_FORWARDED_CERT_INVALID', 'client-cert-chain', 'chain-without-certificate'],
      [{ 'client-cert': `:${'A'.repeat(13_000)}:` }, 'CB_ERR_FORWARDED_CERT_TOO_LARGE', 'client-cert', 'too-large'],
      [{ 'client-cert': b64(leaf), 'client-cert-chain': Array(9).fill(b64(leaf)).join(',') }, 'CB_ERR_FORWARDED_CERT_TOO_LARGE', 'client-cert-chain', 'too-many-certificates'],
    ];
    for (const [headers, code, header, reason] of rows) {
      for (const [port, tls] of [[plainPort, false], [tlsPort, true]] as const) {
        const r = await send(port, '/cert', { tls, localAddress: PROXY, headers });
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.deepEqual([r.body.code, r.body.header, r.body.reason], [code, header, reason]);
      }
      // From another peer the same headers are only removed: the request is served.
      assert.equal((await send(plainPort, '/cert', { localAddress: OTHER, headers })).status, 200);
    }
  });

  test('a proxy trusted by its mTLS identity: only on its authorized connection', async () => {
    const pki = await devPki();
    const sha256 = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
    const server = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'accept-untrusted', mapper, revocation, trustedProxies: [`sha256:${sha256(read(pki.client))}`, `sha256:${sha256(read(pki.clientExpired))}`], logger: false, underPressure: false });
    routes(server.app);
    try {
      const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
      const wrong = kinds['wrong usage'] as Kind;
      const viaProxy = await send(port, '/cert', { tls: true, cred: (kinds.valid as Kind).cred, headers: forwardedHeaders(wrong) });
      assert.deepEqual([viaProxy.body.certFlagsName, viaProxy.body.forwarded, viaProxy.body.subject], ['CERT_E_WRONG_USAGE', true, new X509Certificate(wrong.leaf).subject]);
      // Listed, but its certificate is expired: not a proxy; the connection's own certificate counts.
      const notProxy = await send(port, '/cert', { tls: true, cred: (kinds.expired as Kind).cred, headers: forwardedHeaders(kinds.valid as Kind) });
      assert.deepEqual([notProxy.body.certFlagsName, notProxy.body.forwarded], ['CERT_E_EXPIRED', false]);
      const noCert = await send(port, '/cert', { tls: true, localAddress: PROXY, headers: forwardedHeaders(kinds.valid as Kind) });
      assert.deepEqual(noCert.body, { none: true, clientCert: null, flags: null });
    } finally {
      await server.close();
    }
  });

  test('createServer crl: forwarded certificates are judged by the CRLs in force, before and after a reload, as direct ones', async () => {
    const pki = await devPki();
    const root = await loadIssuer(read(pki.rootCa), read(pki.rootCaKey));
    const clientCa = await loadIssuer(read(pki.clientCa), read(pki.clientCaKey));
    const revokedLater = await issueCertificate({ subject: { commonName: 'behind-revoked-later', organization: 'certbound dev' }, issuer: clientCa, extKeyUsage: [CLIENT_AUTH] });
    const later: Kind = { cred: { cert: revokedLater.pem + clientCa.pem, key: revokedLater.keyPem }, leaf: revokedLater.der, chain: [clientCa.der], expected: 'OK' };
    const revokedCrl = kinds['revoked by CRL'] as Kind;
    const rootCrl = await issueCrl({ issuer: root, revoked: [] });
    const crlOf = (revoked: IssuedCertificate[]) => issueCrl({ issuer: clientCa, revoked });
    const server = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), crl: [rootCrl, await crlOf([revokedIssued])], clientAuth: 'accept-untrusted', trustedProxies: [PROXY], logger: false, underPressure: false });
    routes(server.app);
    try {
      const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
      const both = async (k: Kind) => {
        const direct = (await send(port, '/cert', { tls: true, cred: k.cred })).body;
        const forwarded = (await send(port, '/cert', { tls: true, localAddress: PROXY, headers: forwardedHeaders(k) })).body;
        assert.deepEqual(comparable(forwarded), comparable(direct));
        return direct.certFlagsName;
      };
      assert.deepEqual([await both(kinds.valid as Kind), await both(revokedCrl), await both(later)], ['OK', 'CERT_E_REVOKED', 'OK']);
      await server.reload({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), crl: [rootCrl, await crlOf([revokedIssued, revokedLater])] });
      assert.deepEqual([await both(kinds.valid as Kind), await both(revokedCrl), await both(later)], ['OK', 'CERT_E_REVOKED', 'CERT_E_REVOKED']);
    } finally {
      await server.close();
    }
  });

  test('certbound serve --trusted-proxy: the reference routes show the forwarded certificate for the proxy only', async (t) => {
    const pki = await devPki();
    const bin = new URL('../bin/certbound.js', import.meta.url).pathname;
    const child = spawn(process.execPath, [bin, 'serve', '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--trusted-proxy', PROXY, '--trusted-proxy', 'fd00::/8', '--host', '127.0.0.1', '--port', '0', '--workers', '1', '--ocsp', 'off', '--state-dir', tempDir('certbound-behind-state-')], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 15_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /Server listening at https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => reject(new Error(`exited: ${out}`)));
    });
    const valid = kinds.valid as Kind;
    const whoami = await send(port, '/whoami', { tls: true, localAddress: PROXY, headers: forwardedHeaders(valid) });
    assert.equal(whoami.status, 200, JSON.stringify(whoami.body));
    assert.deepEqual([whoami.body.subject, whoami.body.certFlagsName, whoami.body.authorized, whoami.body.forwarded], [new X509Certificate(valid.leaf).subject, 'OK', true, true]);
    const other = await send(port, '/connection', { tls: true, headers: forwardedHeaders(valid) });
    assert.equal(other.body.clientCertificate, null);
  });

  test('start-up: trustedProxies without CAs to verify against is refused', async () => {
    const app = Fastify();
    await assert.rejects(async () => { await app.register(certboundPlugin, { trustedProxies: [PROXY] }); await app.ready(); }, (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /trustedProxies: needs the trusted client CAs/.test((err as Error).message));
    await app.close();
    const pki = await devPki();
    assert.throws(() => createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), clientAuth: 'none', trustedProxies: [PROXY], logger: false }), (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION') && /ca: trustedProxies needs/.test((err as Error).message));
    const bad = Fastify();
    await assert.rejects(async () => { await bad.register(certboundPlugin, { trustedProxies: ['300.0.0.1'], ca: readFileSync(pki.caBundle) }); await bad.ready(); }, (err: unknown) => isCertboundError(err, 'CB_ERR_INVALID_OPTION'));
    await bad.close();
  });
});
