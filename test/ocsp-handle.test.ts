// The wincrypt-shaped handle API against the dev OCSP responder over HTTP on loopback, with
// an injected clock and injected timers: sync vs async open, statuses, min validity,
// reference counts, the armed schedule, retries, and timers cleared on close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { issueResponderCertificate, startDevOcspResponder, type DevOcspResponder } from '../src/ocsp/responder.js';
import {
  addRefServerOcspResponse, addRefServerOcspResponseContext, CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG, closeServerOcspResponse,
  freeServerOcspResponseContext, getServerOcspResponseContext, openServerOcspResponse, OcspHandleStatus, type OcspTimers, type OcspUpdate,
} from '../src/ocsp/handle.js';
import { fetchOcsp, getUrl, type OcspFetcher } from '../src/ocsp/fetch.js';
import { createStapler, OCSP_UPDATE_CHANNEL } from '../src/ocsp/stapler.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { isCertboundError } from '../src/errors.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const M = 60_000;

class FakeTimers implements OcspTimers {
  pending = new Map<number, { fn: () => void; at: number }>();
  #id = 0;
  constructor(private readonly clock: { t: number }) {}
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.pending.set(id, { fn, at: this.clock.t + ms });
    return id;
  }
  clearTimeout(ref: unknown): void {
    this.pending.delete(ref as number);
  }
  /** The one armed timer's due time relative to now. */
  only(): { id: number; delay: number } {
    assert.equal(this.pending.size, 1, 'exactly one timer armed');
    const [id, t] = [...this.pending.entries()][0] as [number, { at: number }];
    return { id, delay: t.at - this.clock.t };
  }
  fire(id: number): void {
    const t = this.pending.get(id);
    assert.ok(t);
    this.pending.delete(id);
    t.fn();
  }
}

interface Fixture { ca: IssuedCertificate; leaf: IssuedCertificate; noUrl: IssuedCertificate; responder: DevOcspResponder; clock: { t: number } }

async function fixture(t: { after(fn: () => unknown): void }, validityMinutes = 60): Promise<Fixture> {
  const clock = { t: Date.now() };
  const ca = await issueCertificate({ subject: { commonName: 'handle test CA' }, ca: true });
  const signer = await issueResponderCertificate(ca);
  const responder = await startDevOcspResponder({ issuer: ca, responder: signer, validityMinutes, now: () => clock.t });
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'handle.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: responder.url });
  const noUrl = await issueCertificate({ subject: { commonName: 'no-url.test' }, issuer: ca, extKeyUsage: [OID.serverAuth] });
  return { ca, leaf, noUrl, responder, clock };
}

test('open: argument checks and the no-OCSP-URL status', async (t) => {
  const f = await fixture(t);
  assert.equal(OcspHandleStatus.CRYPT_E_NOT_IN_REVOCATION_DATABASE, 0x80092014);
  assert.deepEqual(await openServerOcspResponse([f.noUrl.der, f.ca.der]), { status: 0x80092014 });
  assert.deepEqual(await openServerOcspResponse([f.leaf.der, f.ca.der], 0x2), { status: 87 });
  assert.deepEqual(await openServerOcspResponse([f.leaf.der, f.ca.der], -1), { status: 87 });
  assert.deepEqual(await openServerOcspResponse([f.leaf.der]), { status: 87 }, 'no issuer');
  assert.deepEqual(await openServerOcspResponse([f.leaf.der, f.leaf.der]), { status: 87 }, 'not the issuer');
  assert.deepEqual(await openServerOcspResponse([Buffer.from('junk'), f.ca.der]), { status: 87 });
  assert.equal(f.responder.requests, 0, 'nothing was fetched');
});

test('flags 0: the first retrieval is done when open resolves; schedule armed; close clears it', async (t) => {
  const f = await fixture(t);
  const timers = new FakeTimers(f.clock);
  const updates: OcspUpdate[] = [];
  const { status, handle } = await openServerOcspResponse([f.leaf.pem, f.ca.pem], 0, { now: () => f.clock.t, timers, onUpdate: (u) => updates.push(u) });
  assert.equal(status, OcspHandleStatus.NO_ERROR);
  assert.ok(handle);
  assert.equal(f.responder.requests, 1);
  const got = getServerOcspResponseContext(handle);
  assert.equal(got.status, 0);
  assert.ok(got.context && got.context.size > 100 && got.context.size === got.context.encodedOcspResponse.length);
  assert.equal(updates.length, 1);
  const u = updates[0] as OcspUpdate;
  assert.equal(u.outcome, 'stapled');
  assert.equal(u.certStatus, 'good');
  assert.equal(u.method, 'GET', 'a small request goes by GET (RFC 5019)');
  // 60-minute response: half-life rule, 30 minutes.
  assert.equal(u.rule, 'half-life');
  assert.equal(timers.only().delay, 30 * M);
  assert.equal(handle.state().nextRefresh, new Date(f.clock.t + 30 * M).toISOString());

  // Firing the timer refetches and re-arms.
  f.clock.t += 30 * M;
  timers.fire(timers.only().id);
  await handle.idle();
  assert.equal(f.responder.requests, 2);
  assert.equal(updates.length, 2);
  assert.equal(timers.only().delay, 30 * M);

  assert.equal(addRefServerOcspResponse(handle), 0);
  assert.equal(closeServerOcspResponse(handle), 0);
  assert.equal(timers.pending.size, 1, 'one reference left: still scheduled');
  assert.equal(getServerOcspResponseContext(handle).status, 0);
  assert.equal(closeServerOcspResponse(handle), 0);
  assert.equal(timers.pending.size, 0, 'the last close clears the timer');
  assert.equal(getServerOcspResponseContext(handle).status, 87);
  assert.equal(closeServerOcspResponse(handle), 87);
  assert.equal(addRefServerOcspResponse(handle), 87);
});

