// Stapling controls of `certbound serve` (bin/certbound.js over dist/), as an operator checks
// them: with --workers 2 every worker's /connection shows the machine's staple (the primary's
// stapler); the staple persists in --state-dir (0700), so a restart with the responder's port
// dead staples the same response from the first handshake (openssl s_client -status, exact
// serial); --ocsp off staples nothing and says 'off'; a response valid for less than
// SrvOcspRespMinValiditySeconds is not stapled and the state says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import { request } from 'node:https';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';
import { createDevPki } from '../src/tls/dev-pki.js';
import { startDevPkiResponder } from '../src/ocsp/dev-responder.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'certbound.js');

interface Running { child: ChildProcess; output: () => string; exited: Promise<number | null>; gone: () => boolean }

async function serve(args: string[], cwd: string, ready: RegExp): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let gone = false;
  void exited.then(() => { gone = true; });
  // Bounded in time (a loaded machine forks workers slowly); a server that never got ready is
  // killed here, or its pipes would keep this test process alive.
  const until = Date.now() + 30_000;
  while (Date.now() < until && !ready.test(out) && !gone) await sleep(25);
  if (!ready.test(out) && !gone) { try { process.kill(-(child.pid as number), 'SIGKILL'); } catch { /* gone */ } }
  assert.match(out, ready, out);
  return { child, output: () => out, exited, gone: () => gone };
}

async function stop(r: Running): Promise<void> {
  if (r.gone()) return;
  try { process.kill(-(r.child.pid as number), 'SIGTERM'); } catch { /* gone */ }
  const ac = new AbortController();
  const code = await Promise.race([r.exited, sleep(8000, 'timeout', { signal: ac.signal }).catch(() => 'aborted')]);
  ac.abort();
  if (code === 'timeout') { try { process.kill(-(r.child.pid as number), 'SIGKILL'); } catch { /* gone */ } }
}

function connection(port: number, ca: string): Promise<{ ocsp: Record<string, unknown>; connectionId: string }> {
  return new Promise((ok, fail) => {
    request({ host: '127.0.0.1', port, path: '/connection', servername: 'localhost', ca, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => { try { ok(JSON.parse(body) as never); } catch (err) { fail(err as Error); } });
    }).on('error', fail).end();
  });
}

/** openssl s_client -status: the staple's cert status and serial, or 'none'. */
async function staple(port: number, rootCa: string): Promise<{ status: string; serial: string | null }> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-status', '-CAfile', rootCa], { timeoutMs: 10_000 });
  if (/OCSP response: no response sent/.test(r.stdout)) return { status: 'none', serial: null };
  return { status: /Cert Status: (\w+)/.exec(r.stdout)?.[1] ?? '?', serial: /Serial Number: ([0-9A-F]+)/.exec(r.stdout)?.[1] ?? null };
}

