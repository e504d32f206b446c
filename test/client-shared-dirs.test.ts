// Files and directories other users can reach (security review 3): a partial download in a
// shared (1777) directory is never another user's file or a hard link, whether the transfer
// starts, resumes or is completed; a store directory that others can write (or that belongs to
// another user) is reported with CB_ERR_STORE_DIR_UNSAFE; a `.password` sidecar is read up to
// its first line end. The other user is `nobody`, in a process of its own, when the tests run
// as root; the hard-link cases need no second user.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { runClientCli } from '../src/client/cli.js';
import { HResult, hresultName } from '../src/client/hresult.js';
import { JobState } from '../src/client/job.js';
import { JobManager, type Job, type JobSnapshot } from '../src/client/job-manager.js';
import { openStore, StoreLocation } from '../src/client/store.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { capture, makeStoreRoot, P12_PASSWORD, startFileServer } from './client-fixtures.js';

const IS_ROOT = process.getuid?.() === 0;
const NOBODY = { uid: 65534, gid: 65534 };
const ROOT_ONLY = IS_ROOT ? {} : { skip: 'needs root, to act as another user (nobody)' };
const FAST = { minRetryDelayMs: 100, maxRetryDelayMs: 400, noProgressTimeoutMs: 10_000 };
const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);

function cliWith(env: NodeJS.ProcessEnv) {
  const c = capture(env);
  return { ...c, run: async (...args: string[]) => { c.reset(); return runClientCli(args, c.io); } };
}

/** A directory other users can reach: a 1777 directory in a 0755 one. */
/** A job manager in `root` trusting the dev root, closed after the test. */
async function managerIn(t: TestContext, root: string, pki: { rootCa: string }): Promise<JobManager> {
  const manager = await JobManager.open({ dir: join(root, 'jobs'), caller: 'tester', caFile: pki.rootCa, store: { root: join(root, 'stores') }, retry: FAST, timeoutMs: 5000 });
  t.after(() => manager.close());
  return manager;
}

/** Creates a job downloading `url` to `dest`, resumes it and waits until it is TRANSFERRED. */
async function transferred(manager: JobManager, url: string, dest: string, timeoutMs = 10_000): Promise<Job> {
  const { job } = manager.createJob('t');
  assert.ok(job);
  assert.equal(job.addFile(url, dest), 0);
  assert.equal(job.resume(), 0);
  assert.equal(await job.waitFor([JobState.TRANSFERRED, JobState.ERROR], timeoutMs), JobState.TRANSFERRED, job.error?.message);
  return job;
}

