// The trust matrix: every client-auth mode × kind of certificate × certificate path, on the
// main server and its TLS 1.2 twin, with revocation checking hard fail, soft fail and off,
// over real TLS on 127.0.0.1. The expected outcomes are the tables of
// docs/client-auth-modes.md ("What each mode lets through"), read from the page: written by
// hand from the rules, never computed by the code under test.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { pino } from 'pino';
import { certboundPlugin } from '../src/server/plugin.js';
import { negotiateClientCertificate } from '../src/server/negotiate.js';
import { Overlapped, receiveClientCertificate, receiveClientCertificateAsync, type ReceiveResult } from '../src/server/receive.js';
import { certStatusName, HResult, Win32 } from '../src/status.js';
import { issueCertificate, issueCrl, loadIssuer, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import type { ClientAuthMode } from '../src/tls/client-auth.js';
import { compileMapper, type MapperConfig } from '../src/tls/mapper.js';
import { buildOcspRequest, parseCertificate, serialHex } from '../src/ocsp/request.js';
import { fetchOcsp } from '../src/ocsp/fetch.js';
import { issueResponderCertificate } from '../src/ocsp/responder.js';
import { createRevocationChecker, type RevocationChecker } from '../src/ocsp/revocation.js';
import { ClientThread, type ClientCredentials, type Exchange } from './helpers/client-thread.js';
import { freePort } from './helpers/exec.js';
import { devPki, read, tempDir } from './helpers/pki.js';
import { startServer, type Started } from './helpers/server.js';

// ---------------------------------------------------------------------------------------------
// The tables of the page.

const DOC = resolve(import.meta.dirname, '..', 'docs', 'client-auth-modes.md');

const MODES = ['none', 'optional', 'require', 'accept-untrusted'] as const satisfies readonly ClientAuthMode[];
type Mode = (typeof MODES)[number];
const KINDS = ['valid', 'expired', 'untrusted root', 'wrong usage', 'revoked by CRL', 'revoked by OCSP', 'no revocation data', 'denied by the mapper', 'forged', 'none'] as const;
type Kind = (typeof KINDS)[number];
const SERVERS = ['main', 'twin'] as const;
type ServerName = (typeof SERVERS)[number];
const SETTINGS = ['hard fail', 'soft fail', 'revocation off'] as const;
type Setting = (typeof SETTINGS)[number];

/** The columns of the mode tables, as the page heads them, and what the test does for each. */
const PATHS = [
  { column: 'handshake', kind: 'route', method: 'GET', url: '/plain', shared: true },
  { column: 'required', kind: 'route', method: 'GET', url: '/required', shared: true },
  { column: 'on-demand TLS 1.2', kind: 'route', method: 'POST', url: '/on-demand', tls12: true },
  { column: 'on-demand TLS 1.3', kind: 'route', method: 'POST', url: '/on-demand' },
  { column: 'plugin', kind: 'route', method: 'GET', url: '/decorator', plugin: true },
  { column: 'receive sync', kind: 'receive', method: 'GET', url: '/receive/sync', shared: true },
  { column: 'receive overlapped', kind: 'receive', method: 'GET', url: '/receive/overlapped' },
  { column: 'receive Promise', kind: 'receive', method: 'GET', url: '/receive/promise' },
  { column: 'negotiate', kind: 'negotiate', method: 'GET', url: '/negotiate' },
  { column: '/whoami', kind: 'whoami', method: 'GET', url: '/whoami' },
  { column: '/connection', kind: 'connection', method: 'GET', url: '/connection', shared: true },
] as const satisfies readonly { column: string; kind: string; method: string; url: string; tls12?: boolean; plugin?: boolean; shared?: boolean }[];
type PathSpec = (typeof PATHS)[number];

interface Table { heading: string; header: string[]; rows: string[][] }

/** Every markdown table of the page with the `###` heading it sits under; backticks dropped. */
function tables(text: string): Table[] {
  const lines = text.split('\n');
  const out: Table[] = [];
  let heading = '';
  const cells = (line: string) => line.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.replace(/`/g, '').trim());
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '').replace(/`/g, '').trim();
    if (!line.startsWith('|') || !/^\|\s*-{3}/.test(lines[i + 1] ?? '')) continue;
    const table: Table = { heading, header: cells(line), rows: [] };
    for (i += 2; i < lines.length && (lines[i] ?? '').startsWith('|'); i++) table.rows.push(cells(lines[i] ?? ''));
    out.push(table);
  }
  return out;
}

