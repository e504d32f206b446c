// receiveClientCertificate with flags 0 over real TLS connections: every status of
// HttpReceiveClientCertificate, the buffer-size rules, the overlapped forms, and bad arguments.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import {
  receiveClientCertificate,
  receiveClientCertificateAsync,
  Overlapped,
  RequestQueue,
  type ReceiveResult,
} from '../src/server/receive.js';
import { ConnectionRegistry } from '../src/server/registry.js';
import { CertStatus, Win32 } from '../src/status.js';
import { pemBlocks } from '../src/tls/pem.js';
import { devPki } from './helpers/pki.js';
import type { CreateServerOptions } from '../src/server/server.js';
import { startServer, type Started } from './helpers/server.js';

const FIXED = 32;

/** The DER of the first certificate of a PEM file: what the client sent as its leaf. */
const leafDer = (path: string): Buffer => {
  const der = pemBlocks(readFileSync(path, 'utf8'), 'CERTIFICATE')[0];
  assert.ok(der, path);
  return der;
};

interface Wire {
  status: number;
  bytesReceived: number;
  certInfo: null | { certFlags: number; certEncodedSize: number; certEncoded: string | null; token: string | null; certDeniedByMapper: boolean; authorized?: boolean; reason?: string | null };
  connectionId: string;
}

// The route an application would write: it reads the certificate with the request's connection id.
function addReceiveRoute(app: FastifyInstance): void {
  app.get<{ Querystring: { size: string } }>('/receive', async (request) => {
    const r = receiveClientCertificate(request.server.certbound.queue, request.connectionId ?? 0n, 0, Number(request.query.size));
    return {
      status: r.status,
      bytesReceived: r.bytesReceived,
      certInfo: r.certInfo ? { ...r.certInfo, certEncoded: r.certInfo.certEncoded?.toString('base64') ?? null, chain: undefined } : null,
      connectionId: String(request.connectionId),
    };
  });
  app.get('/wrapper', async (request) => {
    const cert = request.clientCertificate();
    return cert && { der: cert.der.toString('base64'), certFlags: cert.certFlags, identity: cert.identity, deniedByMapper: cert.deniedByMapper };
  });
}

/** A server with the /receive and /wrapper routes. */
function receiveServer(t: TestContext, mode: 'optional' | 'accept-untrusted' | 'none', extra: Partial<CreateServerOptions> = {}): Promise<Started> {
  // Load shedding is tested in under-pressure.test.ts; here a loaded machine must not get 503.
  return startServer(t, mode, { underPressure: false, ...extra }, (s) => addReceiveRoute(s.app));
}

/** A keep-alive client: every request goes over the same TLS connection until `close()`. */
async function connection(t: TestContext, port: number, cert?: string, key?: string) {
  const pki = await devPki();
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 1,
    ca: readFileSync(pki.rootCa),
    servername: 'localhost',
    ...(cert ? { cert: readFileSync(cert), key: readFileSync(key ?? '') } : {}),
  });
  t.after(() => agent.destroy());
  const getJson = <T>(path: string): Promise<{ status: number; body: T }> => new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as T }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
  return { getJson, close: () => agent.destroy() };
}