function sharedDir(prefix: string): string {
  const root = tempDir(prefix);
  chmodSync(root, 0o755);
  const shared = join(root, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  return shared;
}

test("a partial file another user pre-created in a shared directory is replaced: the destination ends root's, mode 0600", ROOT_ONLY, async (t) => {
  const pki = await devPki();
  const srv = await startFileServer({ pki, body: Buffer.from('{"secret":"root-only-token"}') });
  t.after(() => srv.close());
  const shared = sharedDir('cb-shared-part-');
  const dest = join(shared, 'out.json');
  const planted = await run('/bin/sh', ['-c', 'umask 000; printf planted > "$1"; chmod 666 "$1"', 'sh', `${dest}.certbound-part`], NOBODY);
  assert.equal(planted.code, 0, planted.stderr);
  assert.equal(statSync(`${dest}.certbound-part`).uid, 65534);
  const cli = cliWith({ CERTBOUND_JOBS_DIR: join(tempDir('cb-shared-part-jobs-'), 'jobs') });
  assert.equal(await cli.run('job', 'create', 't'), 0);
  const id = cli.out().trim();
  assert.equal(await cli.run('job', 'add', id, srv.url, dest), 0);
  assert.equal(await cli.run('job', 'resume', id, '--wait', '--ca-file', pki.rootCa, '--store-root', tempDir('cb-shared-part-stores-')), 0, cli.err());
  assert.equal(await cli.run('job', 'complete', id), 0, cli.err());
  const st = statSync(dest);
  assert.deepEqual([st.uid, mode(dest), st.nlink, readFileSync(dest, 'utf8')], [0, '600', 1, '{"secret":"root-only-token"}']);
  assert.equal(existsSync(`${dest}.certbound-part`), false);
  const rewrite = await run('/bin/sh', ['-c', 'echo replaced > "$1"', 'sh', dest], NOBODY);
  assert.notEqual(rewrite.code, 0, 'nobody cannot rewrite the file');
  assert.equal(readFileSync(dest, 'utf8'), '{"secret":"root-only-token"}');
});

test('a partial file that is a hard link to another file is replaced, never written into', async (t) => {
  const pki = await devPki();
  const srv = await startFileServer({ pki, body: randomBytes(64 * 1024) });
  t.after(() => srv.close());
  const root = tempDir('cb-hardlink-part-');
  const victim = join(root, 'victim.txt');
  writeFileSync(victim, 'precious');
  const dest = join(root, 'out.bin');
  linkSync(victim, `${dest}.certbound-part`);
  const job = await transferred(await managerIn(t, root, pki), srv.url, dest);
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
  assert.deepEqual([statSync(victim).nlink, statSync(`${dest}.certbound-part`).nlink, mode(`${dest}.certbound-part`)], [1, 1, '600']);
  assert.equal(job.complete(), HResult.S_OK);
  assert.ok(readFileSync(dest).equals(srv.body));
});

test('complete refuses a partial file that gained a hard link (or, as root, another owner) after the transfer', async (t) => {
  const pki = await devPki();
  const srv = await startFileServer({ pki, body: randomBytes(16 * 1024) });
  t.after(() => srv.close());
  const root = tempDir('cb-complete-check-');
  const dest = join(root, 'out.bin');
  const part = `${dest}.certbound-part`;
  const job = await transferred(await managerIn(t, root, pki), srv.url, dest);
  const extra = join(root, 'extra-link');
  linkSync(part, extra);
  assert.equal(job.complete(), HResult.E_ACCESSDENIED);
  assert.deepEqual([existsSync(dest), job.state], [false, JobState.TRANSFERRED]);
  unlinkSync(extra);
  if (IS_ROOT) {
    chownSync(part, 65534, 65534);
    assert.equal(job.complete(), HResult.E_ACCESSDENIED);
    assert.equal(existsSync(dest), false);
    chownSync(part, 0, 0);
  }
  assert.equal(job.complete(), HResult.S_OK);
  assert.ok(readFileSync(dest).equals(srv.body));
});

test('a partial file replaced while a resumed request is on its way is restarted from byte 0, not appended to', async (t) => {
  const pki = await devPki();
  const root = tempDir('cb-swap-part-');
  const dest = join(root, 'out.bin');
  const part = `${dest}.certbound-part`;
  const elsewhere = join(root, 'elsewhere.bin');
  const body = randomBytes(64 * 1024);
  const half = 32 * 1024;
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  const log: string[] = [];
  const sockets = new Set<Socket>();
  // 1st request: half of the file, then the connection breaks. 2nd (Range): someone hard-links
  // the partial file before the answer comes. 3rd: the whole file.
  const server: Server = createServer({ key: readFileSync(pki.serverKey), cert: readFileSync(pki.server) }, (req, res) => {
    const range = req.headers.range;
    log.push(range ?? 'full');
    if (log.length === 1) {
      res.writeHead(200, { etag, 'content-length': body.length });
      res.write(body.subarray(0, half));
      setTimeout(() => req.socket.destroy(), 200);
      return;
    }
    if (range) {
      linkSync(part, elsewhere);
      const start = Number(/^bytes=(\d+)-$/.exec(range)?.[1]);
      res.writeHead(206, { etag, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'content-length': body.length - start });
      res.end(body.subarray(start));
      return;
    }
    res.writeHead(200, { etag, 'content-length': body.length });
    res.end(body);
  });
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }));
  const addr = server.address();
  const url = `https://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/file`;
  const manager = await managerIn(t, root, pki);
  const errors: string[] = [];
  manager.on('state', (s: JobSnapshot) => { if (s.stateName === 'TRANSIENT_ERROR') errors.push(hresultName(s.error?.hr ?? 0) ?? ''); });
  const job = await transferred(manager, url, dest, 15_000);
  assert.deepEqual(log, ['full', `bytes=${half}-`, 'full']);
  assert.deepEqual(errors.filter((e, i) => e !== errors[i - 1]), ['ERROR_WINHTTP_CONNECTION_ERROR', 'BG_E_LOCAL_FILE_CHANGED']);
  assert.ok(readFileSync(elsewhere).equals(body.subarray(0, half)), 'the other link keeps the first half: nothing was appended through it');
  assert.equal(job.complete(), HResult.S_OK);
  assert.ok(readFileSync(dest).equals(body));
});

