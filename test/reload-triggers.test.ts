// What sets a reload off, as an operator's tools do it: a SIGHUP that comes while `serve` is
// still starting (systemctl reload right after start; start-up may wait for a first staple)
// is not fatal and is acted on once the server is up; --watch-certs sees a Kubernetes Secret
// volume's update, which swaps a `..data` link and changes no watched file name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, symlinkSync } from 'node:fs';
import { createServer as createNetServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { createDevPki } from '../src/tls/dev-pki.js';
import { run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

const BIN = join(resolve(fileURLToPath(new URL('..', import.meta.url))), 'bin', 'certbound.js');

interface Serving { child: ChildProcess; out: () => string; exited: Promise<number | null> }

function start(args: string[], cwd: string): Serving {
  const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--workers', '1', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => { text += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { text += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code, signal) => r(code ?? (signal ? 128 : null))));
  return { child, out: () => text, exited };
}

async function waitFor(s: Serving, re: RegExp, ms: number): Promise<RegExpExecArray> {
  const end = Date.now() + ms;
  for (;;) {
    const m = re.exec(s.out());
    if (m) return m;
    if (s.child.exitCode !== null || s.child.signalCode !== null) throw new Error(`serve ended (${s.child.exitCode ?? s.child.signalCode}) before ${re}:\n${s.out()}`);
    if (Date.now() > end) throw new Error(`no ${re} within ${ms} ms:\n${s.out()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function servedFingerprint(port: number): Promise<string> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost'], { input: '', timeoutMs: 10_000 });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
  assert.ok(pem, r.stdout + r.stderr);
  return new X509Certificate(pem).fingerprint256;
}

const fingerprintOf = (path: string) => new X509Certificate(readFileSync(path)).fingerprint256;

test('a SIGHUP while serve starts is remembered, not fatal: the server comes up and reloads once', async (t) => {
  // A responder that accepts and never answers holds start-up in its first staple retrieval.
  const held: Socket[] = [];
  const silent = createNetServer((s) => { held.push(s); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => { for (const s of held) s.destroy(); silent.close(); });
  const { port: silentPort } = silent.address() as { port: number };
  const dir = tempDir('cb-hup-start-');
  const s = start(['--dev-pki-dir', join(dir, 'pki'), '--state-dir', join(dir, 'state'), '--ocsp-url', `http://127.0.0.1:${silentPort}/`, '--srv-ocsp-resp-url-retrieval-timeout-milliseconds', '2000'], dir);
  t.after(() => { s.child.kill('SIGKILL'); });
  // The dev PKI is written first; the retrieval that follows waits on the silent responder.
  await waitFor(s, /created a dev PKI/, 20_000);
  await waitFor(s, /./, 100);
  s.child.kill('SIGHUP');
  const [, port] = await waitFor(s, /Server listening at https:\/\/127\.0\.0\.1:(\d+)/, 20_000);
  await waitFor(s, /"trigger":"SIGHUP while starting"/, 10_000);
  await waitFor(s, /certificates reloaded|"event":"reload"[^\n]*"listeners"/, 10_000);
  assert.equal(s.child.exitCode, null, 'still running');
  assert.equal(await servedFingerprint(Number(port)), fingerprintOf(join(dir, 'pki', 'server.pem')));
  assert.equal((s.out().match(/"trigger":"SIGHUP while starting"/g) ?? []).length, 1, 'one reload for it');
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('--watch-certs follows a Kubernetes Secret volume: the ..data link swap reloads the new certificate', async (t) => {
  const dir = tempDir('cb-k8s-');
  const [a, b] = await Promise.all([createDevPki(join(dir, 'a')), createDevPki(join(dir, 'b'))]);
  // The layout kubelet writes: timestamped directory, ..data → it, and each key → ..data/key.
  const vol = join(dir, 'secret');
  mkdirSync(join(vol, '..2026_12_01_a'), { recursive: true });
  for (const [src, name] of [[a.server, 'tls.crt'], [a.serverKey, 'tls.key']] as const) symlinkSync(src, join(vol, '..2026_12_01_a', name));
  symlinkSync('..2026_12_01_a', join(vol, '..data'));
  for (const name of ['tls.crt', 'tls.key']) symlinkSync(join('..data', name), join(vol, name));
  const s = start(['--cert', join(vol, 'tls.crt'), '--key', join(vol, 'tls.key'), '--ca', a.caBundle, '--ocsp', 'off', '--state-dir', join(dir, 'state'), '--watch-certs'], dir);
  t.after(() => { s.child.kill('SIGKILL'); });
  const [, port] = await waitFor(s, /Server listening at https:\/\/127\.0\.0\.1:(\d+)/, 20_000);
  assert.equal(await servedFingerprint(Number(port)), fingerprintOf(a.server));

  // The update: a new timestamped directory, a new ..data link renamed over the old one.
  mkdirSync(join(vol, '..2026_12_01_b'));
  for (const [src, name] of [[b.server, 'tls.crt'], [b.serverKey, 'tls.key']] as const) symlinkSync(src, join(vol, '..2026_12_01_b', name));
  symlinkSync('..2026_12_01_b', join(vol, '..data_tmp'));
  renameSync(join(vol, '..data_tmp'), join(vol, '..data'));
  await waitFor(s, /"trigger":"file change"/, 10_000);
  await waitFor(s, /certificates reloaded|"event":"reload"[^\n]*"listeners"/, 10_000);
  assert.equal(await servedFingerprint(Number(port)), fingerprintOf(b.server));
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});
