// One exit-code rule for every `certbound` command (docs/cli.md): a usage error is exit code 1
// and one line `certbound: CB_ERR_INVALID_OPTION: …` on standard error, nothing on standard
// output; `--help` anywhere prints that command's help, exits 0 and does nothing else. The tables
// run main() in this process (a process each would take 1 s on a busy machine); a few rows run
// bin/certbound.js in a process of its own, to check the exit code the shell sees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/pki.js';
import { run, type RunResult } from './helpers/exec.js';
import { main } from '../src/server/cli.js';

const BIN = join(resolve(fileURLToPath(new URL('..', import.meta.url))), 'bin', 'certbound.js');

/** Runs `certbound args` in `cwd` with a jobs directory and a store root inside it (nothing outside is touched). */
function certbound(args: readonly string[], cwd: string): Promise<RunResult> {
  const env = { ...process.env, CERTBOUND_JOBS_DIR: join(cwd, 'jobs'), CERTBOUND_STORE_ROOT: join(cwd, 'stores') };
  return run(process.execPath, [BIN, ...args], { cwd, env, timeoutMs: 20_000 });
}

/** main(args) in this process, with cwd and the jobs/store environment of `certbound()`, capturing both outputs. */
async function inProcess(args: readonly string[], cwd: string): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const saved = { log: console.log, error: console.error, out: process.stdout.write, err: process.stderr.write, cwd: process.cwd(), env: { ...process.env } };
  console.log = (...a: unknown[]) => { stdout += `${a.join(' ')}\n`; };
  console.error = (...a: unknown[]) => { stderr += `${a.join(' ')}\n`; };
  // main() awaits (it loads commands on first use): the test runner may report meanwhile, in
  // binary chunks on stdout, which pass through; certbound writes text.
  (process.stdout as { write: unknown }).write = (s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s !== 'string') return (saved.out as (...a: unknown[]) => boolean).call(process.stdout, s, ...rest);
    stdout += s;
    return true;
  };
  (process.stderr as { write: unknown }).write = (s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s !== 'string') return (saved.err as (...a: unknown[]) => boolean).call(process.stderr, s, ...rest);
    stderr += s;
    return true;
  };
  process.chdir(cwd);
  Object.assign(process.env, { CERTBOUND_JOBS_DIR: join(cwd, 'jobs'), CERTBOUND_STORE_ROOT: join(cwd, 'stores') });
  try {
    const code = await main([...args]);
    return { code: code ?? null, signal: null, stdout, stderr };
  } finally {
    Object.assign(console, { log: saved.log, error: saved.error });
    Object.assign(process.stdout, { write: saved.out });
    Object.assign(process.stderr, { write: saved.err });
    process.chdir(saved.cwd);
    for (const k of ['CERTBOUND_JOBS_DIR', 'CERTBOUND_STORE_ROOT']) {
      if (saved.env[k] === undefined) delete process.env[k];
      else process.env[k] = saved.env[k];
    }
  }
}

async function each(cases: readonly (readonly [string[], string])[], cwd: string): Promise<RunResult[]> {
  const out: RunResult[] = [];
  for (const [args] of cases) out.push(await inProcess(args, cwd));
  return out;
}

const JOB_ID = '00000001-0000-4000-8000-000000000000';

// Each bad invocation and the exact line it prints (exit code 1 for all).
const BAD: readonly [string[], string][] = [
  [['launch'], 'Invalid option command: unknown command "launch" (serve, dev-pki, ocsp-responder, job, store, help, version) (see certbound help)'],
  [['help', 'launch'], 'Invalid option help: no help for "launch" (commands: serve, dev-pki, ocsp-responder, job, store) (see certbound help)'],
  [['version', 'x'], 'Invalid option version: takes no arguments (got x) (see certbound help)'],
  [['serve', '--bogus'], 'Invalid option (command line): Unknown option \'--bogus\' (see certbound help serve)'],
  [['serve', 'extra'], 'Invalid option (command line): Unexpected argument \'extra\' (see certbound help serve)'],
  [['serve', '--port', 'eighty'], 'Invalid option --port: expected an integer, got "eighty"'],
  [['serve', '--on-demand-host', ''], 'Invalid option --on-demand-host: expected host name(s) (a name, *.domain or *), not an empty string'],
  [['dev-pki'], 'Invalid option dev-pki: takes one directory: certbound dev-pki DIR (see certbound dev-pki --help)'],
  [['dev-pki', 'a', 'b'], 'Invalid option dev-pki: takes one directory: certbound dev-pki DIR (see certbound dev-pki --help)'],
  [['dev-pki', '--force'], 'Invalid option dev-pki: unknown option --force (see certbound dev-pki --help)'],
  [['ocsp-responder', '--port', 'many'], 'Invalid option --port: expected a number >= 0, got "many"'],
  [['job'], 'Invalid option job: needs a command: job create|add|set-cert|resume|suspend|cancel|complete|list|watch (see certbound job --help)'],
  [['job', 'frobnicate', JOB_ID], 'Invalid option command: unknown command job frobnicate (see certbound job --help)'],
  [['job', 'create'], 'Invalid option create: usage: certbound job create NAME (see certbound job --help)'],
  [['job', 'list', '--ca-file', 'x.pem'], 'Invalid option --ca-file: job list does not use it (it applies to job create, job resume, job watch) (see certbound job --help)'],
  [['job', 'list', '--colour'], 'Invalid option (command line): Unknown option \'--colour\' (see certbound job --help)'],
  [['store'], 'Invalid option store: needs a command: store list (see certbound job --help)'],
  [['store', 'list', 'MY'], 'Invalid option store list: takes no arguments (got MY) (see certbound job --help)'],
  [['job', 'list', 'all'], 'Invalid option list: usage: certbound job list [--json] (see certbound job --help)'],
  [['store', 'list', '--location', 'mars'], 'Invalid option --location: unknown location mars (current-user, local-machine, current-service, services, users, current-user-group-policy, local-machine-group-policy, local-machine-enterprise, 0-7) (see certbound job --help)'],
];