test('CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG: open returns at once, the retrieval follows', async (t) => {
  const f = await fixture(t);
  const timers = new FakeTimers(f.clock);
  const { status, handle } = await openServerOcspResponse([f.leaf.der, f.ca.der], CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG, { now: () => f.clock.t, timers });
  assert.equal(status, 0);
  assert.ok(handle);
  t.after(() => closeServerOcspResponse(handle));
  assert.equal(f.responder.requests, 0);
  assert.equal(getServerOcspResponseContext(handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE);
  const armed = timers.only();
  assert.equal(armed.delay, 0, 'retrieval armed at once');
  timers.fire(armed.id);
  await handle.idle();
  assert.equal(f.responder.requests, 1);
  assert.equal(getServerOcspResponseContext(handle).status, 0);
});

test('SrvOcspRespMinValiditySeconds: no context once less than that is left', async (t) => {
  const f = await fixture(t, 30);
  const timers = new FakeTimers(f.clock);
  const { handle } = await openServerOcspResponse([f.leaf.der, f.ca.der], 0, { now: () => f.clock.t, timers });
  assert.ok(handle);
  t.after(() => closeServerOcspResponse(handle));
  const nextUpdate = Date.parse(handle.state().nextUpdate ?? '');
  f.clock.t = nextUpdate - 600_000;
  assert.equal(getServerOcspResponseContext(handle).status, 0, 'exactly 600 s left: served');
  f.clock.t = nextUpdate - 599_000;
  assert.equal(getServerOcspResponseContext(handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE);
  assert.equal(handle.state().stapled, false);
  assert.equal(getServerOcspResponseContext(handle, 1).status, 87, 'dwFlags must be 0');
});

test('context addRef / free pair', async (t) => {
  const f = await fixture(t);
  const { handle } = await openServerOcspResponse([f.leaf.der, f.ca.der], 0, { now: () => f.clock.t, timers: new FakeTimers(f.clock) });
  assert.ok(handle);
  t.after(() => closeServerOcspResponse(handle));
  const { context } = getServerOcspResponseContext(handle);
  assert.ok(context);
  assert.equal(addRefServerOcspResponseContext(context), 0);
  assert.equal(freeServerOcspResponseContext(context), 0);
  assert.equal(freeServerOcspResponseContext(context), 0);
  assert.equal(freeServerOcspResponseContext(context), 87, 'freed once too often');
  assert.equal(addRefServerOcspResponseContext(context), 87);
});

test('flags 0 with the responder down: a handle anyway, retries back off, a later success staples', async (t) => {
  const f = await fixture(t);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const leaf = await issueCertificate({ subject: { commonName: 'down.test' }, issuer: f.ca, extKeyUsage: [OID.serverAuth], ocspUrl: url });
  const timers = new FakeTimers(f.clock);
  const updates: OcspUpdate[] = [];
  const { status, handle } = await openServerOcspResponse([leaf.der, f.ca.der], 0, { now: () => f.clock.t, timers, onUpdate: (u) => updates.push(u) });
  assert.equal(status, 0);
  assert.ok(handle);
  t.after(() => closeServerOcspResponse(handle));
  assert.equal(getServerOcspResponseContext(handle).status, OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE);
  assert.equal(updates[0]?.outcome, 'failed');
  assert.equal(updates[0]?.reason, 'fetch-refused');
  assert.equal(timers.only().delay, 60_000, 'first retry after initialMs');
  f.clock.t += 60_000;
  timers.fire(timers.only().id);
  await handle.idle();
  assert.equal(timers.only().delay, 120_000, 'then doubled');
  assert.equal(handle.state().failures, 2);
  // The responder comes up: the next retry staples and the schedule is back to normal.
  const up = await startDevOcspResponder({ issuer: f.ca, port, validityMinutes: 60, now: () => f.clock.t });
  t.after(() => up.close());
  f.clock.t += 120_000;
  timers.fire(timers.only().id);
  await handle.idle();
  assert.equal(getServerOcspResponseContext(handle).status, 0);
  assert.equal(handle.state().failures, 0);
  assert.equal(updates.at(-1)?.outcome, 'stapled');
  assert.equal(timers.only().delay, 30 * M);
});

test('the stapler never has more than maxConcurrentRetrievals retrievals in flight', async (t) => {
  const f = await fixture(t);
  let inFlight = 0;
  let peak = 0;
  const slow: OcspFetcher = async (url, der, options) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, 50));
    try {
      return await fetchOcsp(url, der, options);
    } finally {
      inFlight--;
    }
  };
  const stapler = createStapler({ fetcher: slow, maxConcurrentRetrievals: 2, timers: new FakeTimers(f.clock), now: () => f.clock.t });
  t.after(() => stapler.close());
  const leaves = await Promise.all(Array.from({ length: 6 }, (_, i) => issueCertificate({ subject: { commonName: `c${i}.test` }, issuer: f.ca, extKeyUsage: [OID.serverAuth], ocspUrl: f.responder.url })));
  const published: unknown[] = [];
  const onMessage = (m: unknown) => published.push(m);
  subscribe(OCSP_UPDATE_CHANNEL, onMessage);
  t.after(() => unsubscribe(OCSP_UPDATE_CHANNEL, onMessage));
  const states = await Promise.all(leaves.map((l) => stapler.add([l.der, f.ca.der])));
  assert.ok(states.every((s) => s?.stapled), 'all stapled');
  assert.equal(published.length, 6, 'one message per update on certbound:ocsp:update');
  assert.equal(stapler.metrics().stapled, 6);
  assert.equal(peak, 2);
  assert.equal(f.responder.requests, 6);
});