test('NO_ERROR: the DER leaf, its size, bytesReceived = 32 + size, certFlags 0; the wrapper agrees', async (t) => {
  const pki = await devPki();
  const { port } = await receiveServer(t, 'optional');
  const der = leafDer(pki.client);
  const c = await connection(t, port, pki.client, pki.clientKey);
  const r = await c.getJson<Wire>(`/receive?size=${FIXED + der.length}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.status, Win32.NO_ERROR);
  assert.equal(r.body.bytesReceived, FIXED + der.length);
  assert.equal(r.body.certInfo?.certEncodedSize, der.length);
  assert.deepEqual(Buffer.from(r.body.certInfo?.certEncoded ?? '', 'base64'), der);
  assert.equal(r.body.certInfo?.certFlags, 0);
  assert.equal(r.body.certInfo?.token, null, 'no mapper: no identity');
  assert.equal(r.body.certInfo?.certDeniedByMapper, false);
  // A bigger buffer changes nothing: bytesReceived is what was written, not the buffer size.
  const big = await c.getJson<Wire>('/receive?size=65536');
  assert.equal(big.body.status, Win32.NO_ERROR);
  assert.equal(big.body.bytesReceived, FIXED + der.length);
  const w = await c.getJson<{ der: string; certFlags: number; identity: string | null; deniedByMapper: boolean }>('/wrapper');
  assert.equal(w.body.der, r.body.certInfo?.certEncoded);
  assert.equal(w.body.certFlags, r.body.certInfo?.certFlags);
  assert.equal(w.body.identity, null);
  assert.equal(w.body.deniedByMapper, false);
  assert.equal(big.body.connectionId, r.body.connectionId, 'same keep-alive connection, same id');
});

test('the buffer-size rules: 0 and 31 → INSUFFICIENT_BUFFER, 32 and 32+size-1 → MORE_DATA, 32+size → NO_ERROR', async (t) => {
  const pki = await devPki();
  const { port } = await receiveServer(t, 'optional');
  const der = leafDer(pki.client);
  const c = await connection(t, port, pki.client, pki.clientKey);
  for (const size of [0, 1, FIXED - 1]) {
    const r = await c.getJson<Wire>(`/receive?size=${size}`);
    assert.equal(r.body.status, Win32.ERROR_INSUFFICIENT_BUFFER, `size ${size}`);
    assert.equal(r.body.bytesReceived, 0, `size ${size}: nothing written`);
    assert.equal(r.body.certInfo, null, `size ${size}: nothing written`);
  }
  for (const size of [FIXED, FIXED + der.length - 1]) {
    const r = await c.getJson<Wire>(`/receive?size=${size}`);
    assert.equal(r.body.status, Win32.ERROR_MORE_DATA, `size ${size}`);
    assert.equal(r.body.bytesReceived, FIXED, `size ${size}: the fixed part only`);
    assert.equal(r.body.certInfo?.certEncodedSize, der.length, `size ${size}: the size member is filled`);
    assert.equal(r.body.certInfo?.certEncoded, null, `size ${size}: no certificate bytes`);
    assert.equal(r.body.certInfo?.token, null);
  }
  const exact = await c.getJson<Wire>(`/receive?size=${FIXED + der.length}`);
  assert.equal(exact.body.status, Win32.NO_ERROR);
  assert.equal(exact.body.bytesReceived, FIXED + der.length);
});

test('ERROR_NOT_FOUND on a connection without a certificate (after the size check)', async (t) => {
  const { port } = await receiveServer(t, 'optional');
  const c = await connection(t, port);
  const r = await c.getJson<Wire>('/receive?size=4096');
  assert.equal(r.body.status, Win32.ERROR_NOT_FOUND);
  assert.equal(r.body.bytesReceived, 0);
  assert.equal(r.body.certInfo, null);
  const small = await c.getJson<Wire>('/receive?size=8');
  assert.equal(small.body.status, Win32.ERROR_INSUFFICIENT_BUFFER);
  const w = await c.getJson<null>('/wrapper');
  assert.equal(w.body, null);
  // In mode none the server never asks, so a client that has a certificate still has none here.
  const pki = await devPki();
  const none = await receiveServer(t, 'none');
  const c2 = await connection(t, none.port, pki.client, pki.clientKey);
  assert.equal((await c2.getJson<Wire>('/receive?size=4096')).body.status, Win32.ERROR_NOT_FOUND);
});

test('certFlags carries the verdict (accept-untrusted), token and certDeniedByMapper come from the mapper', async (t) => {
  const pki = await devPki();
  const sha1 = (p: string) => new X509Certificate(leafDer(p)).fingerprint.replace(/:/g, '').toLowerCase();
  const { port } = await receiveServer(t, 'accept-untrusted', { mapper: { oneToOne: [{ thumbprint: sha1(pki.client), identity: 'alice' }] } });
  const good = await connection(t, port, pki.client, pki.clientKey);
  const g = await good.getJson<Wire>('/receive?size=4096');
  assert.equal(g.body.status, Win32.NO_ERROR);
  assert.equal(g.body.certInfo?.certFlags, 0);
  assert.equal(g.body.certInfo?.token, 'alice');
  assert.equal(g.body.certInfo?.certDeniedByMapper, false);
  const expired = await connection(t, port, pki.clientExpired, pki.clientExpiredKey);
  const e = await expired.getJson<Wire>('/receive?size=4096');
  assert.equal(e.body.status, Win32.NO_ERROR, 'a bad certificate is still handed over, with its verdict');
  assert.equal(e.body.certInfo?.certFlags, CertStatus.CERT_E_EXPIRED);
  assert.equal(e.body.certInfo?.token, null);
  assert.equal(e.body.certInfo?.certDeniedByMapper, false, 'the mapper runs on authorized chains only');
  assert.equal(e.body.certInfo?.authorized, false);
  assert.equal(e.body.certInfo?.reason, 'untrusted');
  assert.deepEqual(Buffer.from(e.body.certInfo?.certEncoded ?? '', 'base64'), leafDer(pki.clientExpired));
  const w = await expired.getJson<{ certFlags: number; deniedByMapper: boolean }>('/wrapper');
  assert.equal(w.body.certFlags, CertStatus.CERT_E_EXPIRED);
  assert.equal(w.body.deniedByMapper, false);
});

test('ERROR_INVALID_PARAMETER: foreign, closed and fake queues, unknown ids, bad flags and sizes', async (t) => {
  const pki = await devPki();
  const { server: s, port } = await receiveServer(t, 'optional');
  const c = await connection(t, port, pki.client, pki.clientKey);
  const id = BigInt((await c.getJson<Wire>('/receive?size=4096')).body.connectionId);
  const ok = receiveClientCertificate(s.queue, id, 0, 4096);
  assert.equal(ok.status, Win32.NO_ERROR, 'direct call with the server queue and the request id');
  assert.equal(receiveClientCertificate(s.queue, Number(id), 0, 4096).status, Win32.NO_ERROR, 'a safe-integer number id works too');
  assert.equal(s.registry.get(id)?.id, id);

  const other = await receiveServer(t, 'optional');
  const closedQueue = new RequestQueue(s.registry);
  assert.equal(receiveClientCertificate(closedQueue, id, 0, 4096).status, Win32.NO_ERROR, 'an open queue on the same registry answers');
  closedQueue.close();
  const bad: [string, () => ReceiveResult][] = [
    ['the queue of another server', () => receiveClientCertificate(other.server.queue, id, 0, 4096)],
    ['a queue of an empty registry', () => receiveClientCertificate(new RequestQueue(new ConnectionRegistry()), id, 0, 4096)],
    ['a closed queue', () => receiveClientCertificate(closedQueue, id, 0, 4096)],
    ['a plain object', () => receiveClientCertificate({ registry: s.registry } as unknown as RequestQueue, id, 0, 4096)],
    ['null', () => receiveClientCertificate(null as unknown as RequestQueue, id, 0, 4096)],
    ['id 0', () => receiveClientCertificate(s.queue, 0n, 0, 4096)],
    ['an unknown id', () => receiveClientCertificate(s.queue, id + 1000n, 0, 4096)],
    ['id 2^64-1', () => receiveClientCertificate(s.queue, 2n ** 64n - 1n, 0, 4096)],
    ['a negative id', () => receiveClientCertificate(s.queue, -id, 0, 4096)],
    ['a string id', () => receiveClientCertificate(s.queue, String(id) as unknown as bigint, 0, 4096)],
    ['a fractional id', () => receiveClientCertificate(s.queue, Number(id) + 0.5, 0, 4096)],
    ['flag 0x2', () => receiveClientCertificate(s.queue, id, 0x2, 4096)],
    ['flag 0x80000000', () => receiveClientCertificate(s.queue, id, 0x80000000, 4096)],
    ['flags 0x3', () => receiveClientCertificate(s.queue, id, 0x3, 4096)],
    ['flags -1', () => receiveClientCertificate(s.queue, id, -1, 4096)],
    ['flags 0.5', () => receiveClientCertificate(s.queue, id, 0.5, 4096)],
    ['size -1', () => receiveClientCertificate(s.queue, id, 0, -1)],
    ['size 40.5', () => receiveClientCertificate(s.queue, id, 0, 40.5)],
    ['size NaN', () => receiveClientCertificate(s.queue, id, 0, Number.NaN)],
    ['size as a string', () => receiveClientCertificate(s.queue, id, 0, '4096' as unknown as number)],
  ];
  for (const [name, call] of bad) {
    let r: ReceiveResult | undefined;
    assert.doesNotThrow(() => { r = call(); }, name);
    assert.equal(r?.status, Win32.ERROR_INVALID_PARAMETER, name);
    assert.equal(r?.bytesReceived, 0, name);
    assert.equal(r?.certInfo, undefined, name);
  }
  // Argument errors come before the size check: a bad queue with size 0 is still 87, not 122.
  assert.equal(receiveClientCertificate(closedQueue, id, 0, 0).status, Win32.ERROR_INVALID_PARAMETER);
});

test('ERROR_INVALID_PARAMETER for a connection closed before the call', async (t) => {
  const pki = await devPki();
  const { server: s, port } = await receiveServer(t, 'optional');
  const c = await connection(t, port, pki.client, pki.clientKey);
  const id = BigInt((await c.getJson<Wire>('/receive?size=4096')).body.connectionId);
  const entry = s.registry.get(id);
  assert.ok(entry);
  assert.equal(receiveClientCertificate(s.queue, id, 0, 4096).status, Win32.NO_ERROR);
  const closed = new Promise((resolve) => entry.socket.once('close', resolve));
  c.close();
  await closed;
  assert.equal(entry.closed, true);
  const r = receiveClientCertificate(s.queue, id, 0, 4096);
  assert.equal(r.status, Win32.ERROR_INVALID_PARAMETER);
  assert.equal(r.bytesReceived, 0);
  assert.equal(receiveClientCertificate(s.queue, id, 0, 0).status, Win32.ERROR_INVALID_PARAMETER, 'even with a buffer too small');
  assert.equal(await receiveClientCertificateAsync(s.queue, id, 0, 4096).then((x) => x.status), Win32.ERROR_INVALID_PARAMETER);
});

test('overlapped forms: ERROR_IO_PENDING, then the completion (Overlapped, callback, Promise)', async (t) => {
  const pki = await devPki();
  const { server: s, port } = await receiveServer(t, 'optional');
  const der = leafDer(pki.client);
  const c = await connection(t, port, pki.client, pki.clientKey);
  const id = BigInt((await c.getJson<Wire>('/receive?size=4096')).body.connectionId);

  const ov = new Overlapped();
  assert.equal(receiveClientCertificate(s.queue, id, 0, 4096, ov), Win32.ERROR_IO_PENDING);
  assert.equal(ov.completion, undefined, 'it completes later, not during the call');
  const done = await ov.result;
  assert.equal(done.status, Win32.NO_ERROR);
  assert.equal(done.bytesReceived, FIXED + der.length);
  assert.deepEqual(done.certInfo?.certEncoded, der);
  assert.equal(ov.completion, done);

  // The size rules hold in the overlapped form too.
  const more = new Overlapped();
  assert.equal(receiveClientCertificate(s.queue, id, 0, FIXED, more), Win32.ERROR_IO_PENDING);
  const m = await more.result;
  assert.equal(m.status, Win32.ERROR_MORE_DATA);
  assert.equal(m.bytesReceived, FIXED);
  assert.equal(m.certInfo?.certEncodedSize, der.length);
  const small = new Overlapped();
  assert.equal(receiveClientCertificate(s.queue, id, 0, 10, small), Win32.ERROR_IO_PENDING);
  assert.equal((await small.result).status, Win32.ERROR_INSUFFICIENT_BUFFER);

  let calledSync = true;
  const viaCallback = new Promise<ReceiveResult>((resolve) => {
    assert.equal(receiveClientCertificate(s.queue, id, 0, 4096, resolve), Win32.ERROR_IO_PENDING);
  });
  calledSync = false;
  const cb = await viaCallback;
  assert.equal(calledSync, false);
  assert.equal(cb.status, Win32.NO_ERROR);
  assert.deepEqual(cb.certInfo?.certEncoded, der);

  const p = await receiveClientCertificateAsync(s.queue, id, 0, FIXED + der.length);
  assert.equal(p.status, Win32.NO_ERROR);
  assert.equal(p.bytesReceived, FIXED + der.length);
});

test('overlapped form: argument errors return 87 at once and never complete', async (t) => {
  const pki = await devPki();
  const { server: s, port } = await receiveServer(t, 'optional');
  const c = await connection(t, port, pki.client, pki.clientKey);
  const id = BigInt((await c.getJson<Wire>('/receive?size=4096')).body.connectionId);
  const ovs: Overlapped[] = [];
  let callbacks = 0;
  const cases: [string, (ov: Overlapped | ((r: ReceiveResult) => void)) => number][] = [
    ['unknown id', (ov) => receiveClientCertificate(s.queue, id + 1000n, 0, 4096, ov)],
    ['flag 0x2', (ov) => receiveClientCertificate(s.queue, id, 0x2, 4096, ov)],
    ['size -1', (ov) => receiveClientCertificate(s.queue, id, 0, -1, ov)],
    ['not a queue', (ov) => receiveClientCertificate({} as RequestQueue, id, 0, 4096, ov)],
  ];
  for (const [name, call] of cases) {
    const ov = new Overlapped();
    ovs.push(ov);
    assert.equal(call(ov), Win32.ERROR_INVALID_PARAMETER, name);
    assert.equal(call(() => { callbacks += 1; }), Win32.ERROR_INVALID_PARAMETER, `${name} (callback)`);
  }
  const notOverlapped = receiveClientCertificate(s.queue, id, 0, 4096, {} as unknown as Overlapped);
  assert.equal(notOverlapped, Win32.ERROR_INVALID_PARAMETER, 'an overlapped argument that is neither an Overlapped nor a function');
  const r = await receiveClientCertificateAsync(s.queue, id, 0x2, 4096);
  assert.equal(r.status, Win32.ERROR_INVALID_PARAMETER);
  await sleep(50);
  assert.equal(callbacks, 0);
  for (const ov of ovs) assert.equal(ov.completion, undefined);
});
