// Overload made by the requests themselves (test/under-pressure.test.ts holds the loop with a
// timer instead): a CPU-heavy route under concurrent keep-alive load saturates the event loop;
// under-pressure then answers 503 with Retry-After without running the handler, /healthz says
// so, and once the load stops the server answers 200 again and leaves nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULTS } from '../src/defaults.js';
import { devPki } from './helpers/pki.js';
import { get, startServer } from './helpers/server.js';
import { ResponseReader } from '../bench/lib/load.js';

function resources(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}

test('requests that saturate the event loop get 503 + Retry-After without reaching the handler; health is truthful; recovery; nothing leaks', async () => {
  const pki = await devPki();
  const baseline = resources();
  let handlerRuns = 0;
  const started = await startServer(undefined, 'optional', { underPressure: { maxEventLoopDelay: 60, sampleInterval: 20 } }, (s) => {
    s.app.get('/heavy', async () => {
      handlerRuns++;
      const end = Date.now() + 40;
      while (Date.now() < end) { /* CPU-bound work holding the event loop */ }
      return { ok: true };
    });
  });
  const { port } = started;
  // Let start-up's own loop delay pass.
  for (let i = 0; i < 40 && (await get(port, '/connection')).status !== 200; i++) await sleep(50);

  const ctx = { ca: readFileSync(pki.rootCa), cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) };
  const statuses: number[] = [];
  const retryAfter = new Set<string>();
  let running = true;
  const sockets: TLSSocket[] = [];
  const loops = Array.from({ length: 6 }, async () => {
    const s = await new Promise<TLSSocket>((resolve, reject) => {
      const c = connect({ host: '127.0.0.1', port, servername: 'localhost', ...ctx }, () => resolve(c));
      c.once('error', reject);
    });
    sockets.push(s);
    const reader = new ResponseReader();
    let raw = '';
    while (running) {
      const status = await new Promise<number>((resolve) => {
        const onData = (d: Buffer) => {
          raw += d.toString('latin1');
          const done = reader.push(d);
          if (done.length === 0) return;
          s.off('data', onData);
          const m = /\r\nretry-after: *(\d+)/i.exec(raw);
          if (m) retryAfter.add(m[1] as string);
          raw = '';
          resolve(done[0] as number);
        };
        s.on('data', onData);
        s.write('GET /heavy HTTP/1.1\r\nHost: localhost\r\n\r\n');
      });
      statuses.push(status);
    }
  });
  await sleep(500);
  const health: number[] = [];
  for (let i = 0; i < 8 && !health.includes(503); i++) health.push((await get(port, '/healthz')).status);
  running = false;
  await Promise.all(loops);
  for (const s of sockets) s.destroy();

  const overloaded = statuses.filter((s) => s === 503).length;
  const served = statuses.filter((s) => s === 200).length;
  assert.ok(overloaded > 0, `some requests were shed (${served} x 200, ${overloaded} x 503)`);
  assert.equal(served + overloaded, statuses.length, 'every answer was 200 or 503');
  assert.equal(handlerRuns, served, 'a shed request never reached the handler');
  assert.deepEqual([...retryAfter], [String(DEFAULTS.retryAfterSeconds)], '503s carry Retry-After');
  assert.ok(health.includes(503), `/healthz reports the overload (${health.join(', ')})`);

  let after = 0;
  for (let i = 0; i < 40 && after !== 200; i++) {
    await sleep(50);
    after = (await get(port, '/healthz')).status;
  }
  assert.equal(after, 200, '/healthz recovers once the load stops');
  // The event-loop delay is sampled: on a busy machine (CI runs two test files at once) one more
  // sample may still be over the limit right after /healthz said 200. Shedding must end, within
  // a bounded time, and until then every answer is a clean 503.
  const heavy: number[] = [];
  for (let i = 0; i < 40 && heavy.at(-1) !== 200; i++) {
    if (i > 0) await sleep(50);
    heavy.push((await get(port, '/heavy')).status);
  }
  assert.equal(heavy.at(-1), 200, `requests are served again (${heavy.join(', ')})`);
  assert.ok(heavy.every((s) => s === 200 || s === 503), `only 200 or 503 while recovering (${heavy.join(', ')})`);

  await started.server.close();
  let extra: string[] = [];
  for (let i = 0; i < 60; i++) {
    extra = [...resources()].filter(([k, n]) => n > (baseline.get(k) ?? 0)).map(([k, n]) => `${k}: ${n}`);
    if (extra.length === 0) break;
    await sleep(50);
  }
  assert.deepEqual(extra, [], 'handles, sockets and timers are back to the baseline');
});