test('serve --workers 2: the machine\'s staple in every worker, persisted in --state-dir, served after a restart with the responder down; --ocsp off; too short for the minimum validity', async (t) => {
  const cwd = tempDir('certbound-ocsp-controls-');
  const dir = join(cwd, 'pki');
  const ocspPort = await freePort();
  const pki = await createDevPki(dir, { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
  const ca = readFileSync(pki.rootCa, 'utf8');
  const leaf = new X509Certificate(readFileSync(pki.server));
  const fingerprint = leaf.fingerprint256.replace(/:/g, '').toLowerCase();
  const serial = leaf.serialNumber.toUpperCase();
  const responder = await startDevPkiResponder(dir, { port: ocspPort });
  let responderUp = true;
  t.after(async () => { if (responderUp) await responder.close(); });
  const port = await freePort();
  const stateDir = join(cwd, 'state');
  const flags = ['--port', String(port), '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--state-dir', stateDir];

  const first = await serve(['--workers', '2', ...flags], cwd, /2 worker processes/);
  t.after(() => stop(first));
  assert.match(first.output(), /"event":"ocsp-summary","state":"stapled","reason":null,"fingerprint":"[0-9a-f]{64}"/, 'one start-up line says what is stapled');
  // Connections land on both workers (connection-id prefix); each shows the primary's staple.
  const seen = new Map<bigint, Record<string, unknown>>();
  for (let i = 0; i < 12 && seen.size < 2; i++) {
    const info = await connection(port, ca);
    seen.set(BigInt(info.connectionId) >> 48n, info.ocsp);
  }
  assert.equal(seen.size, 2, 'both workers answered');
  for (const ocsp of seen.values()) {
    assert.equal(ocsp.state, 'stapled');
    assert.equal(ocsp.stapled, true);
    assert.equal(ocsp.reason, null);
    assert.equal(ocsp.fingerprint, fingerprint);
    assert.equal(ocsp.url, `http://127.0.0.1:${ocspPort}/`);
  }
  assert.deepEqual(await staple(port, pki.rootCa), { status: 'good', serial });
  // The state directory: 0700, the staple under the certificate's SHA-256.
  assert.equal(statSync(stateDir).mode & 0o777, 0o700);
  assert.equal(statSync(join(stateDir, 'ocsp')).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(join(stateDir, 'ocsp')), [`${fingerprint}.ocsp`]);
  await stop(first);

  // Restart with nothing listening on the responder's port: the persisted staple serves.
  await responder.close();
  responderUp = false;
  const second = await serve(['--workers', '1', ...flags], cwd, /serving https/);
  t.after(() => stop(second));
  assert.match(second.output(), /"outcome":"loaded"/);
  assert.deepEqual(await staple(port, pki.rootCa), { status: 'good', serial });
  const after = (await connection(port, ca)).ocsp;
  assert.equal(after.stapled, true);
  assert.equal(after.fingerprint, fingerprint);
  await stop(second);

  // --ocsp off: no staple, state 'off' (no retrieval either: the responder is down, and no warning says so).
  const off = await serve(['--workers', '1', '--ocsp', 'off', ...flags], cwd, /serving https/);
  t.after(() => stop(off));
  assert.deepEqual(await staple(port, pki.rootCa), { status: 'none', serial: null });
  assert.deepEqual((await connection(port, ca)).ocsp, {
    state: 'off', stapled: false, reason: 'off', certStatus: null, thisUpdate: null, nextUpdate: null, nextRefresh: null, url: null, fingerprint: null, serial: null,
  });
  assert.doesNotMatch(off.output(), /ocsp-update|fetch-refused/);
  await stop(off);
});

test('serve: a response valid for less than SrvOcspRespMinValiditySeconds is not stapled, and /connection says why', async (t) => {
  const cwd = tempDir('certbound-ocsp-short-');
  const dir = join(cwd, 'pki');
  const ocspPort = await freePort();
  const pki = await createDevPki(dir, { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
  // Answers valid 60 minutes; the server wants 2 hours.
  const responder = await startDevPkiResponder(dir, { port: ocspPort, validityMinutes: 60 });
  t.after(() => responder.close());
  const port = await freePort();
  const r = await serve(['--workers', '1', '--port', String(port), '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle,
    '--state-dir', join(cwd, 'state'), '--srv-ocsp-resp-min-validity-seconds', '7200'], cwd, /serving https/);
  t.after(() => stop(r));
  const ocsp = (await connection(port, readFileSync(pki.rootCa, 'utf8'))).ocsp;
  assert.equal(ocsp.state, 'not-stapled');
  assert.equal(ocsp.stapled, false);
  assert.equal(ocsp.reason, 'shorter-than-min-validity');
  assert.equal(ocsp.certStatus, 'good', 'the responder did say good: the state shows it, and why it is not served');
  assert.deepEqual(await staple(port, pki.rootCa), { status: 'none', serial: null });
  assert.match(r.output(), /"event":"ocsp-summary","state":"not-stapled","reason":"shorter-than-min-validity"/);
});

test('serve --state-dir: a symbolic link planted as state/ocsp in a world-writable state directory is refused, never followed', async () => {
  const { chmodSync, mkdirSync, symlinkSync, writeFileSync } = await import('node:fs');
  const cwd = tempDir('certbound-state-link-');
  const pki = await createDevPki(join(cwd, 'pki'));
  const state = join(cwd, 'state');
  const victim = join(cwd, 'victim');
  mkdirSync(state);
  chmodSync(state, 0o777);
  mkdirSync(victim);
  chmodSync(victim, 0o755);
  writeFileSync(join(victim, 'file'), 'data\n');
  symlinkSync(victim, join(state, 'ocsp'));
  const r = await run(process.execPath, [BIN, 'serve', '--workers', '1', '--port', String(await freePort()), '--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--state-dir', state], { cwd, timeoutMs: 15_000 });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(r.stderr.trim().split('\n').at(-1), `certbound: CB_ERR_PRIVATE_DIR: Cannot use ${join(state, 'ocsp')} as a private directory (mode 0700, owned by this user): it is a symbolic link (to ${victim}); certbound does not follow links for the directories it keeps inside another one: remove the link`);
  assert.equal(statSync(victim).mode & 0o7777, 0o755, 'the directory the link names keeps its mode');
  assert.deepEqual(readdirSync(victim), ['file'], 'nothing written into it');
});

test('createServer ocsp.cacheDir that is a symbolic link: listen() rejects with CB_ERR_OCSP_CACHE and nothing is written where it points', async () => {
  const { chmodSync, mkdirSync, symlinkSync } = await import('node:fs');
  const { createServer } = await import('../src/server/server.js');
  const cwd = tempDir('certbound-cache-link-');
  const pki = await createDevPki(join(cwd, 'pki'));
  const victim = join(cwd, 'victim');
  mkdirSync(victim);
  chmodSync(victim, 0o755);
  symlinkSync(victim, join(cwd, 'cache'));
  const server = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), logger: false, ocsp: { cacheDir: join(cwd, 'cache') } });
  try {
    await assert.rejects(server.listen({ host: '127.0.0.1', port: 0 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'CB_ERR_OCSP_CACHE');
      assert.equal(err.message, `Cannot use the OCSP cache directory ${join(cwd, 'cache')}: it is a symbolic link, which is not followed: remove it or give the directory it names`);
      return true;
    });
  } finally {
    await server.close();
  }
  assert.equal(statSync(victim).mode & 0o7777, 0o755);
  assert.deepEqual(readdirSync(victim), []);
});
