// Job state files as untrusted input (issue 12): the jobs directory and its files end 0700 / 0600
// whatever was there and whatever the umask; a file whose paths leave their place, whose schema
// fails or that is torn is quarantined with one warning naming it, and the other jobs work; the
// partial file is never written through a link; each command applies the options it is given or
// refuses them with CB_ERR_INVALID_OPTION.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runClientCli } from '../src/client/cli.js';
import { HResult } from '../src/client/hresult.js';
import { JobManager } from '../src/client/job-manager.js';
import { isCertboundError } from '../src/errors.js';
import { devPki, tempDir } from './helpers/pki.js';
import { freePort } from './helpers/exec.js';
import { capture, makeStoreRoot, startFileServer } from './client-fixtures.js';

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);
const ID = (n: number) => `0000000${n}-0000-4000-8000-000000000000`;

function cliWith(env: NodeJS.ProcessEnv) {
  const c = capture(env);
  return {
    ...c,
    run: async (...args: string[]) => {
      c.reset();
      return runClientCli(args, c.io);
    },
  };
}

/** A jobs directory (nested, so that `../..` stays inside `root`) with one good job of one file. */
async function withGoodJob(prefix: string, url = 'https://127.0.0.1:9/a') {
  const root = tempDir(prefix);
  const jobsDir = join(root, 'state', 'jobs');
  const out = join(root, 'out');
  mkdirSync(out);
  const cli = cliWith({ CERTBOUND_JOBS_DIR: jobsDir });
  assert.equal(await cli.run('job', 'create', 'good'), 0);
  const good = cli.out().trim();
  assert.equal(await cli.run('job', 'add', good, url, join(out, 'a.bin')), 0);
  const template = JSON.parse(readFileSync(join(jobsDir, `${good}.json`), 'utf8')) as Record<string, unknown> & { files: Record<string, unknown>[] };
  return { root, jobsDir, out, cli, good, template };
}

test('the jobs directory and job files end 0700 / 0600 under umask 0, whatever modes were there', async () => {
  const dir = join(tempDir('cb-modes-'), 'jobs');
  const old = process.umask(0);
  try {
    mkdirSync(dir, { mode: 0o755 });
    const first = await JobManager.open({ dir, caller: 'alice', autoRun: false });
    const job = first.createJob('a token in the URL').job;
    assert.ok(job);
    assert.equal(job.addFile('https://127.0.0.1:9/x?token=s3cret', join(dir, '..', 'x')), 0);
    await first.close();
    const file = join(dir, `${job.id}.json`);
    assert.deepEqual([mode(dir), mode(file)], ['700', '600']);
    // Widened since: the next manager narrows both before it does anything else.
    chmodSync(dir, 0o755);
    chmodSync(file, 0o644);
    const second = await JobManager.open({ dir, caller: 'alice', autoRun: false });
    assert.deepEqual([mode(dir), mode(file)], ['700', '600']);
    await second.close();
  } finally {
    process.umask(old);
  }
  // A jobs directory that cannot be made private stops the command with its code.
  const notADir = join(tempDir('cb-modes-file-'), 'jobs');
  writeFileSync(notADir, '');
  await assert.rejects(JobManager.open({ dir: notADir }), (e: unknown) => isCertboundError(e, 'CB_ERR_PRIVATE_DIR'));
  const cli = cliWith({ CERTBOUND_JOBS_DIR: notADir });
  assert.equal(await cli.run('job', 'list'), 1);
  assert.equal(cli.err(), `certbound: CB_ERR_PRIVATE_DIR: Cannot use ${notADir} as a private directory (mode 0700, owned by this user): not a directory (EEXIST)\n`);
});

