// The first run as a new user sees it: the dev PKI's client.p12 for a browser (checked with
// openssl), a banner whose /whoami command really renegotiates, what `require` mode says and
// does, and with --workers 2 one "Server listening at https://" line and request ids that no
// two workers share.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEV_CLIENT_P12_PASSWORD, ensureDevPki } from '../src/tls/dev-pki.js';
import { serve } from '../src/server/cli.js';
import { devPki, tempDir } from './helpers/pki.js';
import { freePort, run } from './helpers/exec.js';

const BIN = join(resolve(fileURLToPath(new URL('..', import.meta.url))), 'bin', 'certbound.js');

test('client.p12: mode 0600, openssl reads the same certificate (fingerprint), its chain and the matching key', async () => {
  const pki = await devPki();
  const p12 = join(pki.dir, 'client.p12');
  assert.equal(statSync(p12).mode & 0o777, 0o600);
  const pass = `pass:${DEV_CLIENT_P12_PASSWORD}`;
  const [leaf, chain, key] = await Promise.all([
    run('openssl', ['pkcs12', '-in', p12, '-passin', pass, '-nokeys', '-clcerts']),
    run('openssl', ['pkcs12', '-in', p12, '-passin', pass, '-nokeys', '-cacerts']),
    run('openssl', ['pkcs12', '-in', p12, '-passin', pass, '-nocerts', '-nodes']),
  ]);
  for (const r of [leaf, chain, key]) assert.equal(r.code, 0, r.stderr);
  const expected = new X509Certificate(readFileSync(pki.client));
  assert.equal(new X509Certificate(leaf.stdout).fingerprint256, expected.fingerprint256);
  assert.equal(new X509Certificate(chain.stdout).fingerprint256, new X509Certificate(readFileSync(pki.clientCa)).fingerprint256, 'the client CA travels with it');
  const spki = (k: Parameters<typeof createPublicKey>[0]) => createPublicKey(k).export({ type: 'spki', format: 'der' }).toString('hex');
  assert.equal(spki(key.stdout), expected.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), 'the key is the certificate\'s');
  assert.equal(spki(key.stdout), spki(readFileSync(pki.clientKey)));
  const wrong = await run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:wrong', '-nokeys']);
  assert.notEqual(wrong.code, 0, 'the password is checked (MAC)');
});

test('a dev PKI from before client.p12 gains one from its own client files: the root CA a browser trusts stays the same', async () => {
  const pki = await devPki();
  const p12 = join(pki.dir, 'client.p12');
  const root = readFileSync(pki.rootCa, 'utf8');
  rmSync(p12);
  const { created } = await ensureDevPki(pki.dir);
  assert.equal(created, false, 'not recreated');
  assert.equal(readFileSync(pki.rootCa, 'utf8'), root, 'same root CA');
  assert.equal(statSync(p12).mode & 0o777, 0o600);
  const leaf = await run('openssl', ['pkcs12', '-in', p12, '-passin', `pass:${DEV_CLIENT_P12_PASSWORD}`, '-nokeys', '-clcerts']);
  assert.equal(leaf.code, 0, leaf.stderr);
  assert.equal(new X509Certificate(leaf.stdout).fingerprint256, new X509Certificate(readFileSync(pki.client)).fingerprint256);
});

test('require mode: the banner says what to expect, and a request without a certificate gets no HTTP answer', async (t) => {
  const pki = await devPki();
  let printed = '';
  const { log } = console;
  console.log = (...a: unknown[]) => { printed += `${a.join(' ')}\n`; };
  let server;
  try {
    server = await serve(['--client-auth', 'require', '--port', '0', '--dev-pki-dir', pki.dir, '--log-level', 'silent']);
  } finally {
    console.log = log;
  }
  assert.ok(server);
  t.after(() => server.close());
  const port = (server.server.address() as { port: number }).port;
  assert.match(printed, /\nIn require mode a connection without a trusted client certificate is refused in the TLS handshake, with no HTTP answer:\n {2}curl fails with a TLS alert \(certificate required\), a browser shows its own connection error page/);
  assert.match(printed, new RegExp(`\\nIn a browser: import \\S+/client\\.p12 \\(password "certbound"\\) as your certificate and \\S+/root-ca\\.pem as an authority, then open https://localhost:${port}/\\n`));
  const r = await run('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', pki.rootCa, `https://localhost:${port}/connection`]);
  assert.equal(r.stdout, '000', 'no HTTP status');
  assert.match(r.stderr, /alert certificate required|alert handshake failure/);
});

