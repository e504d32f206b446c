// Load and faults: a handshake flood (connect-and-drop, stalled and half-sent handshakes) and
// a client-initiated renegotiation flood do not stop an established connection from being
// served; stalled handshakes are cut by the handshake timeout; the connection timeouts are
// set; afterwards the server holds no connection and this process's handles, sockets and
// timers are back to their baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULTS } from '../src/defaults.js';
import { devPki } from './helpers/pki.js';
import { startServer, type Started } from './helpers/server.js';
import { ResponseReader } from '../bench/lib/load.js';

const HANDSHAKE_TIMEOUT_MS = 800;

/** process.getActiveResourcesInfo() as counts by kind. */
function resources(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}

/** Waits (bounded) until every kind of resource is back to at most its baseline count. */
async function backToBaseline(baseline: Map<string, number>): Promise<string[]> {
  let extra: string[] = [];
  for (let i = 0; i < 60; i++) {
    extra = [...resources()].filter(([k, n]) => n > (baseline.get(k) ?? 0)).map(([k, n]) => `${k}: ${n} (baseline ${baseline.get(k) ?? 0})`);
    if (extra.length === 0) return extra;
    await sleep(50);
  }
  return extra;
}

interface Client { socket: TLSSocket; get(path: string): Promise<{ status: number; ms: number }> }

/** A keep-alive TLS client with the dev client certificate. */
async function client(port: number, opts: { maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<Client> {
  const pki = await devPki();
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.rootCa), cert: readFileSync(pki.client), key: readFileSync(pki.clientKey), ...opts }, () => resolve(s));
    s.once('error', reject);
  });
  const reader = new ResponseReader();
  const waiting: Array<(status: number) => void> = [];
  socket.on('data', (d: Buffer) => { for (const st of reader.push(d)) waiting.shift()?.(st); });
  socket.on('error', () => {});
  socket.on('close', () => { for (const w of waiting.splice(0)) w(0); });
  return {
    socket,
    get(path) {
      const t0 = Date.now();
      return new Promise((resolve) => {
        waiting.push((status) => resolve({ status, ms: Date.now() - t0 }));
        socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      });
    },
  };
}

/** Requests on `c` every 20 ms until `stop()`; returns the statuses and latencies. */
function keepAsking(c: Client): () => Promise<{ statuses: number[]; maxMs: number }> {
  let running = true;
  const statuses: number[] = [];
  let maxMs = 0;
  const loop = (async () => {
    while (running) {
      const r = await c.get('/connection');
      statuses.push(r.status);
      maxMs = Math.max(maxMs, r.ms);
      await sleep(20);
    }
  })();
  return async () => { running = false; await loop; return { statuses, maxMs }; };
}

