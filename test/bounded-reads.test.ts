// Files certbound is given are read only when they are regular files within a bound
// (src/read-file.ts): a FIFO, /dev/zero or a sparse 3 GiB file named as a certificate, config,
// lock or store key is a clear, quick error, never a hang or an exhausted heap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readRegularFile } from '../src/read-file.js';
import { ensurePrivateDir } from '../src/secret-file.js';
import { isCertboundError } from '../src/errors.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';

const BIN = fileURLToPath(new URL('../bin/certbound.js', import.meta.url));

function hostileFiles(dir: string): Record<string, string> {
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const sparse = join(dir, 'sparse');
  writeFileSync(sparse, '');
  truncateSync(sparse, 3 * 1024 ** 3);
  const zero = join(dir, 'zero');
  symlinkSync('/dev/zero', zero);
  return { 'a FIFO': fifo, 'a sparse 3 GiB file': sparse, 'a link to /dev/zero': zero };
}

test('readRegularFile: a FIFO, a device and an oversized file are refused at once with a reason', () => {
  const files = hostileFiles(tempDir());
  const want: Record<string, RegExp> = { 'a FIFO': /not a regular file/, 'a sparse 3 GiB file': /larger than 1024 bytes/, 'a link to /dev/zero': /not a regular file/ };
  for (const [name, path] of Object.entries(files)) assert.throws(() => readRegularFile(path, 1024), want[name] as RegExp, name);
  const link = join(tempDir(), 'link');
  symlinkSync(files['a sparse 3 GiB file'] as string, link);
  assert.throws(() => readRegularFile(link, 1024, { noFollow: true }), { code: 'ELOOP' });
});

test('serve: a FIFO, /dev/zero or a sparse 3 GiB file as --cert, --key, --ca, --crl or --config is one coded line within seconds', async () => {
  const pki = await devPki();
  const dir = tempDir();
  const files = hostileFiles(dir);
  const rows: Array<[string, (p: string) => string[], string]> = [
    ['--cert', (p) => ['--cert', p, '--key', pki.serverKey], 'CB_ERR_PEM_MISSING'],
    ['--key', (p) => ['--cert', pki.server, '--key', p], 'CB_ERR_PEM_MISSING'],
    ['--ca', (p) => ['--cert', pki.server, '--key', pki.serverKey, '--ca', p], 'CB_ERR_PEM_MISSING'],
    ['--crl', (p) => ['--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--crl', p], 'CB_ERR_PEM_MISSING'],
    ['--config', (p) => ['--config', p], 'CB_ERR_CONFIG_FILE'],
  ];
  // Each flag with one kind of hostile file (the kinds rotate; readRegularFile's table covers all).
  const kinds = Object.entries(files);
  const cases = rows.map(([flag, args, code], i) => {
    const [what, path] = kinds[i % kinds.length] as [string, string];
    return { flag, what, args: args(path), code };
  });
  const results = await Promise.all(cases.map(async (c) => ({ c, r: await run(process.execPath, [BIN, 'serve', '--workers', '1', '--port', '0', ...c.args], { cwd: dir, timeoutMs: 15_000 }) })));
  for (const { c, r } of results) {
    assert.equal(r.code, 1, `${c.flag} ${c.what}: exit ${r.code} ${r.signal} ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^certbound: ${c.code}: .*(not a regular file|larger than \\d+ bytes)\\n$`), `${c.flag} ${c.what}`);
  }
});

test('job list with a FIFO or /dev/zero as a job\'s lock, and store list with a FIFO as a key, answer at once', async () => {
  const dir = tempDir();
  const jobs = join(dir, 'jobs');
  mkdirSync(jobs, { mode: 0o700 });
  const created = await run(process.execPath, [BIN, 'job', 'create', 'x', '--jobs-dir', jobs], { timeoutMs: 15_000 });
  assert.equal(created.code, 0, created.stderr);
  const jobId = created.stdout.trim().split(/\s+/).pop() as string;
  execFileSync('mkfifo', [join(jobs, `${jobId}.lock`)]);
  const listed = await run(process.execPath, [BIN, 'job', 'list', '--jobs-dir', jobs], { timeoutMs: 10_000 });
  assert.equal(listed.code, 0, `${listed.signal} ${listed.stderr}`);
  assert.match(listed.stdout, new RegExp(jobId));

  const pki = await devPki();
  const store = join(dir, 'stores', 'current-user', 'MY');
  mkdirSync(store, { recursive: true });
  writeFileSync(join(store, 'c.pem'), execFileSync('cat', [pki.client]));
  execFileSync('mkfifo', [join(store, 'c.key')]);
  chmodSync(join(store, 'c.key'), 0o600);
  const stores = await run(process.execPath, [BIN, 'store', 'list', '--store-root', join(dir, 'stores'), '--location', '0', '--store', 'MY'], { timeoutMs: 10_000 });
  assert.notEqual(stores.signal, 'SIGKILL', 'store list did not hang');
  assert.match(stores.stdout + stores.stderr, /not a regular file/);
});

test('ensurePrivateDir never takes over a shared directory: a sticky one (as /tmp), or one holding another user\'s file, is refused and left as it was', { skip: process.getuid?.() !== 0 && 'needs root to chown a file to another user' }, () => {
  const base = tempDir();
  const sticky = join(base, 'sticky');
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  assert.throws(() => ensurePrivateDir(sticky), (err: unknown) => isCertboundError(err, 'CB_ERR_PRIVATE_DIR') && /sticky bit/.test((err as Error).message));
  const shared = join(base, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o755);
  writeFileSync(join(shared, 'theirs'), 'x');
  execFileSync('chown', ['65534:65534', join(shared, 'theirs')]);
  assert.throws(() => ensurePrivateDir(shared), (err: unknown) => isCertboundError(err, 'CB_ERR_PRIVATE_DIR') && /files of other users \(theirs\)/.test((err as Error).message));
  assert.equal(execFileSync('stat', ['-c', '%a', sticky]).toString().trim(), '1777');
  assert.equal(execFileSync('stat', ['-c', '%a', shared]).toString().trim(), '755');
});
