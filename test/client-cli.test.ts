// The client CLI, as a user runs it: `certbound store list`, then a job walk-through (create,
// add, set-cert, resume, list, watch, complete) against a real mTLS server, with plain lines
// and with the progress bar of a terminal. Also through the `certbound` entry point.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expectTypeOf } from 'expect-type';
import { runClientCli } from '../src/client/cli.js';
import { JobManager, type Job } from '../src/index.js';
import { main } from '../src/server/cli.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { capture, makeStoreRoot, sha256File, startFileServer, thumbprintOf } from './client-fixtures.js';

test('store list: thumbprint, subject and validity of each entry', async () => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-cli-stores-'), pki);
  const c = capture({ CERTBOUND_STORE_ROOT: root });
  assert.equal(await runClientCli(['store', 'list', '--location', 'local-machine', '--store', 'MY'], c.io), 0);
  const thumb = thumbprintOf(pki.client);
  assert.match(c.out(), /local-machine\\MY/);
  assert.equal(c.out().split(thumb).length - 1, 2, 'PEM and PKCS#12 entries of the same certificate');
  assert.match(c.out(), /CN=dev-client, OU=users, O=certbound dev/);
  assert.match(c.out(), /valid \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d {2}private key {2}pkcs12 {2}dev-client\.p12/);
  c.reset();
  assert.equal(await runClientCli(['store', 'list', '--json', '--store-root', root, '--location', '0'], c.io), 0);
  const listing = JSON.parse(c.out()) as { store: string; entries: { thumbprint: string; hasKey: boolean }[] }[];
  assert.deepEqual(listing.map((s) => s.store), ['MY', 'ROOT']);
  assert.equal(listing[1]?.entries[0]?.thumbprint, thumbprintOf(pki.rootCa));
  assert.equal(listing[1]?.entries[0]?.hasKey, false);
  c.reset();
  assert.equal(await runClientCli(['store', 'list', '--store-root', root, '--location', '0', '--store', 'NOPE'], c.io), 1);
  assert.match(c.out(), /0x80070002/);
  assert.equal(await runClientCli(['store', 'list', '--location', 'mars'], c.io), 1, 'a usage error: exit 1, as every certbound command');
  // One store name across all locations: the eight MY stores, nothing about locations without it.
  c.reset();
  assert.equal(await runClientCli(['store', 'list', '--store', 'ROOT'], c.io), 0);
  assert.deepEqual(c.out().split('\n').filter((l) => /^\S/.test(l)).map((l) => l.split('  ')[0]), ['current-user\\ROOT']);
});

