// Staples in a fleet against someone who can write to Redis (docs/fleet.md "Tampered data"):
// a CA-signed response put there without the fleet's MAC is never read; after the CA said
// "revoked", an older "good" (a replay, or a stale cache) never brings the staple back; a lock
// left without an expiry, and a fencing counter set out of range, heal within the lock's expiry.
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { issueCertificate, OID } from '../src/tls/cert-builder.js';
import { buildOcspResponse, type SingleAnswer } from '../src/ocsp/responder.js';
import { certIdFor, parseCertificate } from '../src/ocsp/request.js';
import { closeServerOcspResponse, getServerOcspResponseContext, openServerOcspResponse, OcspHandleStatus, type OcspUpdate, type ServerOcspResponseHandle } from '../src/ocsp/handle.js';
import type { OcspFetcher } from '../src/ocsp/fetch.js';
import { createFleet, type Fleet } from '../src/fleet/fleet.js';
import { startRedis, redisCall } from './helpers/redis.js';

const SECRET = 'the fleet secret of the staple tests, 0246813579';
const H = 3_600_000;

test('staples from Redis: no MAC, no read; an older good after a revoked is refused; a lock without expiry and a wild fence heal', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const ca = await issueCertificate({ subject: { commonName: 'staple CA' }, ca: true });
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: 'http://127.0.0.1:9/' });
  const certId = await certIdFor(parseCertificate(leaf.der), parseCertificate(ca.der));
  const now = Date.now();
  const answer = (a: Partial<SingleAnswer>): SingleAnswer => ({ certId, status: 'good', thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 48 * H), ...a });
  const goodOld = await buildOcspResponse({ signer: ca, responses: [answer({ thisUpdate: new Date(now - 120_000) })] });
  const revoked = await buildOcspResponse({ signer: ca, responses: [answer({ status: 'revoked', revocationTime: new Date(now - 90_000), thisUpdate: new Date(now - 60_000) })] });
  // What the "responder" answers next, and how often it was asked.
  let next = goodOld;
  let asked = 0;
  const fetcher: OcspFetcher = async () => { asked++; return { ok: true, body: next, method: 'GET', durationMs: 1 }; };
  const fleets: Fleet[] = [];
  const handles: ServerOcspResponseHandle[] = [];
  t.after(async () => {
    for (const h of handles) if (!h.closed) closeServerOcspResponse(h);
    for (const f of fleets) await f.close();
  });
  const machine = async (name: string, lockTtlMs = 30_000) => {
    const warns: Array<Record<string, unknown>> = [];
    const fleet = createFleet({ url: redis.url, secret: SECRET, machine: name, tickets: false, lockTtlMs, logger: { info: () => {}, error: () => {}, warn: (o) => { warns.push(o as Record<string, unknown>); } } });
    fleets.push(fleet);
    await fleet.start();
    const updates: OcspUpdate[] = [];
    const { status, handle } = await openServerOcspResponse([leaf.der, ca.der], 0, { fleet, fetcher, onUpdate: (u) => updates.push(u), settings: { SrvOcspRespUrlRetrievalTimeoutMilliseconds: 1000 } });
    assert.equal(status, OcspHandleStatus.NO_ERROR);
    handles.push(handle as ServerOcspResponseHandle);
    return { fleet, handle: handle as ServerOcspResponseHandle, updates, warns };
  };
  // refresh() joins a retrieval already running (here: a read another machine's announcement
  // started, which may have begun before the change the test just made): ask again until the
  // handle's last update is the one expected, at most four times.
  const refreshUntil = async (m: { handle: ServerOcspResponseHandle; updates: OcspUpdate[] }, expected: (u: OcspUpdate | undefined) => boolean) => {
    for (let i = 0; i < 4 && (i === 0 || !expected(m.updates.at(-1))); i++) await m.handle.refresh();
  };
  const fp = createHash('sha256').update(leaf.der).digest('hex');
  const key = `certbound:staple:${fp}`;

  // A retrieves (once) and stores; B takes it from the fleet without asking.
  const a = await machine('A');
  assert.equal(asked, 1);
  const b = await machine('B');
  assert.equal(asked, 1, 'B took A\'s response');
  assert.deepEqual(b.updates.map((u) => [u.outcome, u.source]), [['stapled', 'fleet']]);

  // A CA-signed response written into Redis by someone without the secret (no MAC): C never reads it, it retrieves.
  await redisCall(redis.port, 'DEL', key);
  await redisCall(redis.port, 'HSET', key, 'der', revoked, 'storedAt', String(Date.now()), 'mac', 'AAAA');
  next = goodOld;
  const c = await machine('C');
  assert.equal(asked, 2, 'C retrieved itself');
  assert.deepEqual(c.updates.map((u) => [u.outcome, u.source, u.certStatus]), [['stapled', 'responder', 'good']]);

  // The CA says revoked: every machine drops its staple; then an older "good" comes back (a replay, a stale CDN copy): refused.
  next = revoked;
  await redisCall(redis.port, 'DEL', key);
  await refreshUntil(a, (u) => u?.certStatus === 'revoked');
  assert.equal(getServerOcspResponseContext(a.handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE, 'revoked: nothing stapled');
  // A stored the CA's "revoked" and announced it: B drops its staple too, without asking the responder.
  const askedBefore = asked;
  for (const until = Date.now() + 10_000; Date.now() < until && getServerOcspResponseContext(b.handle).status === 0;) await new Promise((r) => setTimeout(r, 50));
  assert.equal(getServerOcspResponseContext(b.handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE, 'B heard of it');
  assert.deepEqual([b.updates.at(-1)?.reason, b.updates.at(-1)?.source], ['cert-revoked', 'fleet']);
  assert.equal(asked, askedBefore);
  next = goodOld;
  await redisCall(redis.port, 'DEL', key);
  await refreshUntil(a, (u) => u?.reason === 'older-response');
  assert.deepEqual([a.updates.at(-1)?.outcome, a.updates.at(-1)?.reason], ['refused', 'older-response']);
  assert.equal(getServerOcspResponseContext(a.handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE, 'the older good never brings the staple back');

  // A, B and C leave (no announcement of theirs reaches D below).
  for (const m of [a, b, c]) closeServerOcspResponse(m.handle);
  // A lock left without an expiry (not a machine's) and a fencing counter out of range: within the lock's expiry a machine retrieves again.
  await redisCall(redis.port, 'DEL', key);
  await redisCall(redis.port, 'SET', `certbound:lock:staple:${fp}`, 'evil');
  await redisCall(redis.port, 'SET', `certbound:fence:staple:${fp}`, '999999999999999999');
  const started = Date.now();
  const before = asked;
  const d = await machine('D', 1500);
  assert.equal(asked, before + 1, 'D retrieved once the stuck lock lapsed');
  assert.deepEqual(d.updates.map((u) => [u.outcome, u.source]), [['stapled', 'responder']], 'what the responder said');
  // The lock's expiry, one retrieval's timeout, and a margin for a loaded machine (the planted lock never expires).
  assert.ok(Date.now() - started < 1500 + 1000 + 4000, `within the lock's expiry and one retrieval (${Date.now() - started} ms)`);
  const lock = await redisCall(redis.port, 'GET', `certbound:lock:staple:${fp}`);
  assert.ok(lock === null || !lock.toString().includes('evil'), 'the planted lock is gone');
  const fence = String(await redisCall(redis.port, 'GET', `certbound:fence:staple:${fp}`));
  assert.match(fence, /^\d{1,15}$/, `the counter restarted within range (${fence})`);

  // An announcement makes a machine read, never retrieve: the document deleted and announced again
  // (or one that cannot be read), and D keeps its staple and its schedule without asking the responder.
  const announce = () => redisCall(redis.port, 'PUBLISH', 'certbound:announce', JSON.stringify({ kind: 'staple', id: fp, fence: 1, from: 'attacker', nextUpdate: null }));
  const askedQuiet = asked;
  await redisCall(redis.port, 'DEL', key);
  for (let i = 0; i < 2; i++) {
    assert.equal(await announce(), 4, 'the four machines\' connections hear it (A, B and C have closed their handles)');
    await new Promise((r) => setTimeout(r, 1100));
  }
  assert.equal(asked, askedQuiet, 'no retrieval for an announcement');
  assert.equal(getServerOcspResponseContext(d.handle).status, OcspHandleStatus.NO_ERROR, 'D still staples');

  // Fields past their bounds are never read (checked and read in one script): a 2 MB MAC and a 2 MB
  // time next to a good staple, then a hash where a string belongs, then a string where the hash belongs.
  const good = getServerOcspResponseContext(d.handle).context?.encodedOcspResponse as Buffer;
  await redisCall(redis.port, 'HSET', key, 'der', good, 'storedAt', '1'.repeat(2 * 1024 * 1024), 'mac', 'A'.repeat(2 * 1024 * 1024));
  assert.equal(await d.fleet.readStored('staple', fp), undefined);
  assert.deepEqual(d.warns.map((w) => [w.event, w.kind, w.reason]).at(-1), ['fleet-document', 'staple', 'too-large']);
  await redisCall(redis.port, 'DEL', key);
  await redisCall(redis.port, 'SET', key, 'a string');
  assert.equal(await d.fleet.readStored('staple', fp), undefined);
  assert.deepEqual(d.warns.map((w) => [w.event, w.kind, w.reason]).at(-1), ['fleet-document', 'staple', 'malformed']);
  assert.equal(d.fleet.status().state, 'connected', 'a bad document is not an outage');
  // A hash planted as the fencing counter: the next lock removes it.
  await redisCall(redis.port, 'DEL', key);
  await redisCall(redis.port, 'DEL', `certbound:fence:staple:${fp}`);
  await redisCall(redis.port, 'HSET', `certbound:fence:staple:${fp}`, 'x', 'y');
  const lease = await d.fleet.lead('staple', fp);
  assert.equal(lease.kind, 'lead');
  await d.fleet.release(lease);
  assert.equal(await redisCall(redis.port, 'TYPE', `certbound:fence:staple:${fp}`), 'string');
});