test('store list warns about a store directory that group or others can write, or that another user owns', async () => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-store-dir-modes-'), pki);
  const my = join(root, 'current-user', 'MY');
  const cli = cliWith({ CERTBOUND_STORE_ROOT: root });
  const list = async () => {
    assert.equal(await cli.run('store', 'list', '--location', 'current-user', '--store', 'MY'), 0, cli.err());
    return cli.out().split('\n').filter((l) => l.includes('warning:'));
  };
  chmodSync(my, 0o755);
  assert.deepEqual(await list(), []);
  chmodSync(my, 0o777);
  const wide = `The store directory ${my} is mode 0777 (group or others can write it): whoever can write it can add certificates and keys to the store (chmod go-w it; it should belong to this user or root)`;
  assert.deepEqual(await list(), [`  warning: CB_ERR_STORE_DIR_UNSAFE: ${wide}`]);
  assert.equal(await cli.run('store', 'list', '--location', 'current-user', '--store', 'MY', '--json'), 0);
  const [store] = JSON.parse(cli.out()) as { warnings: string[]; entries: unknown[] }[];
  assert.deepEqual([store?.warnings, store?.entries.length], [[`CB_ERR_STORE_DIR_UNSAFE: ${wide}`], 1]);
  const opened = await openStore(StoreLocation.CURRENT_USER, 'MY', { root });
  assert.deepEqual(opened.warnings, [{ dir: my, code: 'CB_ERR_STORE_DIR_UNSAFE', message: wide }]);
  if (IS_ROOT) {
    chmodSync(my, 0o755);
    chownSync(my, 65534, 65534);
    assert.deepEqual(await list(), [`  warning: CB_ERR_STORE_DIR_UNSAFE: The store directory ${my} belongs to uid 65534, neither this user (uid 0) nor root: whoever can write it can add certificates and keys to the store (chmod go-w it; it should belong to this user or root)`]);
  }
});

test('the PKCS#12 password is the first line of <file>.password (LF or CRLF), whatever follows', async () => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-p12-password-'), pki);
  const sidecar = join(root, 'local-machine', 'MY', 'dev-client.p12.password');
  for (const text of [`${P12_PASSWORD}\nsecond line\n`, `${P12_PASSWORD}\r\nsecond line\r\n`, P12_PASSWORD]) {
    writeFileSync(sidecar, text, { mode: 0o600 });
    const store = await openStore(StoreLocation.LOCAL_MACHINE, 'MY', { root });
    assert.deepEqual(store.problems, [], JSON.stringify(text));
    const p12 = store.entries?.find((e) => e.format === 'pkcs12');
    assert.deepEqual([p12?.file, Boolean(p12?.privateKey)], [join(root, 'local-machine', 'MY', 'dev-client.p12'), true], JSON.stringify(text));
  }
});
