// The private keys of the dev PKI and of the dev OCSP responder end 0600 in a 0700 directory,
// whatever the umask and whatever was there: `dev-pki DIR` over old 0644 key files (and a key
// that is a symbolic link), `serve` and `ocsp-responder` reusing a dev PKI whose keys others
// could read. Real processes under umask 0 (set by a shell: process.umask() would change the
// test runner's own), modes read back with stat.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevPki, DEV_OCSP_RESPONDER_FILES, DEV_PKI_FILES } from '../src/tls/dev-pki.js';
import { startDevPkiResponder } from '../src/ocsp/dev-responder.js';
import { ensurePrivateDir, writeSecretFile } from '../src/secret-file.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'certbound.js');

const KEYS = Object.values(DEV_PKI_FILES).filter((f) => f.endsWith('.key') || f.endsWith('.p12'));
const PUBLIC = Object.values(DEV_PKI_FILES).filter((f) => f.endsWith('.pem'));
const mode = (path: string) => statSync(path).mode & 0o7777;

/** `certbound ARGS` under umask 0. */
const cliUmask0 = (args: string[], cwd: string) => run('sh', ['-c', 'umask 0 && exec "$@"', 'sh', process.execPath, BIN, ...args], { cwd, timeoutMs: 30_000 });

/** Modes of the directory and of every key and certificate in it, for one deepEqual. */
function modes(dir: string, keys: readonly string[] = KEYS): Record<string, string> {
  const out: Record<string, string> = { '.': mode(dir).toString(8) };
  for (const f of [...keys, ...PUBLIC]) out[f] = mode(join(dir, f)).toString(8);
  return out;
}

function expected(keys: readonly string[] = KEYS): Record<string, string> {
  const out: Record<string, string> = { '.': '700' };
  for (const f of keys) out[f] = '600';
  for (const f of PUBLIC) out[f] = '644';
  return out;
}

test('dev-pki DIR under umask 0: a new directory (and its parents) 0700, keys 0600, certificates 0644', async () => {
  const base = tempDir();
  const dir = join(base, 'a', 'b', 'pki');
  const r = await cliUmask0(['dev-pki', dir], base);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(modes(dir), expected());
  assert.equal(mode(join(base, 'a')), 0o700, 'a parent it created');
});

test('dev-pki DIR over a 0755 directory of 0644 key files and a key that is a symbolic link: keys 0600 (new files), directory 0700, the link\'s target untouched', async () => {
  const base = tempDir();
  const dir = join(base, 'pki');
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  for (const f of KEYS.filter((k) => k !== DEV_PKI_FILES.clientKey)) {
    writeFileSync(join(dir, f), 'old key\n');
    chmodSync(join(dir, f), 0o644);
  }
  for (const f of PUBLIC) {
    writeFileSync(join(dir, f), 'old certificate\n');
    chmodSync(join(dir, f), 0o666);
  }
  // A link where a key goes: writing through it would put the key where the link points.
  const elsewhere = join(base, 'elsewhere.txt');
  writeFileSync(elsewhere, 'not a key\n');
  chmodSync(elsewhere, 0o644);
  symlinkSync(elsewhere, join(dir, DEV_PKI_FILES.clientKey));

  const r = await cliUmask0(['dev-pki', dir], base);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(modes(dir), expected());
  assert.ok(lstatSync(join(dir, DEV_PKI_FILES.clientKey)).isFile(), 'the link was replaced by a file');
  assert.equal(readFileSync(elsewhere, 'utf8'), 'not a key\n');
  assert.equal(mode(elsewhere), 0o644);
  assert.match(readFileSync(join(dir, DEV_PKI_FILES.serverKey), 'utf8'), /^-----BEGIN PRIVATE KEY-----/, 'a new key');
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
});

test('dev-pki DIR refuses a directory open to others that holds other files, and changes nothing there', async () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'README.md'), 'a project\n');
  const r = await cliUmask0(['dev-pki', dir], dir);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `certbound: CB_ERR_DEV_PKI: Cannot use the dev PKI directory ${dir}: it is open to other users (mode 755) and holds other files (README.md): give it a directory of its own, or chmod 700 it\n`);
  assert.equal(mode(dir), 0o755);
  assert.deepEqual(readdirSync(dir), ['README.md']);
});