/** Runs a curl command exactly as the banner prints it; answers its status and body. */
async function runPrinted(line: string, cwd: string): Promise<{ status: number; body: string }> {
  const [cmd, ...args] = line.trim().split(/\s+/);
  assert.equal(cmd, 'curl');
  const r = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args], { cwd });
  const lines = r.stdout.trimEnd().split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

/** One GET on a new TLS connection (no keep-alive: the cluster hands each connection to a worker). */
function getOnNewConnection(port: number, ca: Buffer): Promise<number> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', servername: 'localhost', ca, agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => ok(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end();
  });
}

function startServe(t: TestContext, args: string[], cwd: string) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const waitFor = async (re: RegExp) => {
    const until = Date.now() + 30_000;
    while (!re.test(out)) {
      if (child.exitCode !== null || Date.now() > until) throw new Error(`no ${re} in:\n${out}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
  };
  return { child, output: () => out, waitFor, exited };
}

test('--workers 2 --client-auth none: the banner\'s /whoami renegotiates; one https:// listening line; request ids unique across workers', async (t) => {
  const pki = await devPki();
  const cwd = tempDir('cb-first-run-');
  const port = await freePort();
  const s = startServe(t, ['--workers', '2', '--client-auth', 'none', '--port', String(port), '--dev-pki-dir', pki.dir], cwd);
  await s.waitFor(/2 worker processes/);
  const banner = s.output();
  const whoami = banner.split('\n').find((l) => /^ {2}curl --tls-max 1\.2 .*\/whoami$/.test(l));
  assert.ok(whoami, banner);
  const answer = await runPrinted(whoami, cwd);
  assert.equal(answer.status, 200, answer.body);
  const body = JSON.parse(answer.body) as { protocol: string; handshakes: number; subject: string; certFlags: number };
  assert.deepEqual([body.protocol, body.handshakes, body.certFlags], ['TLSv1.2', 2, 0], 'a second handshake (the renegotiation) brought the certificate');
  assert.match(body.subject, /CN=dev-client/);
  assert.match(banner, /Browsers speak TLS 1\.3, which cannot renegotiate \(403 CB_ERR_NEGOTIATE_TLS13\): add --on-demand-host localhost to cap that host at TLS 1\.2/);

  const ca = readFileSync(pki.rootCa);
  const statuses = await Promise.all(Array.from({ length: 16 }, () => getOnNewConnection(port, ca)));
  assert.ok(statuses.every((c) => c === 200 || c === 503), statuses.join(' '));
  assert.ok(s.child.pid);
  process.kill(s.child.pid, 'SIGTERM');
  assert.equal(await s.exited, 0);

  const records = s.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string; reqId?: string; pid: number });
  const listening = records.filter((r) => r.msg?.startsWith('Server listening at'));
  assert.deepEqual(listening.map((r) => r.msg), [`Server listening at https://127.0.0.1:${port}`], 'once per server, https');
  assert.doesNotMatch(s.output(), /listening at http:/);
  const incoming = records.filter((r) => r.msg === 'incoming request');
  assert.equal(incoming.length, 17, 'the /whoami request and the 16 others');
  const ids = incoming.map((r) => r.reqId ?? '');
  assert.equal(new Set(ids).size, ids.length, `request ids are unique: ${ids.join(' ')}`);
  for (const id of ids) assert.match(id, /^req-\d+-[0-9a-z]+$/);
  const workers = new Set(incoming.map((r) => r.pid));
  assert.equal(workers.size, 2, 'both workers served requests (so a shared id would have shown)');
  assert.equal(new Set(ids.map((id) => id.split('-')[1])).size, 2, 'one epoch per worker');
});