test('paths in job files are confined: an escaping id, a foreign partPath, a bad store name or a link are quarantined, never followed', async () => {
  const { root, jobsDir, out, cli, good, template } = await withGoodJob('cb-confine-');
  const victim = join(root, 'victim.txt');
  writeFileSync(victim, 'precious');
  const file0 = template.files[0] as Record<string, unknown>;
  const cases: [string, unknown, string][] = [
    ['escape.json', { ...template, id: '../../escaped-job' }, 'id "../../escaped-job" is not a job id'],
    [`${ID(1)}.json`, { ...template, id: ID(1), files: [{ ...file0, partPath: victim }] }, `files[0].partPath "${victim}" is not "${join(out, 'a.bin.certbound-part')}"`],
    [`${ID(2)}.json`, { ...template, id: ID(3) }, `id ${ID(3)} does not name this file`],
    [`${ID(4)}.json`, { ...template, id: ID(4), files: [{ ...file0, localName: 'rel/a.bin', partPath: 'rel/a.bin.certbound-part' }] }, 'files[0].localName "rel/a.bin" is not an absolute, normalized path'],
    [`${ID(5)}.json`, { ...template, id: ID(5), certificate: { location: 0, storeName: '..\\..\\etc', thumbprint: 'ab'.repeat(20), subjectName: 'x' } }, 'certificate.storeName "..\\\\..\\\\etc" is not a store name'],
    // The CA file a job keeps (job create --ca-file) is trusted only as an absolute, normalized path.
    [`${ID(7)}.json`, { ...template, id: ID(7), caFile: 'pki/root-ca.pem' }, 'caFile "pki/root-ca.pem" is not an absolute, normalized path'],
    [`${ID(8)}.json`, { ...template, id: ID(8), caFile: '/etc/../tmp/evil-ca.pem' }, 'caFile "/etc/../tmp/evil-ca.pem" is not an absolute, normalized path'],
  ];
  for (const [name, record] of cases) writeFileSync(join(jobsDir, name), JSON.stringify(record));
  // A link to a job file elsewhere (whole and valid there): moved, not read through.
  const elsewhere = join(root, 'elsewhere.json');
  writeFileSync(elsewhere, JSON.stringify({ ...template, id: ID(6) }));
  symlinkSync(elsewhere, join(jobsDir, `${ID(6)}.json`));
  cases.push([`${ID(6)}.json`, undefined, 'a symbolic link']);

  assert.equal(await cli.run('job', 'list'), 0);
  const q = join(jobsDir, 'quarantine');
  // One warning per file, in file-name order (the directory is read sorted).
  const sorted = [...cases].sort(([a], [b]) => (a < b ? -1 : 1));
  assert.equal(cli.err(), sorted.map(([name, , why]) => `certbound: warning: CB_ERR_JOB_FILE_UNSAFE: Job file ${join(jobsDir, name)} names a path outside its place (${why}); moved to ${join(q, name)}\n`).join(''));
  assert.deepEqual(cli.out().trim().split('\n').map((l) => l.split('  ')[0]), [good]);
  assert.equal(existsSync(join(root, 'escaped-job.json')), false, 'nothing written outside the jobs directory');
  assert.deepEqual(readdirSync(q).sort(), cases.map(([n]) => n).sort());
  assert.equal(mode(q), '700');
  // The quarantined jobs are gone for every command: cancel cannot reach the victim.
  assert.equal(await cli.run('job', 'cancel', ID(1)), 1);
  assert.equal(cli.err(), `certbound: job ${ID(1)}: 0x80200001 BG_E_NOT_FOUND\n`);
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
  assert.equal(readFileSync(elsewhere, 'utf8'), JSON.stringify({ ...template, id: ID(6) }), 'the link target is untouched');
  // One warning per file: the next command has nothing to say.
  assert.equal(await cli.run('job', 'list'), 0);
  assert.equal(cli.err(), '');
  assert.equal(await cli.run('job', 'cancel', good), 0);
});

