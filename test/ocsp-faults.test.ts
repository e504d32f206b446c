// Bad responders, each a small node http server on 127.0.0.1: none crashes the stapler, none
// gets stapled, and the last good staple keeps serving while it is valid (a revoked answer
// drops it). Plus: a restart staples from the persisted response while the responder is down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeFileSync, readdirSync } from 'node:fs';
import { pino } from 'pino';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { buildOcspResponse, errorOcspResponse, issueResponderCertificate, startDevOcspResponder, type SingleAnswer } from '../src/ocsp/responder.js';
import { certIdFor, parseCertificate } from '../src/ocsp/request.js';
import * as asn1js from 'asn1js';
import { pkijs } from '../src/tls/pkijs-engine.js';
import {
  closeServerOcspResponse, getServerOcspResponseContext, openServerOcspResponse, OcspHandleStatus, type OcspTimers, type OcspUpdate,
  type ServerOcspResponseHandle,
} from '../src/ocsp/handle.js';
import { createStapler } from '../src/ocsp/stapler.js';
import type { OcspRefusal } from '../src/ocsp/validate.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

/** Timers that never fire: these tests drive each retrieval themselves. */
const inertTimers: OcspTimers = { setTimeout: () => ({}), clearTimeout: () => {} };
const settings = { SrvOcspRespUrlRetrievalTimeoutMilliseconds: 400 };

async function faultServer(t: { after(fn: () => unknown): void }): Promise<{ url: string; set(h: Handler): void }> {
  let handler: Handler = (_req, res) => { res.writeHead(500).end(); };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => { void Promise.resolve(handler(req, res)).catch(() => res.destroy()); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, set: (h) => { handler = h; } };
}

const ocsp = (body: Buffer): Handler => (_req, res) => { res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body); };

