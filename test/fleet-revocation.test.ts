// Fleet mode of the client-certificate revocation checker: two checkers with two fleets on one
// real redis-server stand in for two machines. One retrieval serves both (OCSP good and revoked,
// a fetched CRL), a document tampered with or swapped in Redis is refused, logged and replaced,
// and with Redis stopped each machine retrieves on its own. Real dev OCSP responder and a real
// HTTP CRL server on loopback, counting their requests.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { CertStatus } from '../src/status.js';
import { buildCrl, startDevOcspResponder } from '../src/ocsp/responder.js';
import { parseCertificate, serialHex } from '../src/ocsp/request.js';
import { verifyOcspResponse } from '../src/ocsp/validate.js';
import { createRevocationChecker, parseCrls, type RevocationChecker, type RevocationResult } from '../src/ocsp/revocation.js';
import { createFleet, type Fleet } from '../src/fleet/fleet.js';
import { urlId } from '../src/fleet/fleet-rules.js';
import { redisCall, startRedis } from './helpers/redis.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** The fleet id of a client certificate's OCSP response: the leaf and its issuer. */
const ocspId = (leaf: IssuedCertificate, issuer: IssuedCertificate) => `${sha256(leaf.der)}.${sha256(issuer.der).slice(0, 16)}`;
const brief = (r: RevocationResult) => ({ certFlags: r.certFlags, source: r.source, fromCache: r.fromCache, reason: r.reason });

/** The bulk-string reply of HGET (raw RESP), or undefined for a nil reply. */
async function hgetDer(port: number, key: string): Promise<Buffer | undefined> {
  const v = await redisCall(port, 'HGET', key, 'der');
  return Buffer.isBuffer(v) ? v : undefined;
}

/** Fields of a hash as raw bytes. */
async function hgetFields(port: number, key: string, fields: string[]): Promise<Array<Buffer | undefined>> {
  const v = await redisCall(port, 'HMGET', key, ...fields);
  return Array.isArray(v) ? v.map((x) => (Buffer.isBuffer(x) ? x : undefined)) : [];
}