/** Spawns a long-running CLI command under umask 0; resolves once `ready` is printed. */
async function startUmask0(t: TestContext, args: string[], cwd: string, ready: RegExp): Promise<{ output: string; stop: () => Promise<number | null> }> {
  const child = spawn('sh', ['-c', 'umask 0 && exec "$@"', 'sh', process.execPath, BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  let output = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no ${ready} within 20 s:\n${output}`)), 20_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (ready.test(output)) { clearTimeout(timer); ok(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(() => { clearTimeout(timer); fail(new Error(`exited before ${ready}:\n${output}`)); });
  });
  return { output, stop: () => { child.kill('SIGTERM'); return exited; } };
}

/** Opens every key of the dev PKI in `dir` (responder's included) and the directory to others. */
function loosen(dir: string): void {
  chmodSync(dir, 0o755);
  for (const f of [...KEYS, DEV_OCSP_RESPONDER_FILES.key]) chmodSync(join(dir, f), 0o644);
}

test('serve and ocsp-responder reusing a dev PKI whose keys others could read: keys 0600, directory 0700, and serve says so', async (t) => {
  const base = tempDir();
  const dir = join(base, 'pki');
  // Its own responder port (the AIA URL), so that serve's responder starts whatever else runs.
  const ocspPort = await freePort();
  await createDevPki(dir, { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
  await (await startDevPkiResponder(dir, { port: 0 })).close();
  const allKeys = [...KEYS, DEV_OCSP_RESPONDER_FILES.key];

  loosen(dir);
  const served = await startUmask0(t, ['serve', '--workers', '1', '--dev-pki-dir', dir, '--port', '0', '--log-level', 'warn'], base, /serving https:/);
  assert.deepEqual(modes(dir, allKeys), expected(allKeys));
  assert.match(served.output, new RegExp(`certbound: ${allKeys.join(', ').replace(/\./g, '\\.')} in ${dir} could be read by other users: now mode 0600 \\(delete the directory for new keys\\)\\n`));
  assert.doesNotMatch(served.output, /created a dev PKI/, 'the dev PKI was reused');
  assert.equal(mode(join(dir, 'ocsp-cache')), 0o700, 'the OCSP cache directory, made under umask 0');
  assert.equal(await served.stop(), 0);

  loosen(dir);
  const responder = await startUmask0(t, ['ocsp-responder', '--dev-pki-dir', dir, '--port', '0'], base, /dev OCSP responder for/);
  assert.deepEqual(modes(dir, allKeys), expected(allKeys));
  assert.equal(await responder.stop(), 0);
});

test('the secret-file helpers under umask 0 in this process: 0600 over a 0644 file, a new directory 0700', () => {
  const base = tempDir();
  const file = join(base, 'secret.key');
  writeFileSync(file, 'old\n', { mode: 0o644 });
  chmodSync(file, 0o644);
  const previous = process.umask(0);
  try {
    writeSecretFile(file, 'new\n');
    assert.equal(ensurePrivateDir(join(base, 'new', 'dir')), join(base, 'new', 'dir'));
  } finally {
    process.umask(previous);
  }
  assert.equal(mode(file), 0o600);
  assert.equal(readFileSync(file, 'utf8'), 'new\n');
  assert.equal(mode(join(base, 'new', 'dir')), 0o700);
  // An existing directory of its own files only is narrowed; a shared (sticky) one is refused.
  const own = join(base, 'own');
  mkdirSync(own);
  chmodSync(own, 0o750);
  writeFileSync(join(own, 'a.key'), 'x');
  assert.equal(ensurePrivateDir(own, { ownEntry: (n) => n === 'a.key' }), own);
  assert.equal(mode(own), 0o700);
  const sticky = join(base, 'sticky');
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  assert.throws(() => ensurePrivateDir(sticky, { ownEntry: () => true }), /open to other users \(mode 1777\) and is shared \(sticky bit\)/);
  assert.equal(mode(sticky), 0o1777);
  assert.ok(existsSync(sticky));
});
