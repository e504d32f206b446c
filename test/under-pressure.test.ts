// Load shedding: while the event loop is held, requests get 503 with Retry-After (and /healthz
// says so); once it is idle again, requests get through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULTS } from '../src/defaults.js';
import { get, startServer } from './helpers/server.js';

/**
 * Holds the event loop: busy-waits `chunkMs` at a time, letting one loop turn through in
 * between so that requests can progress. under-pressure measures the delay per sample and
 * resets it, so a single block is visible for one sample only; repeated blocks keep every
 * sample above the limit while the request is in flight.
 */
function holdEventLoop(chunkMs: number): () => void {
  let holding = true;
  const spin = () => {
    if (!holding) return;
    const end = Date.now() + chunkMs;
    while (Date.now() < end) { /* busy: the event loop is blocked */ }
    setImmediate(spin);
  };
  spin();
  return () => { holding = false; };
}

/** Polls until the server answers 200, for at most 15 s (a loaded machine is late too); returns the last status. */
async function settle(port: number, path = '/connection'): Promise<number> {
  const deadline = Date.now() + 15_000;
  let status = 0;
  for (let i = 0; status !== 200 && Date.now() < deadline; i++) {
    if (i > 0) await sleep(50);
    status = (await get(port, path)).status;
  }
  return status;
}

test('503 with Retry-After while the event loop is held, 200 again after', async (t) => {
  // sampleInterval above the histogram's 10 ms resolution: a sample window with no
  // measurement reads as NaN, which under-pressure treats as infinite delay (a spurious 503).
  const { port } = await startServer(t, 'none', { underPressure: { maxEventLoopDelay: 100, sampleInterval: 50 } });
  // Creating the dev PKI and starting the server held the loop too: wait until that has passed.
  assert.equal(await settle(port), 200);

  const release = holdEventLoop(200);
  let held;
  let health;
  try {
    held = await get(port, '/connection');
    health = await get(port, '/healthz');
  } finally {
    release();
  }
  assert.equal(held.status, 503);
  assert.equal(held.headers['retry-after'], String(DEFAULTS.retryAfterSeconds));
  assert.equal(health.status, 503, '/healthz reports the pressure too');

  assert.equal(await settle(port), 200, 'recovers once the loop is idle');
  assert.equal(await settle(port, '/healthz'), 200, '/healthz recovers too');
});

test('underPressure: false turns load shedding off (no /healthz, no 503)', async (t) => {
  const { port } = await startServer(t, 'none', { underPressure: false });
  const release = holdEventLoop(200);
  let held;
  try {
    held = await get(port, '/connection');
  } finally {
    release();
  }
  assert.equal(held.status, 200);
  assert.equal((await get(port, '/healthz')).status, 404);
});

test('GET /readyz: 200 ready once listen() has finished (the first staple attempt included), beside /healthz', async (t) => {
  const { port } = await startServer(t, 'optional');
  const r = await get(port, '/readyz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { status: 'ready', ocsp: null });
  assert.equal((await get(port, '/healthz')).status, 200);
});