test('stapler.add: CB_ERR_OCSP_CHAIN for a chain without its issuer, CB_ERR_OCSP_CLOSED after close; no URL is quiet', async (t) => {
  const f = await fixture(t);
  const stapler = createStapler({ timers: new FakeTimers(f.clock), now: () => f.clock.t });
  await assert.rejects(stapler.add([f.leaf.der]), (err: unknown) => isCertboundError(err, 'CB_ERR_OCSP_CHAIN'));
  await assert.rejects(stapler.add([f.leaf.der, f.noUrl.der]), (err: unknown) => isCertboundError(err, 'CB_ERR_OCSP_CHAIN'));
  assert.equal(await stapler.add([f.noUrl.der, f.ca.der]), undefined);
  assert.equal(stapler.metrics().noOcspUrl, 1);
  await stapler.close();
  await assert.rejects(stapler.add([f.leaf.der, f.ca.der]), (err: unknown) => isCertboundError(err, 'CB_ERR_OCSP_CLOSED'));
  assert.equal(f.responder.requests, 0);
});

test('method: GET for a small request by default, POST when asked; both answered and stapled', async (t) => {
  const f = await fixture(t);
  for (const method of ['POST', 'GET'] as const) {
    const updates: OcspUpdate[] = [];
    const { handle } = await openServerOcspResponse([f.leaf.der, f.ca.der], 0, { method, now: () => f.clock.t, timers: new FakeTimers(f.clock), onUpdate: (u) => updates.push(u) });
    assert.ok(handle);
    assert.equal(updates[0]?.method, method);
    assert.equal(getServerOcspResponseContext(handle).status, 0, method);
    closeServerOcspResponse(handle);
  }
  assert.equal(getUrl('http://ocsp.example/', Buffer.from([0xfb, 0xff])), 'http://ocsp.example/%2B%2F8%3D', 'base64 URL-encoded as one path segment');
  assert.equal(getUrl('http://ocsp.example/path', Buffer.from('a')), 'http://ocsp.example/path/YQ%3D%3D');
});

test('background timers are unref()ed: an open handle with a retry pending does not keep a process alive', async () => {
  const dir = tempDir('certbound-ocsp-unref-');
  const file = join(dir, 'open.mts');
  const src = (p: string) => JSON.stringify(pathToFileURL(join(import.meta.dirname, '..', 'src', p)).href);
  writeFileSync(file, `
import { issueCertificate, OID } from ${src('tls/cert-builder.ts')};
import { openServerOcspResponse } from ${src('ocsp/handle.ts')};
const ca = await issueCertificate({ subject: { commonName: 'ca' }, ca: true });
const leaf = await issueCertificate({ subject: { commonName: 'l' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: 'http://127.0.0.1:${await freePort()}/' });
const { handle } = await openServerOcspResponse([leaf.der, ca.der]);
console.log('open', handle?.state().lastReason, handle?.state().nextRefresh !== null);
`);
  const started = Date.now();
  const r = await run(process.execPath, ['--import', 'tsx', file], { timeoutMs: 30_000, cwd: join(import.meta.dirname, '..') });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /open fetch-refused true/, 'a retry was armed');
  assert.ok(Date.now() - started < 20_000, 'the process exited without waiting for the 60 s retry');
});