test('a torn or schema-failing job file is skipped with one warning naming it; the other jobs work', async () => {
  const { jobsDir, cli, good, template } = await withGoodJob('cb-invalid-');
  const file0 = template.files[0] as Record<string, unknown>;
  const whole = JSON.stringify({ ...template, id: ID(2) });
  const { partPath: _drop, ...noPart } = file0;
  const cases: [string, string, string][] = [
    [ID(1), JSON.stringify({ ...template, id: ID(1), files: undefined }), 'job.files: required, missing'],
    [ID(2), whole.slice(0, whole.length >> 1), 'not JSON: truncated or corrupt'],
    [ID(3), 'null', 'job: expected an object, got null'],
    [ID(4), JSON.stringify({ ...template, id: ID(4), files: [noPart] }), 'job.files[0].partPath: required, missing'],
    [ID(5), JSON.stringify({ ...template, id: ID(5), state: 42 }), 'job.state: 42 is not one of 0, 1, 2, 3, 4, 5, 6, 7, 8'],
    [ID(6), JSON.stringify({ ...template, id: ID(6), policy: { minRetryDelayMs: 1, maxRetryDelayMs: 2, noProgressTimeoutMs: null } }), 'job.policy.noProgressTimeoutMs: expected a finite number >= 0, got null'],
    [ID(7), JSON.stringify({ ...template, id: ID(7), files: 'a.bin' }), 'job.files: expected a list, got "a.bin"'],
    [ID(8), JSON.stringify({ ...template, id: ID(8), extra: true }), 'job.extra: unknown option (known: version, id, displayName, owner, state, files, certificate, caFile, error, policy, retry, createdAt, modifiedAt, transferCompletedAt)'],
    [ID(9), JSON.stringify({ ...template, id: ID(9), version: 2 }), 'job.version: 2 is not one of 1'],
    ['0000000a-0000-4000-8000-000000000000', JSON.stringify({ ...template, id: '0000000a-0000-4000-8000-000000000000', caFile: ['/a.pem'] }), 'job.caFile: expected a string, got ["/a.pem"]'],
  ];
  for (const [id, text] of cases) writeFileSync(join(jobsDir, `${id}.json`), text);
  const q = join(jobsDir, 'quarantine');
  assert.equal(await cli.run('job', 'list'), 0);
  assert.equal(cli.err(), cases.map(([id, , why]) => `certbound: warning: CB_ERR_JOB_FILE_INVALID: Job file ${join(jobsDir, `${id}.json`)} is not a valid job (${why}); moved to ${join(q, `${id}.json`)}\n`).join(''));
  assert.match(cli.out(), new RegExp(`^${good}  SUSPENDED `));
  assert.equal(await cli.run('job', 'resume', good), 0);
  assert.equal(cli.err(), '');
  assert.equal(readFileSync(join(q, `${ID(2)}.json`), 'utf8'), whole.slice(0, whole.length >> 1), 'kept as it was, for a human');

  // Through the API: `warnings`, and one `warn` line per file with stable keys.
  writeFileSync(join(jobsDir, `${ID(1)}.json`), '{"version":1,');
  const lines: [Record<string, unknown>, string][] = [];
  const logger = { info: () => {}, warn: (o: Record<string, unknown>, msg: string) => { lines.push([o, msg]); } };
  const m = await JobManager.open({ dir: jobsDir, autoRun: false, logger: logger as never });
  const file = join(jobsDir, `${ID(1)}.json`);
  const to = m.warnings[0]?.quarantinedTo ?? '';
  assert.match(to, new RegExp(`^${q}/${ID(1)}\\.json\\.\\d+$`), 'a second file of the same name does not replace the first');
  const message = `Job file ${file} is not a valid job (not JSON: truncated or corrupt); moved to ${to}`;
  assert.deepEqual(m.warnings, [{ file, code: 'CB_ERR_JOB_FILE_INVALID', message, quarantinedTo: to }]);
  assert.deepEqual(lines, [[{ file, code: 'CB_ERR_JOB_FILE_INVALID', quarantinedTo: to }, message]]);
  assert.deepEqual(m.listJobs().map((j) => j.id), [good]);
  await m.close();
});

test('what the API persists passes the schema again: no Infinity, no unknown policy keys, no bad retry option', async () => {
  const dir = tempDir('cb-policy-');
  const m = await JobManager.open({ dir, autoRun: false });
  const job = m.createJob('p').job;
  assert.ok(job);
  assert.equal(job.setRetryPolicy({ noProgressTimeoutMs: Infinity }), HResult.E_INVALIDARG);
  assert.equal(job.setRetryPolicy({ minRetryDelayMs: Number.NaN }), HResult.E_INVALIDARG);
  assert.equal(job.setRetryPolicy({ retryForever: 1 } as never), HResult.E_INVALIDARG);
  assert.equal(job.addFile('https://127.0.0.1:9/x', 'a\0b'), HResult.E_INVALIDARG);
  assert.equal(job.setRetryPolicy({ minRetryDelayMs: 1.5 }), 0);
  await m.close();
  const again = await JobManager.open({ dir, autoRun: false });
  assert.deepEqual(again.warnings, []);
  assert.equal(again.getJob(job.id).job?.snapshot().displayName, 'p');
  await again.close();
  await assert.rejects(JobManager.open({ dir, retry: { minRetryDelayMs: -1 } }), (e: unknown) => isCertboundError(e, 'CB_ERR_INVALID_OPTION') && e.message === 'Invalid option retry.minRetryDelayMs: expected a finite number >= 0, got -1');
});