function closed(s: Socket): Promise<void> {
  return s.destroyed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

/** Waits until the server has no connection left (bounded). */
async function drained(started: Started): Promise<number> {
  let n = -1;
  for (let i = 0; i < 60; i++) {
    n = await new Promise<number>((r) => started.server.server.getConnections((_e, c) => r(c)));
    if (n === 0 && started.server.registry.size === 0) return 0;
    await sleep(50);
  }
  return n;
}

test('connection and header timeouts are set on the TLS server', async (t) => {
  const { server } = await startServer(t, 'optional');
  assert.equal(server.server.headersTimeout, DEFAULTS.headersTimeoutMs);
  assert.equal(server.server.requestTimeout, DEFAULTS.requestTimeoutMs);
  assert.equal(server.server.keepAliveTimeout, DEFAULTS.keepAliveTimeoutMs);
  assert.ok(DEFAULTS.headersTimeoutMs < DEFAULTS.requestTimeoutMs, 'headers are due before the whole request');
});

test('a handshake flood (dropped, stalled, half-sent handshakes) does not stop an established connection; stalled ones are cut by the handshake timeout; nothing leaks', async () => {
  const pki = await devPki();
  const baseline = resources();
  const started = await startServer(undefined, 'optional', { handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
  const { port } = started;
  const established = await client(port);
  assert.equal((await established.get('/connection')).status, 200);
  const stopAsking = keepAsking(established);

  // Stalled: TCP only, never a ClientHello. Half-sent: the first bytes of a TLS record.
  const stalled: Socket[] = [];
  for (let i = 0; i < 60; i++) {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', () => {});
    if (i % 2 === 1) s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    stalled.push(s);
  }
  const stalledAt = Date.now();
  // Dropped: full TLS clients that go away during or right after the handshake.
  const ctx = { ca: readFileSync(pki.rootCa), cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) };
  const dropped = await Promise.all(Array.from({ length: 120 }, (_, i) => new Promise<void>((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ...ctx }, () => s.destroy());
    s.on('error', () => {});
    s.on('close', () => resolve());
    if (i % 3 === 0) setImmediate(() => s.destroy());
  })));
  assert.equal(dropped.length, 120);

  await Promise.all(stalled.map(closed));
  const cutAfter = Date.now() - stalledAt;
  const { statuses, maxMs } = await stopAsking();
  assert.ok(statuses.length >= 5, `the established connection kept asking (${statuses.length} requests)`);
  assert.deepEqual([...new Set(statuses)], [200], 'every request on the established connection was answered 200');
  assert.ok(maxMs < 3000, `no request waited long (${maxMs} ms)`);
  assert.ok(cutAfter >= HANDSHAKE_TIMEOUT_MS - 50 && cutAfter < HANDSHAKE_TIMEOUT_MS + 4000, `stalled handshakes were cut by the handshake timeout (after ${cutAfter} ms)`);
  assert.equal((await established.get('/connection')).status, 200, 'still served after the flood');

  established.socket.destroy();
  assert.equal(await drained(started), 0, 'the server holds no connection after the flood');
  await started.server.close();
  assert.deepEqual(await backToBaseline(baseline), [], 'handles, sockets and timers are back to the baseline');
});

test('a client-initiated renegotiation flood is refused (connections closed), the established connection is still served, nothing leaks', async () => {
  const baseline = resources();
  const started = await startServer(undefined, 'optional');
  const { port } = started;
  const established = await client(port);
  const stopAsking = keepAsking(established);

  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  const outcomes = await Promise.all(Array.from({ length: 40 }, async () => {
    const c = await client(port, { maxVersion: 'TLSv1.2' });
    const first = await c.get('/connection');
    const gone = closed(c.socket);
    // The client asks for a new handshake on an established connection.
    c.socket.renegotiate({}, () => {});
    const limit = new AbortController();
    await Promise.race([gone, sleep(5000, undefined, { signal: limit.signal }).catch(() => {})]);
    limit.abort();
    const after = c.socket.destroyed ? 'closed' : 'open';
    c.socket.destroy();
    return { first: first.status, after };
  }));
  const elapsed = Date.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const { statuses } = await stopAsking();

  assert.deepEqual([...new Set(outcomes.map((o) => o.first))], [200]);
  assert.deepEqual([...new Set(outcomes.map((o) => o.after))], ['closed'], 'every connection that renegotiated was closed by the server');
  assert.equal(started.server.registry.rogueHandshakes, 40, 'each refusal counted');
  assert.ok(statuses.length > 0 && statuses.every((s) => s === 200), `the established connection was served throughout (${statuses.join(',')})`);
  assert.ok(elapsed < 10_000, `refused quickly (${elapsed} ms for 40, clients and server together ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms CPU)`);
  assert.equal((await established.get('/connection')).status, 200);

  established.socket.destroy();
  assert.equal(await drained(started), 0, 'the server holds no connection after the flood');
  await started.server.close();
  assert.deepEqual(await backToBaseline(baseline), [], 'handles, sockets and timers are back to the baseline');
});