/** A row label or heading with an optional server: `none (twin)`. */
function splitServer(label: string): { name: string; server: ServerName | undefined } {
  const m = /^(.*?)\s*\((main|twin)\)$/.exec(label);
  return m ? { name: m[1] ?? '', server: m[2] as ServerName } : { name: label, server: undefined };
}

interface Decision { reason: string; certFlagsName: string | null; identity: string | null }

interface Expectations {
  cell(setting: Setting, mode: Mode, server: ServerName, kind: Kind, path: PathSpec): string;
  decision(setting: Setting, kind: Kind): Decision;
}

function readExpectations(): Expectations {
  const section = readFileSync(DOC, 'utf8').split(/^## What each mode lets through$/m)[1];
  assert.ok(section, 'docs/client-auth-modes.md has "## What each mode lets through"');
  const all = tables(section);

  // The certificates: `reason / certFlagsName / identity` per revocation setting.
  const certs = all.find((t) => t.heading === 'The certificates');
  assert.ok(certs, 'the certificates table');
  assert.deepEqual(certs.header.slice(2), [...SETTINGS]);
  const decisions = new Map<string, Decision>();
  for (const row of certs.rows) {
    SETTINGS.forEach((s, i) => {
      const [reason = '', flags, identity] = (row[i + 2] ?? '').split('/').map((x) => x.trim());
      decisions.set(`${s}|${row[0]}`, { reason, certFlagsName: flags ?? null, identity: identity === undefined || identity === '-' ? null : identity });
    });
  }
  assert.deepEqual(certs.rows.map((r) => r[0]), [...KINDS], 'one row per kind of certificate');

  // Revocation settings: which row a certificate's cells are under each setting.
  const settings = all.find((t) => t.heading === 'Revocation settings');
  assert.ok(settings, 'the revocation settings table');
  assert.deepEqual(settings.header.slice(1), [...SETTINGS]);
  const rowAs = new Map<string, string>();
  for (const row of settings.rows) SETTINGS.forEach((s, i) => rowAs.set(`${s}|${row[0]}`, row[i + 1] ?? ''));

  // The mode tables: `mode` or `mode (server)`, rows `kind` or `kind (server)`.
  const modeTables = new Map<string, Map<string, string[]>>();
  for (const t of all) {
    const { name, server } = splitServer(t.heading);
    if (!(MODES as readonly string[]).includes(name)) continue;
    assert.deepEqual(t.header, ['certificate', ...PATHS.map((p) => p.column)], `columns of ${t.heading}`);
    const rows = new Map<string, string[]>();
    for (const row of t.rows) {
      const label = splitServer(row[0] ?? '');
      assert.ok((KINDS as readonly string[]).includes(label.name), `${t.heading}: unknown certificate ${row[0]}`);
      assert.equal(row.length, PATHS.length + 1, `${t.heading} / ${row[0]}: one cell per column`);
      rows.set(label.server ? `${label.name} (${label.server})` : label.name, row.slice(1));
    }
    modeTables.set(server ? `${name} (${server})` : name, rows);
  }

  return {
    decision(setting, kind) {
      const d = decisions.get(`${setting}|${kind}`);
      assert.ok(d, `decision of ${kind} under ${setting}`);
      return d;
    },
    cell(setting, mode, server, kind, path) {
      const row = rowAs.get(`${setting}|${kind}`) ?? kind;
      const table = modeTables.get(`${mode} (${server})`) ?? modeTables.get(mode);
      assert.ok(table, `a table for ${mode} (${server})`);
      const cells = table.get(`${row} (${server})`) ?? table.get(row);
      assert.ok(cells, `a row for ${row} (${server}) in ${mode}`);
      const value = cells[PATHS.indexOf(path)];
      assert.ok(value, `${mode} / ${row} / ${path.column}`);
      return value;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The certificates, the OCSP responder and the servers.

const CLIENT_AUTH = OID.clientAuth;

/** A real `openssl ocsp` responder for the client CA; `revoked` is listed as revoked. */
async function opensslOcsp(clientCa: IssuedCertificate, port: number, revoked: IssuedCertificate): Promise<ChildProcess> {
  const dir = tempDir('certbound-matrix-ocsp-');
  const signer = await issueResponderCertificate(clientCa, { commonName: 'matrix OCSP responder' });
  const time = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  const serial = serialHex(revoked.certificate).toUpperCase();
  const line = ['R', time(revoked.certificate.notAfter.value), time(new Date(Date.now() - 60_000)), serial.length % 2 ? `0${serial}` : serial, 'unknown', '/CN=matrix-revoked-ocsp'].join('\t');
  writeFileSync(join(dir, 'index.txt'), `${line}\n`);
  writeFileSync(join(dir, 'index.txt.attr'), 'unique_subject = no\n');
  writeFileSync(join(dir, 'ca.pem'), clientCa.pem);
  writeFileSync(join(dir, 'r.pem'), signer.pem);
  writeFileSync(join(dir, 'r.key'), signer.keyPem);
  const child = spawn('openssl', ['ocsp', '-index', join(dir, 'index.txt'), '-port', String(port), '-rsigner', join(dir, 'r.pem'), '-rkey', join(dir, 'r.key'), '-CA', join(dir, 'ca.pem'), '-nmin', '60', '-ignore_err'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  process.once('exit', () => child.kill('SIGKILL'));
  // Up when it answers a real request (a bare TCP probe wedges it).
  const req = await buildOcspRequest(parseCertificate(revoked.der), parseCertificate(clientCa.der));
  for (let i = 0; i < 100; i++) {
    if ((await fetchOcsp(`http://127.0.0.1:${port}/`, req.der, { timeoutMs: 2000, method: 'POST' })).ok) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`openssl ocsp did not come up: ${stderr}`);
}

interface Fixtures {
  /** What each client presents: its certificate chain and key, or nothing. */
  credentials: Record<Kind, ClientCredentials>;
  mapper: MapperConfig;
  checkers: Record<Setting, RevocationChecker | undefined>;
  forged: IssuedCertificate;
  forgedCa: IssuedCertificate;
}

let fixtures: Promise<Fixtures> | undefined;
let ocspChild: ChildProcess | undefined;
after(() => ocspChild?.kill('SIGKILL'));

function makeFixtures(): Promise<Fixtures> {
  fixtures ??= (async () => {
    const pki = await devPki();
    const clientCa = await loadIssuer(read(pki.clientCa), read(pki.clientCaKey));
    const root = await loadIssuer(read(pki.rootCa), read(pki.rootCaKey));
    const leaf = (commonName: string, issuer: IssuedCertificate, extra: { ocspUrl?: string } = {}) =>
      issueCertificate({ subject: { commonName, organization: 'certbound dev' }, issuer, extKeyUsage: [CLIENT_AUTH], ...extra });
    const ocspPort = await freePort();
    const revokedOcsp = await leaf('matrix-revoked-ocsp', clientCa, { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
    const revokedCrl = await leaf('matrix-revoked-crl', clientCa);
    const noData = await leaf('matrix-no-revocation-data', root);
    const denied = await leaf('matrix-denied', clientCa);
    // The forgery: a CA of its own under the client CA's name, and the valid client's name.
    const forgedCa = await issueCertificate({ subject: { commonName: 'certbound dev client CA', organization: 'certbound dev' }, ca: true });
    const forged = await issueCertificate({ subject: { commonName: 'dev-client', organization: 'certbound dev', organizationalUnit: 'users' }, issuer: forgedCa, extKeyUsage: [CLIENT_AUTH] });
    ocspChild = await opensslOcsp(clientCa, ocspPort, revokedOcsp);

    const file = (cert: string, key: string) => ({ cert: read(cert), key: read(key) });
    const issued = (c: IssuedCertificate, ...chain: IssuedCertificate[]) => ({ cert: c.pem + chain.map((x) => x.pem).join(''), key: c.keyPem });
    const credentials: Record<Kind, ClientCredentials> = {
      'valid': file(pki.client, pki.clientKey),
      'expired': file(pki.clientExpired, pki.clientExpiredKey),
      'untrusted root': { cert: read(pki.clientUntrusted) + read(pki.untrustedCa), key: read(pki.clientUntrustedKey) },
      'wrong usage': file(pki.clientWrongUsage, pki.clientWrongUsageKey),
      'revoked by CRL': issued(revokedCrl, clientCa),
      'revoked by OCSP': issued(revokedOcsp, clientCa),
      'no revocation data': issued(noData),
      'denied by the mapper': issued(denied, clientCa),
      'forged': issued(forged, forgedCa),
      'none': undefined,
    };
    const thumbprint = new X509Certificate(read(pki.client)).fingerprint;
    const mapper: MapperConfig = {
      oneToOne: [{ thumbprint, identity: 'alice' }],
      manyToOne: [
        { name: 'denied', rules: [{ field: 'subject', attribute: 'CN', match: 'matrix-denied' }], deny: true },
        { name: 'dev-client by name', rules: [{ field: 'subject', attribute: 'CN', match: 'dev-client' }, { field: 'issuer', attribute: 'CN', match: 'certbound dev client CA' }], identity: 'dev-client-by-name' },
        { name: 'dev org', rules: [{ field: 'issuer', attribute: 'O', match: 'certbound dev' }], identity: 'dev-org-member' },
      ],
    };
    const crl = await issueCrl({ issuer: clientCa, revoked: [revokedCrl] });
    const checker = (failMode: 'hard' | 'soft') => createRevocationChecker({ crls: [crl], fetchCrlDistributionPoints: false, failMode, urlRetrievalTimeoutMs: 5000 });
    return { credentials, mapper, checkers: { 'hard fail': checker('hard'), 'soft fail': checker('soft'), 'revocation off': undefined }, forged, forgedCa };
  })();
  return fixtures;
}

/** What the handlers answer: the decision they saw, in the shape the cells are made from. */
interface Seen { status?: string; hr?: string; authorized: boolean; reason: string; certFlagsName: string | null; identity: string | null }

const NOTHING: Seen = { authorized: false, reason: 'none', certFlagsName: null, identity: null };

function seenOf(cert: { authorized: boolean; reason: string; certFlags: number; identity: string | null } | null): Seen {
  return cert ? { authorized: cert.authorized, reason: cert.reason, certFlagsName: certStatusName(cert.certFlags) ?? String(cert.certFlags), identity: cert.identity } : NOTHING;
}

const nameOf = (table: Record<string, number>, value: number) => Object.entries(table).find(([, v]) => v === value)?.[0] ?? String(value);

function receiveSeen(r: ReceiveResult): Seen {
  const info = r.certInfo;
  return {
    status: nameOf(Win32, r.status),
    authorized: info?.authorized ?? false,
    reason: info?.reason ?? 'none',
    certFlagsName: info ? certStatusName(info.certFlags) ?? String(info.certFlags) : null,
    identity: info?.token ?? null,
  };
}

function decisionRoute(request: FastifyRequest): Seen {
  return seenOf(request.clientCertificate());
}

/** The routes of every path on a createServer app (beside the reference routes). */
function addRoutes(app: FastifyInstance): void {
  app.get('/plain', async (request) => decisionRoute(request));
  app.get('/required', { config: { clientCertificate: 'required' } }, async (request) => decisionRoute(request));
  app.post('/on-demand', { config: { clientCertificate: 'on-demand' } }, async (request) => decisionRoute(request));
  app.get('/receive/sync', async (request) => receiveSeen(receiveClientCertificate(request.server.certbound.queue, request.connectionId ?? 0n, 0, 65536)));
  app.get('/receive/overlapped', async (request) => {
    const ov = new Overlapped();
    const pending = receiveClientCertificate(request.server.certbound.queue, request.connectionId ?? 0n, 0, 65536, ov);
    if (pending !== Win32.ERROR_IO_PENDING) return receiveSeen({ status: pending, bytesReceived: 0 });
    return receiveSeen(await ov.result);
  });
  app.get('/receive/promise', async (request) => receiveSeen(await receiveClientCertificateAsync(request.server.certbound.queue, request.connectionId ?? 0n, 0, 65536)));
  app.get('/negotiate', async (request) => {
    const done = await negotiateClientCertificate(request);
    return { ...seenOf(done.certificate), authorized: done.authorized, hr: nameOf(HResult, done.hr) };
  });
}

/** The TLS options a plugin user gives fastify for each mode (docs/client-auth-modes.md, "The four modes"). */
const PLUGIN_TLS: Record<Mode, { requestCert: boolean; rejectUnauthorized: boolean }> = {
  'none': { requestCert: false, rejectUnauthorized: false },
  'optional': { requestCert: true, rejectUnauthorized: false },
  'require': { requestCert: true, rejectUnauthorized: true },
  'accept-untrusted': { requestCert: true, rejectUnauthorized: false },
};

async function pluginApp(mode: Mode, fx: Fixtures, checker: RevocationChecker | undefined): Promise<{ app: FastifyInstance; port: number }> {
  const pki = await devPki();
  const app = Fastify({ https: { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), ...PLUGIN_TLS[mode] } });
  await app.register(certboundPlugin, { clientAuth: mode, mapper: fx.mapper, ...(checker ? { revocation: checker } : {}) });
  app.get('/decorator', async (request) => decisionRoute(request));
  app.server.on('secureConnection', (socket: TLSSocket) => accepted.add(socket.remoteAddress ?? ''));
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app: app as unknown as FastifyInstance, port: (app.server.address() as AddressInfo).port };
}

// ---------------------------------------------------------------------------------------------
// The cells: run them, write each answer in the page's notation, check it and the decision.

interface Cell { setting: Setting; mode: Mode; server: ServerName; kind: Kind; path: PathSpec }

const REFUSAL_CODES: Record<string, string> = {
  CB_ERR_CLIENT_CERT_UNTRUSTED: 'UNTRUSTED',
  CB_ERR_CLIENT_CERT_DENIED: 'DENIED',
  CB_ERR_CLIENT_CERT_REQUIRED: 'REQUIRED',
  CB_ERR_NEGOTIATE_TLS13: 'TLS13',
};

/** Source addresses of the connections some server accepted (completed the handshake of). */
const accepted = new Set<string>();

/** The cell as the page writes it, and the decision the answer carried (if any). */
function notation(path: PathSpec, x: Exchange): { cell: string; seen: Seen | null; body: Record<string, unknown> | null } {
  if (x.status === null) {
    // Node checks the chain when the handshake is done and drops the connection (on TLS 1.3
    // the client has sent its request by then): refused means no server ever accepted it.
    return { cell: accepted.has(x.address) ? `no answer (${x.error ?? '?'})` : 'TLS refused', seen: null, body: null };
  }
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(x.body) as Record<string, unknown>;
  } catch {
    return { cell: `${x.status} (not JSON)`, seen: null, body: null };
  }
  if (x.status === 403) return { cell: `403 ${REFUSAL_CODES[String(body.code)] ?? String(body.code)}`, seen: null, body };
  if (x.status !== 200) return { cell: `${x.status} ${String(body.code ?? '')}`.trim(), seen: null, body };
  let seen: Seen;
  if (path.kind === 'connection' || path.kind === 'whoami') {
    // The reference routes: /connection nests the certificate, /whoami spreads it.
    const c = (path.kind === 'connection' ? body.clientCertificate : body) as Partial<Seen> | null;
    seen = c?.reason ? { authorized: c.authorized ?? false, reason: c.reason, certFlagsName: c.certFlagsName ?? null, identity: c.identity ?? null } : NOTHING;
  } else {
    seen = body as unknown as Seen;
  }
  switch (path.kind) {
    case 'receive': {
      const status = (seen.status ?? '?').replace(/^ERROR_/, '');
      return { cell: status === 'NO_ERROR' ? `NO_ERROR ${seen.reason}` : status, seen, body };
    }
    case 'negotiate':
      return { cell: seen.hr === 'S_OK' ? `S_OK ${seen.reason}` : seen.hr ?? '?', seen, body };
    default:
      return { cell: `200 ${seen.reason}`, seen, body };
  }
}

/** What is wrong with one cell's answer (nothing when it holds). */
function check(c: Cell, x: Exchange, want: Expectations, checked: Set<string>): string[] {
  const onPlugin = 'plugin' in c.path;
  const expected = want.cell(c.setting, c.mode, c.server, c.kind, c.path);
  const got = notation(c.path, x);
  const problems: string[] = [];
  if (got.cell !== expected) problems.push(`expected ${expected}, got ${got.cell}${x.body ? ` ${x.body.slice(0, 240)}` : ''}`);
  if (x.status !== null) {
    const protocol = 'tls12' in c.path || c.server === 'twin' ? 'TLSv1.2' : 'TLSv1.3';
    if (x.protocol !== protocol) problems.push(`protocol ${x.protocol}, expected ${protocol}${onPlugin ? ' (plugin app)' : ''}`);
  }
  // The decision behind the cell: its certFlags and identity are those of "The certificates"
  // (an identity only on an authorized certificate: a forged one never gets one).
  const decision = want.decision(c.setting, c.kind);
  if (got.seen && got.seen.reason !== 'none') {
    const flags = got.seen.certFlagsName;
    if (got.seen.reason !== decision.reason || flags !== decision.certFlagsName || got.seen.identity !== decision.identity) {
      problems.push(`decision ${got.seen.reason} / ${flags} / ${got.seen.identity ?? '-'}, expected ${decision.reason} / ${decision.certFlagsName} / ${decision.identity ?? '-'}`);
    }
    checked.add(`${c.setting}|${c.kind}`);
  } else if (got.seen && c.kind === 'none') {
    checked.add(`${c.setting}|${c.kind}`);
  }
  // `authorized` says the same as `reason`, on every API.
  if (got.seen && got.seen.authorized !== (got.seen.reason === 'authorized')) {
    problems.push(`authorized ${String(got.seen.authorized)} with reason ${got.seen.reason}`);
  }
  if (got.cell === '403 UNTRUSTED' && got.body?.certFlagsName !== decision.certFlagsName) {
    problems.push(`403 with certFlagsName ${String(got.body?.certFlagsName)}, expected ${decision.certFlagsName}`);
  }
  // `require` ends the connection after every refusal; other modes keep it.
  if (x.status === 403 && (x.headers.connection === 'close') !== (c.mode === 'require')) {
    problems.push(`403 with connection: ${x.headers.connection ?? '(none)'} in ${c.mode}`);
  }
  return problems.map((p) => `${c.setting} | ${c.mode} | ${c.server} | ${c.kind} | ${c.path.column}: ${p}`);
}

/** Runs `jobs` with at most `limit` in flight. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await (jobs[i] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return out;
}

interface Running { createServer: Started; plugin: { app: FastifyInstance; port: number } }

/**
 * The connections of one mode, server and certificate: the paths that cannot negotiate share
 * one keep-alive connection (a new one after the server closes it); every other path gets its own.
 */
function connectionJobs(setting: Setting, mode: Mode, server: ServerName, kind: Kind, running: Running, clients: ClientThread): (() => Promise<[Cell, Exchange][]>)[] {
  const shared = PATHS.filter((p) => 'shared' in p);
  const alone = PATHS.filter((p) => !('shared' in p));
  return [shared, ...alone.map((p) => [p])].map((paths) => async () => {
    const first = paths[0] as PathSpec;
    const onPlugin = 'plugin' in first;
    const exchanges = await clients.run({
      port: onPlugin ? running.plugin.port : running.createServer.port,
      servername: server === 'twin' && !onPlugin ? 'twin.localhost' : 'localhost',
      credentials: kind,
      maxVersion: 'tls12' in first || (onPlugin && server === 'twin') ? 'TLSv1.2' : 'TLSv1.3',
      requests: paths.map((p) => ({ method: p.method, url: p.url })),
    });
    return paths.map((path, i): [Cell, Exchange] => [{ setting, mode, server, kind, path }, exchanges[i] as Exchange]);
  });
}

// ---------------------------------------------------------------------------------------------

const CONCURRENCY = 16;
let cellsRun = 0;
let clientThread: ClientThread | undefined;
const clients = async (): Promise<ClientThread> => (clientThread ??= new ClientThread((await makeFixtures()).credentials));
after(() => clientThread?.close());

test('the page has a cell for every mode, server, certificate and path, in the notation it explains', () => {
  const want = readExpectations();
  const notations = /^(200 (authorized|untrusted|revoked|revocation-unknown|denied-by-mapper|none)|403 (UNTRUSTED|DENIED|REQUIRED|TLS13)|TLS refused|NO_ERROR \S+|NOT_FOUND|NOT_SUPPORTED|S_OK \S+|E_NOT_SUPPORTED)$/;
  for (const setting of SETTINGS) {
    for (const mode of MODES) {
      for (const server of SERVERS) {
        for (const kind of KINDS) {
          for (const path of PATHS) assert.match(want.cell(setting, mode, server, kind, path), notations, `${setting} ${mode} ${server} ${kind} ${path.column}`);
          want.decision(setting, kind);
        }
      }
    }
  }
});

test('the mapper would map the forged certificate by name if its chain were claimed verified: only the chain verdict keeps it out', async () => {
  const fx = await makeFixtures();
  const x = new X509Certificate(fx.forged.der);
  const input = { sha1: '', sha256: '', subject: x.subject, issuer: x.issuer, serialNumber: x.serialNumber, certFlags: 0, der: fx.forged.der };
  assert.equal(compileMapper(fx.mapper)({ ...input, chain: [fx.forged.der, fx.forgedCa.der] }).identity, 'dev-client-by-name');
  assert.equal(compileMapper(fx.mapper)(input).identity, null, 'without the chain an issuer rule cannot be told');
});

for (const setting of SETTINGS) {
  test(`matrix, ${setting}: every mode × certificate × path on the main server and its twin`, async (t) => {
    const want = readExpectations();
    const fx = await makeFixtures();
    const checker = fx.checkers[setting];
    const running = new Map<Mode, Running>();
    t.after(async () => {
      for (const r of running.values()) await Promise.all([r.createServer.server.close(), r.plugin.app.close()]);
    });
    // The registry logs every connection whose handshake a listener (main or twin) accepted.
    const logger = pino({ level: 'debug' }, {
      write(line: string) {
        if (line.includes('"msg":"connection"')) accepted.add((JSON.parse(line) as { remoteAddress: string }).remoteAddress);
      },
    });
    for (const mode of MODES) {
      const createServer = await startServer(undefined, mode, {
        mapper: fx.mapper,
        onDemandHosts: ['twin.localhost'],
        underPressure: false,
        negotiationTimeout: 5000,
        logger,
        fastify: { disableRequestLogging: true },
        ...(checker ? { revocation: checker } : {}),
      }, (s) => addRoutes(s.app));
      running.set(mode, { createServer, plugin: await pluginApp(mode, fx, checker) });
    }
    const thread = await clients();
    const jobs = MODES.flatMap((mode) => SERVERS.flatMap((server) => KINDS.flatMap((kind) => connectionJobs(setting, mode, server, kind, running.get(mode) as Running, thread))));
    const answers = (await pool(jobs, CONCURRENCY)).flat();
    assert.equal(answers.length, MODES.length * SERVERS.length * KINDS.length * PATHS.length);
    cellsRun += answers.length;
    const checked = new Set<string>();
    const problems = answers.map(([cell, x]) => ({ mode: cell.mode, problems: check(cell, x, want, checked) }));
    for (const mode of MODES) {
      await t.test(mode, () => {
        const found = problems.filter((p) => p.mode === mode).flatMap((p) => p.problems);
        assert.deepEqual(found, [], `${found.length} cells differ from docs/client-auth-modes.md:\n${found.join('\n')}`);
      });
    }
    await t.test('every certificate\'s decision was seen', () => {
      for (const kind of KINDS) assert.ok(checked.has(`${setting}|${kind}`), `${kind}: no answer carried its decision`);
    });
  });
}

test('cells run', () => {
  assert.equal(cellsRun, SETTINGS.length * MODES.length * SERVERS.length * KINDS.length * PATHS.length);
  console.log(`# trust matrix: ${cellsRun} cells over ${clientThread?.connections ?? 0} connections`);
});