test('the partial file is never written through a link; cancel removes the link, not its target', async (t) => {
  const pki = await devPki();
  const srv = await startFileServer({ pki, body: Buffer.alloc(4096, 7) });
  t.after(() => srv.close());
  const { root, out, cli } = await withGoodJob('cb-part-link-');
  const storeRoot = tempDir('cb-part-link-stores-');
  const victim = join(root, 'victim.txt');
  writeFileSync(victim, 'precious');
  assert.equal(await cli.run('job', 'create', 'linked'), 0);
  const id = cli.out().trim();
  const dest = join(out, 'b.bin');
  assert.equal(await cli.run('job', 'add', id, srv.url, dest), 0);
  symlinkSync(victim, `${dest}.certbound-part`);
  assert.equal(await cli.run('job', 'resume', id, '--wait', '--ca-file', pki.rootCa, '--store-root', storeRoot), 1);
  assert.match(cli.err(), new RegExp(`^certbound: job ${id} failed: 0x80070005 E_ACCESSDENIED: ELOOP`));
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
  assert.equal(await cli.run('job', 'cancel', id), 0);
  assert.equal(existsSync(`${dest}.certbound-part`), false);
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
});

test('store list warns about a private key that group or others can read', async () => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-key-modes-'), pki);
  const key = join(root, 'current-user', 'MY', 'dev-client.key');
  chmodSync(key, 0o644);
  const cli = cliWith({ CERTBOUND_STORE_ROOT: root });
  assert.equal(await cli.run('store', 'list', '--location', 'current-user', '--store', 'MY'), 0);
  assert.ok(cli.out().includes(`      warning: CB_ERR_SECRET_FILE_MODE: The secret file ${key} is mode 0644: group or others can access it (chmod 600 it)\n`), cli.out());
  chmodSync(key, 0o600);
  assert.equal(await cli.run('store', 'list', '--location', 'current-user', '--store', 'MY', '--json'), 0);
  const [store] = JSON.parse(cli.out()) as { entries: { warnings: string[] }[] }[];
  assert.deepEqual(store?.entries.map((e) => e.warnings), [[]]);
});

test('--retry-delay and --no-progress-timeout apply to resume and watch of an existing job', async () => {
  const { jobsDir, cli, good } = await withGoodJob('cb-retry-opts-', `https://127.0.0.1:${await freePort()}/a`);
  const policy = () => (JSON.parse(readFileSync(join(jobsDir, `${good}.json`), 'utf8')) as { policy: unknown }).policy;
  assert.equal(await cli.run('job', 'resume', good, '--retry-delay', '40', '--no-progress-timeout', '400'), 0);
  assert.deepEqual(policy(), { minRetryDelayMs: 40, maxRetryDelayMs: 3_600_000, noProgressTimeoutMs: 400 });
  assert.equal(await cli.run('job', 'suspend', good), 0);
  // Runs here against a dead port: retried after 40 ms, 80 ms, …, in ERROR once 300 ms pass without progress.
  const started = Date.now();
  assert.equal(await cli.run('job', 'resume', good, '--wait', '--no-progress-timeout', '300', '--store-root', tempDir('cb-empty-stores-')), 1);
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  assert.match(cli.err(), new RegExp(`^certbound: job ${good} failed: 0x80072efd ERROR_WINHTTP_CANNOT_CONNECT`));
  assert.deepEqual(policy(), { minRetryDelayMs: 40, maxRetryDelayMs: 3_600_000, noProgressTimeoutMs: 300 });
  assert.equal(await cli.run('job', 'watch', good, '--retry-delay', '7'), 1, 'watch reports the ERROR; the policy is set first');
  assert.deepEqual(policy(), { minRetryDelayMs: 7, maxRetryDelayMs: 3_600_000, noProgressTimeoutMs: 300 });
  assert.equal(await cli.run('job', 'create', 'fast', '--retry-delay', '5'), 0);
  const fast = cli.out().trim();
  assert.deepEqual((JSON.parse(readFileSync(join(jobsDir, `${fast}.json`), 'utf8')) as { policy: unknown }).policy, { minRetryDelayMs: 5, maxRetryDelayMs: 3_600_000, noProgressTimeoutMs: 1_209_600_000 });
  assert.equal(await cli.run('job', 'resume', good, '--retry-delay', 'soon'), 1);
  assert.match(cli.err(), /^certbound: CB_ERR_INVALID_OPTION: Invalid option --retry-delay: takes a number of ms, got "soon" \(see certbound job --help\)\n$/);
});