test('job walk-through: create, add, set-cert, resume, watch, complete', async (t) => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-cli-stores-'), pki);
  const jobsDir = tempDir('cb-cli-jobs-');
  const out = tempDir('cb-cli-out-');
  const srv = await startFileServer({ pki, clientAuth: 'require', body: randomBytes(512 * 1024), throttle: { chunk: 64 * 1024, everyMs: 5 } });
  t.after(() => srv.close());
  const env = { CERTBOUND_STORE_ROOT: root, CERTBOUND_JOBS_DIR: jobsDir };
  const c = capture(env);
  const cli = async (...args: string[]) => {
    c.reset();
    return runClientCli(args, c.io);
  };
  assert.equal(await cli('job', 'create', 'nightly'), 0);
  const id = c.out().trim();
  assert.match(id, /^[0-9a-f-]{36}$/);
  const dest = join(out, 'payload.bin');
  assert.equal(await cli('job', 'add', id, srv.url, dest), 0);
  assert.equal(await cli('job', 'add', id, 'ftp://x/y', dest), 1);
  assert.match(c.err(), /0x80070057 E_INVALIDARG/);
  // The seed's errors, on the command line.
  assert.equal(await cli('job', 'set-cert', id, '--thumbprint', 'abcd'), 1);
  assert.match(c.err(), /0x800706f7 RPC_X_BAD_STUB_DATA/);
  assert.equal(await cli('job', 'set-cert', id, '--thumbprint', 'ab'.repeat(20)), 1);
  assert.match(c.err(), /0x80092004 CRYPT_E_NOT_FOUND/);
  assert.equal(await cli('job', 'set-cert', id, '--thumbprint', thumbprintOf(pki.client), '--store', 'x'.repeat(300)), 1);
  assert.match(c.err(), /0x80200021 BG_E_STRING_TOO_LONG/);
  assert.equal(await cli('job', 'set-cert', id, '--thumbprint', thumbprintOf(pki.client), '--location', '9'), 1);
  assert.match(c.err(), /0x80004001 E_NOTIMPL/);
  assert.equal(await cli('job', 'set-cert', id, '--thumbprint', thumbprintOf(pki.client), '--as', 'mallory'), 1);
  assert.match(c.err(), /0x80070005 E_ACCESSDENIED/);
  assert.equal(await cli('job', 'set-cert', id, '--thumbprint', thumbprintOf(pki.client), '--location', 'local-machine'), 0);
  // A suspended job is not transferred by watch.
  assert.equal(await cli('job', 'watch', id), 0);
  assert.match(c.out(), /is SUSPENDED/);
  assert.equal(await cli('job', 'resume', id), 0);
  assert.equal(await cli('job', 'list'), 0);
  assert.match(c.out(), new RegExp(`${id}  QUEUED`));
  assert.match(c.out(), /certificate local-machine\\MY [0-9a-f]{40} \(certbound dev, users, dev-client\)/);
  assert.equal(existsSync(dest), false, 'resume alone transfers nothing: watch runs the job');
  assert.equal(await cli('job', 'watch', id), 0);
  const lines = c.out().trim().split('\n');
  assert.match(lines[0] ?? '', /^QUEUED /);
  assert.ok(lines.some((l) => /^TRANSFERRING \d+% /.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('TRANSFERRED 100% 512.0 KiB/512.0 KiB files 1/1')), lines.join('\n'));
  assert.ok(lines.length < 30, 'plain output is a line per state change and per 10 %');
  assert.equal(await cli('job', 'complete', id), 0);
  assert.equal(sha256File(dest), srv.sha256);
  assert.equal(await cli('job', 'complete', id), 1, 'the job is gone after Complete');
  assert.match(c.err(), /0x80200001 BG_E_NOT_FOUND/);
  // Through the `certbound` command, with the progress bar of a terminal.
  const tty = capture(env, true);
  const viaMain = async (...args: string[]) => {
    const saved = process.stdout.write;
    let captured = '';
    (process.stdout as { write: unknown }).write = (s: string) => { captured += s; return true; };
    try {
      return { code: await main(args), out: captured };
    } finally {
      (process.stdout as { write: unknown }).write = saved;
    }
  };
  const created = await viaMain('job', 'create', 'second', '--jobs-dir', jobsDir);
  assert.equal(created.code, 0);
  const id2 = created.out.trim();
  assert.equal((await viaMain('job', 'add', id2, srv.url, join(out, 'second.bin'), '--jobs-dir', jobsDir)).code, 0);
  assert.equal((await viaMain('job', 'set-cert', id2, '--subject', 'dev-client', '--jobs-dir', jobsDir, '--store-root', root)).code, 0);
  assert.equal(await runClientCli(['job', 'resume', id2, '--wait'], tty.io), 0);
  const ESC = String.fromCharCode(27);
  assert.ok(tty.out().includes(`\r${ESC}[2K[${'#'.repeat(30)}] 100%  512.0 KiB / 512.0 KiB  files 1/1  TRANSFERRED`), JSON.stringify(tty.out().slice(-200)));
  assert.match(tty.out(), /\[#*-+\] +\d+%/, 'a partly filled bar was drawn');
});

test('watch reports a failed job with its HRESULT and exit code 1', async (t) => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-cli-stores-'), pki);
  const srv = await startFileServer({ pki, clientAuth: 'require' });
  t.after(() => srv.close());
  const c = capture({ CERTBOUND_STORE_ROOT: root, CERTBOUND_JOBS_DIR: tempDir('cb-cli-jobs-') });
  assert.equal(await runClientCli(['job', 'create', 'no-cert'], c.io), 0);
  const id = c.out().trim();
  assert.equal(await runClientCli(['job', 'add', id, srv.url, join(tempDir('cb-cli-out-'), 'x')], c.io), 0);
  c.reset();
  assert.equal(await runClientCli(['job', 'resume', id, '--wait'], c.io), 1);
  assert.match(c.err(), /failed: 0x80072f0c ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED/);
  assert.equal(await runClientCli(['job', 'frobnicate', id], c.io), 1, 'a usage error: exit 1, as every certbound command');
});

test('public types: the client is exported from the package entry with HRESULT-returning methods', () => {
  expectTypeOf(runClientCli).parameter(0).toEqualTypeOf<string[]>();
  expectTypeOf(runClientCli).returns.toEqualTypeOf<Promise<number>>();
  expectTypeOf<Job['setClientCertificateByID']>().returns.toEqualTypeOf<Promise<number>>();
  expectTypeOf<Job['resume']>().returns.toEqualTypeOf<number>();
  expectTypeOf<Job['getClientCertificate']>().returns.toHaveProperty('hr').toEqualTypeOf<number>();
  expectTypeOf(JobManager.open).returns.resolves.toEqualTypeOf<JobManager>();
});

test('job list | head: a reader that goes away ends the command quietly (no EPIPE stack trace)', async () => {
  const jobs = tempDir('cb-epipe-');
  const bin = join(import.meta.dirname, '..', 'bin', 'certbound.js');
  const created = await run(process.execPath, [bin, 'job', 'create', 'x', '--jobs-dir', jobs]);
  assert.equal(created.code, 0, created.stderr);
  // head reads nothing and exits: certbound's next write meets a closed pipe.
  const r = await run('bash', ['-c', `"${process.execPath}" "${bin}" job list --jobs-dir "${jobs}" | head -c 0; echo "\${PIPESTATUS[0]}"`]);
  assert.equal(r.stdout.trim(), '0', `certbound's own exit code (stderr: ${r.stderr})`);
  assert.equal(r.stderr, '', 'nothing on stderr');
});