/** A CRL distribution point on loopback: serves `body`, counts its requests; closed after the test. */
async function crlPoint(t: TestContext, name: string): Promise<{ url: string; body: Buffer; requests: number }> {
  const point = { url: '', body: Buffer.alloc(0), requests: 0 };
  const server = http.createServer((_req, res) => { point.requests++; res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(point.body); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  point.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${name}`;
  return point;
}

interface Machine { checker: RevocationChecker; fleet: Fleet; warns: Array<Record<string, unknown>> }

test('two machines share the signed OCSP responses and CRLs: one retrieval, each verified locally', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const ca = await issueCertificate({ subject: { commonName: 'fleet revocation CA' }, ca: true });
  const otherCa = await issueCertificate({ subject: { commonName: 'fleet revocation CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, validityMinutes: 60 });
  t.after(() => responder.close());
  const crl = await crlPoint(t, 'ca.crl');
  const crlUrl = crl.url;

  const client = (cn: string, extra: { ocspUrl?: string; crlUrl?: string }) => issueCertificate({ subject: { commonName: cn }, issuer: ca, extKeyUsage: [OID.clientAuth], ...extra });
  const good = await client('fleet-good', { ocspUrl: responder.url });
  const revoked = await client('fleet-revoked', { ocspUrl: responder.url });
  const together = await client('fleet-together', { ocspUrl: responder.url });
  const alone = await client('fleet-alone', { ocspUrl: responder.url });
  const crlGood = await client('fleet-crl-good', { crlUrl });
  const crlRevoked = await client('fleet-crl-revoked', { crlUrl });
  responder.revoke(serialHex(revoked.certificate));
  crl.body = await buildCrl({ issuer: ca, revoked: [{ serialHex: serialHex(crlRevoked.certificate) }] });

  const machine = async (name: string): Promise<Machine> => {
    const warns: Array<Record<string, unknown>> = [];
    const fleet = createFleet({ url: redis.url, secret: 'fleet revocation test secret, 48 bytes long....', machine: name, tickets: false, commandTimeoutMs: 500, logger: { info: () => {}, error: () => {}, warn: (obj) => { warns.push(obj as Record<string, unknown>); } } });
    t.after(() => fleet.close());
    await fleet.start();
    assert.equal(fleet.status().state, 'connected');
    const checker = createRevocationChecker({ fleet, urlRetrievalTimeoutMs: 3000, logger: { warn: (obj) => { warns.push(obj as Record<string, unknown>); } } });
    return { checker, fleet, warns };
  };
  const a = await machine('machine-a');
  const b = await machine('machine-b');

  // (a) A retrieves and publishes; B takes A's signed response: no request of its own, same answer.
  const aGood = await a.checker.check([good.der, ca.der]);
  assert.deepEqual(brief(aGood), { certFlags: 0, source: 'ocsp', fromCache: false, reason: null });
  assert.equal(responder.requests, 1);
  const bGood = await b.checker.check([good.der, ca.der]);
  assert.deepEqual(brief(bGood), { certFlags: 0, source: 'ocsp', fromCache: true, reason: null });
  assert.equal(bGood.nextUpdate, aGood.nextUpdate);
  assert.equal(responder.requests, 1, 'B asked no responder');
  assert.deepEqual([a.fleet.counters().published, b.fleet.counters().published, b.fleet.counters().leads], [1, 0, 0]);
  const storedGood = await hgetDer(redis.port, `certbound:ocsp:${ocspId(good, ca)}`);
  assert.ok(storedGood, 'the signed response is in Redis under <ns>:ocsp:<leaf>.<issuer>');
  const parsed = { cert: parseCertificate(good.der), issuer: parseCertificate(ca.der) };
  assert.equal((await verifyOcspResponse(storedGood, { ...parsed, now: Date.now() })).ok, true);

  // (b) Revoked: A retrieves, B gets CERT_E_REVOKED from A's response.
  const aRevoked = await a.checker.check([revoked.der, ca.der]);
  assert.deepEqual(brief(aRevoked), { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: false, reason: null });
  const bRevoked = await b.checker.check([revoked.der, ca.der]);
  assert.deepEqual(brief(bRevoked), { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: true, reason: null });
  assert.equal(bRevoked.revocationTime, aRevoked.revocationTime);
  assert.equal(responder.requests, 2);

  // Both at once: one holds the lock and retrieves, the other waits for its response.
  const [ta, tb] = await Promise.all([a.checker.check([together.der, ca.der]), b.checker.check([together.der, ca.der])]);
  assert.deepEqual([ta.certFlags, tb.certFlags, ta.source, tb.source], [0, 0, 'ocsp', 'ocsp']);
  assert.deepEqual([ta.fromCache, tb.fromCache].sort(), [false, true]);
  assert.equal(responder.requests, 3);

  // (c) Garbage in Redis (without the fleet's MAC): B does not read it (one warn line), retrieves itself, and its verified response replaces it.
  b.checker.clear();
  assert.equal(await redis.command('HSET', `certbound:ocsp:${ocspId(good, ca)}`, 'der', 'garbage'), 0);
  const bAfterGarbage = await b.checker.check([good.der, ca.der]);
  assert.deepEqual(brief(bAfterGarbage), { certFlags: 0, source: 'ocsp', fromCache: false, reason: null });
  assert.equal(responder.requests, 4);
  assert.deepEqual(b.warns.map((w) => [w.event, w.outcome, w.kind, w.reason, w.id]), [['fleet-document', 'refused', 'ocsp', 'mac', ocspId(good, ca)]]);
  const replaced = await hgetDer(redis.port, `certbound:ocsp:${ocspId(good, ca)}`);
  assert.ok(replaced && (await verifyOcspResponse(replaced, { ...parsed, now: Date.now() })).ok, 'B stored its verified response over the garbage');

  // A genuine "good" response of another certificate put under the revoked one's id, with that
  // document's own MAC and time (a Redis writer copies a whole document): the MAC binds the id, so
  // it is not read, and the revoked certificate never passes.
  b.checker.clear();
  const goodDoc = await hgetFields(redis.port, `certbound:ocsp:${ocspId(good, ca)}`, ['storedAt', 'mac']);
  await redisCall(redis.port, 'HSET', `certbound:ocsp:${ocspId(revoked, ca)}`, 'der', replaced, 'storedAt', goodDoc[0] as Buffer, 'mac', goodDoc[1] as Buffer);
  const bSwapped = await b.checker.check([revoked.der, ca.der]);
  assert.deepEqual(brief(bSwapped), { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: false, reason: null });
  assert.equal(responder.requests, 5);
  assert.equal(b.warns.length, 2);
  assert.deepEqual([b.warns[1]?.outcome, b.warns[1]?.kind, b.warns[1]?.reason, b.warns[1]?.id], ['refused', 'ocsp', 'mac', ocspId(revoked, ca)]);
  // A (its own cache cleared) now takes B's replacement without a request.
  a.checker.clear();
  assert.deepEqual(brief(await a.checker.check([revoked.der, ca.der])), { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: true, reason: null });
  assert.equal(responder.requests, 5);
  assert.equal(a.warns.length, 0);

  // (e) CRL distribution point: one fetch serves both machines, for both certificates.
  const crlA = await a.checker.check([crlGood.der, ca.der]);
  assert.deepEqual(brief(crlA), { certFlags: 0, source: 'crl', fromCache: false, reason: null });
  assert.equal(crl.requests, 1);
  assert.deepEqual(brief(await b.checker.check([crlGood.der, ca.der])), { certFlags: 0, source: 'crl', fromCache: true, reason: null });
  assert.deepEqual(brief(await b.checker.check([crlRevoked.der, ca.der])), { certFlags: CertStatus.CERT_E_REVOKED, source: 'crl', fromCache: true, reason: null });
  assert.equal(crl.requests, 1);
  const storedCrl = await hgetDer(redis.port, `certbound:crl:${urlId(crlUrl)}`);
  assert.ok(storedCrl?.equals(crl.body), 'the raw fetched CRL bytes are in Redis');
  // A CRL signed by another CA (same name) swapped in, without the fleet's MAC: not read, fetched again, and replaced.
  const foreign = await buildCrl({ issuer: otherCa });
  assert.equal(parseCrls(foreign).length, 1);
  await redisCall(redis.port, 'HSET', `certbound:crl:${urlId(crlUrl)}`, 'der', foreign);
  a.checker.clear();
  assert.deepEqual(brief(await a.checker.check([crlRevoked.der, ca.der])), { certFlags: CertStatus.CERT_E_REVOKED, source: 'crl', fromCache: false, reason: null });
  assert.equal(crl.requests, 2);
  assert.deepEqual(a.warns.map((w) => [w.event, w.outcome, w.kind, w.reason]), [['fleet-document', 'refused', 'crl', 'mac']]);
  assert.ok((await hgetDer(redis.port, `certbound:crl:${urlId(crlUrl)}`))?.equals(crl.body));

  // (d) Redis stopped: each machine retrieves on its own, with exact answers.
  await redis.stop();
  const deadline = Date.now() + 5000;
  while ((a.fleet.connected() || b.fleet.connected()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual([a.fleet.status().state, b.fleet.status().state], ['degraded', 'degraded']);
  const before = responder.requests;
  assert.deepEqual(brief(await a.checker.check([alone.der, ca.der])), { certFlags: 0, source: 'ocsp', fromCache: false, reason: null });
  assert.deepEqual(brief(await b.checker.check([alone.der, ca.der])), { certFlags: 0, source: 'ocsp', fromCache: false, reason: null });
  b.checker.clear();
  assert.deepEqual(brief(await b.checker.check([revoked.der, ca.der])), { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: false, reason: null });
  assert.equal(responder.requests, before + 3);
});

test('a client certificate\'s OCSP response or CRL read from the fleet is used for at most an hour after it was stored, however long it is valid: then the CA is asked and its "revoked" holds', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  // One clock for both machines and their fleets; responses and CRLs valid for a week.
  let clock = Date.now();
  const now = () => clock;
  const ca = await issueCertificate({ subject: { commonName: 'fleet hour CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, validityMinutes: 7 * 24 * 60 });
  t.after(() => responder.close());
  const crl = await crlPoint(t, 'hour.crl');
  const crlUrl = crl.url;
  const byOcsp = await issueCertificate({ subject: { commonName: 'hour-ocsp' }, issuer: ca, extKeyUsage: [OID.clientAuth], ocspUrl: responder.url });
  const byCrl = await issueCertificate({ subject: { commonName: 'hour-crl' }, issuer: ca, extKeyUsage: [OID.clientAuth], crlUrl });
  const week = 7 * 24 * 3_600_000;
  crl.body = await buildCrl({ issuer: ca, thisUpdate: new Date(clock - 60_000), nextUpdate: new Date(clock + week) });
  const machine = async (name: string) => {
    const fleet = createFleet({ url: redis.url, secret: 'fleet hour test secret, at least 32 bytes long', machine: name, tickets: false, now });
    t.after(() => fleet.close());
    await fleet.start();
    return createRevocationChecker({ fleet, now, urlRetrievalTimeoutMs: 3000 });
  };
  const a = await machine('hour-a');
  const b = await machine('hour-b');
  // A asks the CA (good) and stores; ten minutes later B takes A's documents without asking.
  assert.deepEqual([brief(await a.check([byOcsp.der, ca.der])), brief(await a.check([byCrl.der, ca.der]))], [
    { certFlags: 0, source: 'ocsp', fromCache: false, reason: null }, { certFlags: 0, source: 'crl', fromCache: false, reason: null }]);
  assert.deepEqual([responder.requests, crl.requests], [1, 1]);
  const stored = await hgetFields(redis.port, `certbound:ocsp:${ocspId(byOcsp, ca)}`, ['der', 'storedAt', 'mac']);
  clock += 10 * 60_000;
  assert.deepEqual([brief(await b.check([byOcsp.der, ca.der])), brief(await b.check([byCrl.der, ca.der]))], [
    { certFlags: 0, source: 'ocsp', fromCache: true, reason: null }, { certFlags: 0, source: 'crl', fromCache: true, reason: null }]);
  assert.deepEqual([responder.requests, crl.requests], [1, 1]);
  // Both are revoked at the CA. B's copies, read ten minutes after they were stored, are still
  // used within the hour (the documented bound: fleetRevocationMaxAgeMs)…
  responder.revoke(serialHex(byOcsp.certificate));
  crl.body = await buildCrl({ issuer: ca, revoked: [{ serialHex: serialHex(byCrl.certificate) }], thisUpdate: new Date(clock - 60_000), nextUpdate: new Date(clock + week) });
  clock += 40 * 60_000;
  assert.deepEqual([(await b.check([byOcsp.der, ca.der])).certFlags, (await b.check([byCrl.der, ca.der])).certFlags], [0, 0]);
  // …and not after it, though they are valid for a week: B asks the CA, and the revocation holds.
  clock += 11 * 60_000;
  assert.deepEqual([brief(await b.check([byOcsp.der, ca.der])), brief(await b.check([byCrl.der, ca.der]))], [
    { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: false, reason: null }, { certFlags: CertStatus.CERT_E_REVOKED, source: 'crl', fromCache: false, reason: null }]);
  assert.deepEqual([responder.requests, crl.requests], [2, 2]);
  // The old "good" put back (a Redis writer replays the whole document, MAC and time): a new machine does not take it.
  await redisCall(redis.port, 'DEL', `certbound:ocsp:${ocspId(byOcsp, ca)}`);
  await redisCall(redis.port, 'HSET', `certbound:ocsp:${ocspId(byOcsp, ca)}`, 'der', stored[0] as Buffer, 'storedAt', stored[1] as Buffer, 'mac', stored[2] as Buffer);
  const c = await machine('hour-c');
  assert.deepEqual(brief(await c.check([byOcsp.der, ca.der])), { certFlags: CertStatus.CERT_E_REVOKED, source: 'ocsp', fromCache: false, reason: null });
});