test('usage errors: exit code 1 and one line with CB_ERR_INVALID_OPTION, in every subcommand', async () => {
  const cwd = tempDir('cb-usage-');
  const results = await each(BAD, cwd);
  for (const [i, [args, message]] of BAD.entries()) {
    const r = results[i] as RunResult;
    const what = `certbound ${args.join(' ')}`;
    assert.deepEqual({ code: r.code, stderr: r.stderr, stdout: r.stdout }, { code: 1, stderr: `certbound: CB_ERR_INVALID_OPTION: ${message}\n`, stdout: '' }, what);
  }
  // The same as the shell sees them, from the bin (bin/certbound.js sets the exit code).
  const picked = [11].map((i) => BAD[i] as [string[], string]);
  const real = await Promise.all(picked.map(([args]) => certbound(args, cwd)));
  for (const [i, [args, message]] of picked.entries()) {
    assert.deepEqual({ code: real[i]?.code, stderr: real[i]?.stderr, stdout: real[i]?.stdout }, { code: 1, stderr: `certbound: CB_ERR_INVALID_OPTION: ${message}\n`, stdout: '' }, `bin: certbound ${args.join(' ')}`);
  }
  // A usage error does nothing: no dev PKI, no job, no jobs directory.
  assert.deepEqual(readdirSync(cwd).filter((f) => f !== 'jobs'), []);
  assert.deepEqual(readdirSync(cwd).includes('jobs') ? readdirSync(join(cwd, 'jobs')) : [], [], 'no job was written');
});

test('--help anywhere prints that command\'s help, exits 0 and does nothing else', async () => {
  const cwd = tempDir('cb-help-');
  const cases: [string[], string][] = [
    [['--help'], 'certbound: HTTPS with client certificates'],
    [['help'], 'certbound: HTTPS with client certificates'],
    [['help', 'serve'], 'certbound: HTTPS with client certificates'],
    [['help', '--help'], 'certbound: HTTPS with client certificates'],
    [['version', '--help'], 'certbound: HTTPS with client certificates'],
    [['serve', '--help'], 'certbound: HTTPS with client certificates'],
    [['serve', '--port', '0', '--cert', 'missing.pem', '-h'], 'certbound: HTTPS with client certificates'],
    [['serve', '--bogus', '--help'], 'certbound: HTTPS with client certificates'],
    [['dev-pki', '--help'], 'Usage: certbound dev-pki DIR'],
    [['help', 'dev-pki'], 'Usage: certbound dev-pki DIR'],
    [['ocsp-responder', '--port', '0', '--help'], 'Usage: certbound ocsp-responder [--dev-pki-dir DIR] [--port N] [--host ADDR]'],
    [['job', '--help'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
    [['job', 'create', '--help'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
    [['job', 'create', 'nightly', '--help'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
    [['job', 'watch', JOB_ID, '-h'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
    [['job', 'frobnicate', '--help'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
    [['store', 'list', '--help'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
    [['help', 'store'], 'certbound job|store: BITS-style transfer jobs with client certificates from file stores'],
  ];
  const results = await each(cases, cwd);
  for (const [i, [args, first]] of cases.entries()) {
    const r = results[i] as RunResult;
    const what = `certbound ${args.join(' ')}`;
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
    assert.equal(r.stderr, '', what);
    assert.equal(r.stdout.split('\n')[0], first, what);
  }
  const bin = await certbound(['job', 'create', 'x', '--help'], cwd);
  assert.deepEqual([bin.code, bin.stderr, bin.stdout.split('\n')[0]], [0, '', 'certbound job|store: BITS-style transfer jobs with client certificates from file stores']);
  assert.deepEqual(readdirSync(cwd), [], 'nothing was written: no dev PKI, no jobs directory, no job');
});