test('every job command refuses the options it does not use, before it does anything', async () => {
  const { jobsDir, cli, good } = await withGoodJob('cb-opts-');
  const file = join(jobsDir, `${good}.json`);
  const before = readFileSync(file, 'utf8');
  // The options each command uses (src/client/cli.ts COMMAND_OPTIONS), written out here.
  const uses: Record<string, string[]> = {
    'job create': ['jobs-dir', 'as', 'retry-delay', 'no-progress-timeout', 'ca-file'],
    'job add': ['jobs-dir'],
    'job set-cert': ['jobs-dir', 'as', 'store-root', 'location', 'store', 'thumbprint', 'subject', 'remove'],
    'job resume': ['jobs-dir', 'retry-delay', 'no-progress-timeout', 'wait', 'store-root', 'ca-file'],
    'job suspend': ['jobs-dir'],
    'job cancel': ['jobs-dir'],
    'job complete': ['jobs-dir'],
    'job list': ['jobs-dir', 'json'],
    'job watch': ['jobs-dir', 'retry-delay', 'no-progress-timeout', 'store-root', 'ca-file'],
    'store list': ['store-root', 'location', 'store', 'json'],
  };
  const flags = ['jobs-dir', 'store-root', 'ca-file', 'as', 'retry-delay', 'no-progress-timeout', 'location', 'store', 'thumbprint', 'subject', 'remove', 'wait', 'json'];
  const booleans = new Set(['remove', 'wait', 'json']);
  const positionals: Record<string, string[]> = { 'job create': ['n'], 'job add': [good, 'https://127.0.0.1:9/c', '/tmp/c'], 'job list': [], 'store list': [] };
  let refused = 0;
  for (const [command, allowed] of Object.entries(uses)) {
    for (const flag of flags.filter((f) => !allowed.includes(f))) {
      const args = [...command.split(' '), ...(positionals[command] ?? [good]), `--${flag}`, ...(booleans.has(flag) ? [] : ['1'])];
      assert.equal(await cli.run(...args), 1, args.join(' '));
      const users = Object.entries(uses).filter(([, o]) => o.includes(flag)).map(([c]) => c).join(', ');
      assert.equal(cli.err(), `certbound: CB_ERR_INVALID_OPTION: Invalid option --${flag}: ${command} does not use it (it applies to ${users}) (see certbound job --help)\n`, args.join(' '));
      refused++;
    }
  }
  assert.equal(refused, 96);
  const rules: [string[], string][] = [
    [['job', 'resume', good, '--ca-file', 'x.pem'], 'Invalid option --ca-file: job resume uses it only with --wait (the run that transfers)'],
    [['job', 'resume', good, '--store-root', 'x'], 'Invalid option --store-root: job resume uses it only with --wait (the run that transfers)'],
    [['job', 'set-cert', good, '--remove', '--thumbprint', 'ab'.repeat(20)], 'Invalid option set-cert: takes exactly one of --thumbprint, --subject, --remove (got --thumbprint, --remove)'],
    [['job', 'set-cert', good, '--thumbprint', 'ab'.repeat(20), '--subject', 'x'], 'Invalid option set-cert: takes exactly one of --thumbprint, --subject, --remove (got --thumbprint, --subject)'],
    [['job', 'set-cert', good], 'Invalid option set-cert: takes exactly one of --thumbprint, --subject, --remove (got none)'],
    [['job', 'set-cert', good, '--remove', '--store', 'CA'], 'Invalid option --store: set-cert --remove does not use it'],
  ];
  for (const [args, message] of rules) {
    assert.equal(await cli.run(...args), 1, args.join(' '));
    assert.equal(cli.err(), `certbound: CB_ERR_INVALID_OPTION: ${message} (see certbound job --help)\n`);
  }
  assert.equal(readFileSync(file, 'utf8'), before, 'no command ran');
  assert.deepEqual(readdirSync(jobsDir), [`${good}.json`], 'no job was created');
});