test('every fault: refused, logged, counted, never stapled; the last good staple keeps serving', async (t) => {
  const ca = await issueCertificate({ subject: { commonName: 'faults CA' }, ca: true });
  const otherCa = await issueCertificate({ subject: { commonName: 'faults CA' }, ca: true }); // same name, other key
  const signer = await issueResponderCertificate(ca);
  const noSigning = await issueResponderCertificate(ca, { ocspSigning: false });
  const foreignSigner = await issueResponderCertificate(otherCa);
  const expiredSigner = await issueResponderCertificate(ca, { notBefore: new Date(Date.now() - 2 * 86400_000), notAfter: new Date(Date.now() - 86400_000) });
  const faults = await faultServer(t);
  const leaf = await issueCertificate({ subject: { commonName: 'faults.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: faults.url });
  const other = await issueCertificate({ subject: { commonName: 'other.test' }, issuer: ca, extKeyUsage: [OID.serverAuth] });
  const certId = await certIdFor(parseCertificate(leaf.der), parseCertificate(ca.der));
  const otherId = await certIdFor(parseCertificate(other.der), parseCertificate(ca.der));
  const now = Date.now();
  const H = 3600_000;
  const answer = (a: Partial<SingleAnswer> = {}): SingleAnswer => ({ certId, status: 'good', thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 2 * H), ...a });
  const signed = (a: Partial<SingleAnswer> = {}, s: IssuedCertificate = signer) => buildOcspResponse({ signer: s, responses: [answer(a)] });
  // A good response whose BasicOCSPResponse is followed by bytes inside responseBytes (outside the signed part).
  const innerTrailing = async (): Promise<Buffer> => {
    const outer = pkijs.OCSPResponse.fromBER(await signed());
    const basic = new Uint8Array(outer.responseBytes?.response.valueBlock.valueHexView ?? []);
    const padded = Buffer.concat([basic, Buffer.alloc(8)]);
    outer.responseBytes = new pkijs.ResponseBytes({ responseType: outer.responseBytes?.responseType ?? '', response: new asn1js.OctetString({ valueHex: new Uint8Array(padded).buffer }) });
    return Buffer.from(outer.toSchema().toBER(false));
  };

  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _e, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } }));

  // A good staple first.
  faults.set(ocsp(await signed()));
  const updates: OcspUpdate[] = [];
  const opened = await openServerOcspResponse([leaf.der, ca.der], 0, { settings, timers: inertTimers, logger, onUpdate: (u) => updates.push(u) });
  const handle = opened.handle as ServerOcspResponseHandle;
  t.after(() => closeServerOcspResponse(handle));
  const goodDer = getServerOcspResponseContext(handle).context?.encodedOcspResponse;
  assert.ok(goodDer);

  const refusedPort = await freePort();
  const cases: Array<[string, OcspRefusal, Handler | 'refused']> = [
    ['connection refused', 'fetch-refused', 'refused'],
    ['down (connection reset)', 'fetch-network', (req) => { req.socket.destroy(); }],
    ['HTTP 503', 'fetch-http-status', (_req, res) => { res.writeHead(503).end('busy'); }],
    ['hanging past the timeout', 'fetch-timeout', () => { /* never answers */ }],
    ['garbage', 'malformed', (_req, res) => { res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(Buffer.from('\x30\x82\xff\xffgarbage')); }],
    ['a good response followed by bytes', 'malformed', ocsp(Buffer.concat([await signed(), Buffer.alloc(16)]))],
    ['a good BasicOCSPResponse followed by bytes inside responseBytes', 'malformed', ocsp(await innerTrailing())],
    ['HTML page', 'fetch-content-type', (_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>'); }],
    ['HTML served as OCSP', 'malformed', (_req, res) => { res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end('<html>maintenance</html>'); }],
    ['tryLater', 'status-try-later', ocsp(errorOcspResponse(3))],
    ['unauthorized', 'status-unauthorized', ocsp(errorOcspResponse(6))],
    ['internalError', 'status-internal-error', ocsp(errorOcspResponse(2))],
    ['wrongly signed (issuer name, another key)', 'bad-signature', ocsp(await signed({}, { ...ca, privateKey: otherCa.privateKey }))],
    ['responder certificate without id-kp-OCSPSigning', 'responder-no-ocsp-signing', ocsp(await signed({}, noSigning))],
    ['responder certificate from another CA', 'responder-not-authorized', ocsp(await signed({}, foreignSigner))],
    ['responder certificate expired', 'responder-expired', ocsp(await signed({}, expiredSigner))],
    ['another serial', 'certid-mismatch', ocsp(await signed({ certId: otherId }))],
    ['expired (nextUpdate passed)', 'expired', ocsp(await signed({ thisUpdate: new Date(now - 3 * H), nextUpdate: new Date(now - H) }))],
    ['no nextUpdate', 'no-next-update', ocsp(await buildOcspResponse({ signer, responses: [{ certId, status: 'good', thisUpdate: new Date(now) }] }))],
    ['thisUpdate in the future', 'this-update-in-future', ocsp(await signed({ thisUpdate: new Date(now + H) }))],
    ['valid for less than SrvOcspRespMinValiditySeconds', 'shorter-than-min-validity', ocsp(await signed({ nextUpdate: new Date(now + 5 * 60_000) }))],
    ['unknown', 'cert-unknown', ocsp(await signed({ status: 'unknown' }))],
    // Last: a revoked answer also drops the good staple.
    ['revoked', 'cert-revoked', ocsp(await signed({ status: 'revoked', revocationTime: new Date(now - H) }))],
  ];

  for (const [name, reason, handler] of cases) {
    const url = handler === 'refused' ? `http://127.0.0.1:${refusedPort}/` : faults.url;
    if (handler !== 'refused') faults.set(handler);
    const target = handler === 'refused'
      ? await issueCertificate({ subject: { commonName: 'refused.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: url })
      : leaf;

    // 1) A fresh handle against the fault: a handle, but nothing to staple.
    const fresh = await openServerOcspResponse([target.der, ca.der], 0, { settings, timers: inertTimers });
    assert.equal(fresh.status, 0, name);
    assert.ok(fresh.handle);
    assert.equal(getServerOcspResponseContext(fresh.handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE, `${name}: nothing stapled`);
    assert.equal(fresh.handle.state().lastReason, reason, name);
    closeServerOcspResponse(fresh.handle);

    // 2) The handle that holds a good staple keeps serving it (except after 'revoked').
    if (handler === 'refused') continue;
    const before = updates.length;
    await handle.refresh();
    const u = updates.at(-1);
    assert.equal(updates.length, before + 1, `${name}: one update`);
    assert.equal(u?.reason, reason, name);
    assert.equal(u?.outcome, reason.startsWith('fetch-') ? 'failed' : 'refused', name);
    const ctx = getServerOcspResponseContext(handle);
    if (reason === 'cert-revoked') {
      assert.equal(ctx.status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE, 'revoked: the old good staple is dropped');
      assert.equal(handle.state().certStatus, 'revoked');
    } else {
      assert.equal(ctx.status, 0, `${name}: still serving`);
      assert.ok(ctx.context?.encodedOcspResponse.equals(goodDer), `${name}: the same good staple`);
    }
  }
  // One log line per update, stable keys, the level telling the outcome.
  assert.equal(lines.length, updates.length);
  const keys = Object.keys(updates[0] as object).sort();
  for (const l of lines) {
    assert.equal(l.event, 'ocsp-update');
    for (const k of keys) assert.ok(k in l, `log line has ${k}`);
  }
  assert.equal(lines.at(-1)?.level, 50, 'revoked is an error line');
  assert.equal(lines.at(-2)?.level, 40, 'other refusals are warnings');
  assert.equal(lines[0]?.level, 30, 'a stapled update is info');
  // Retries were armed with growing delays, never below the floor.
  assert.ok(updates.every((u) => u.nextRefresh !== null));
});

test('restart: the persisted response staples from the first handshake while the responder is down', async (t) => {
  const dir = tempDir('certbound-ocsp-restart-');
  const cacheDir = join(dir, 'staples');
  const ca = await issueCertificate({ subject: { commonName: 'restart CA' }, ca: true });
  const port = await freePort();
  const responder = await startDevOcspResponder({ issuer: ca, responder: await issueResponderCertificate(ca), port, validityMinutes: 24 * 60 });
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });

  const first = createStapler({ cacheDir });
  assert.equal((await first.add([leaf.der, ca.der]))?.stapled, true);
  await first.close();
  await responder.close();
  assert.equal(readdirSync(cacheDir).filter((f) => f.endsWith('.ocsp')).length, 1, 'persisted');

  const updates: OcspUpdate[] = [];
  const second = createStapler({ cacheDir });
  t.after(() => second.close());
  second.on('update', (u) => updates.push(u));
  const state = await second.add([leaf.der, ca.der]);
  assert.equal(state?.stapled, true);
  assert.deepEqual(updates.map((u) => u.outcome), ['loaded'], 'no retrieval: the response is not due yet');
  assert.equal(updates[0]?.rule, 'before-window');

  const server = https.createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem }, (_req, res) => res.end('ok'));
  second.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${(server.address() as AddressInfo).port}`, '-servername', 'localhost', '-status', '-CAfile', join(dir, 'ca.pem')], { timeoutMs: 10_000 });
  assert.match(r.stdout, /OCSP Response Status: successful/);
  assert.match(r.stdout, /Cert Status: good/);

  // A persisted file that does not verify is dropped, never served.
  const third = createStapler({ cacheDir: join(dir, 'tampered') });
  t.after(() => third.close());
  const fp = second.states()[0]?.fingerprint as string;
  await import('node:fs/promises').then((fs) => fs.mkdir(join(dir, 'tampered')).then(() => fs.writeFile(join(dir, 'tampered', `${fp}.ocsp`), errorOcspResponse(3))));
  const st = await third.add([leaf.der, ca.der]);
  assert.equal(st?.stapled, false);
  assert.equal(st?.lastReason, 'fetch-refused', 'it then tried the (down) responder');
  assert.deepEqual(readdirSync(join(dir, 'tampered')), [], 'the bad file was removed');
});
