// `certbound job` runs as a user sees them: a job keeps the CA file it was created with (its
// server's CA is in that file only), the progress bar shows rate and ETA, and Ctrl-C — a real
// ^C typed into a real terminal (python3's pty) — finishes the bar's line and leaves the job
// resumable; the next `watch` completes it with a range. Rate and ETA as a table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runClientCli } from '../src/client/cli.js';
import { JobManager } from '../src/client/job-manager.js';
import { formatDuration, formatRateEta, rateOf } from '../src/client/progress-bar.js';
import { JobState } from '../src/client/job.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { capture, sha256File, startFileServer } from './client-fixtures.js';

const BIN = join(resolve(fileURLToPath(new URL('..', import.meta.url))), 'bin', 'certbound.js');
const ESC = String.fromCharCode(27);

// Runs a command in a new pseudo-terminal; types Ctrl-C (the byte 0x03, turned into SIGINT by the
// terminal's line discipline) once the output holds the marker. Prints the output; the exit code on stderr.
const PTY = `
import os, pty, select, sys, time
marker = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
buf = b''
sent = False
deadline = time.time() + 20
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if fd not in r:
        continue
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    buf += data
    if not sent and marker in buf:
        os.write(fd, b'\\x03')
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(buf)
sys.stderr.write(str(os.waitstatus_to_exitcode(status)))
`;

test('rate and ETA: formatted from the samples of the last seconds', () => {
  const rows: [Parameters<typeof formatRateEta>, string][] = [
    [[undefined, 1000], ''],
    [[1536, 3072], '1.5 KiB/s ETA 0:02'],
    [[1536, undefined], '1.5 KiB/s'],
    [[1048576, 1048576 * 83], '1.0 MiB/s ETA 1:23'],
    [[100, 100 * 3723], '100 B/s ETA 1:02:03'],
    [[1, 1e9], '1 B/s ETA >99h'],
    [[0, 10], '0 B/s ETA ?'],
    [[0, 0], '0 B/s ETA 0:00'],
    [[2048, 1], '2.0 KiB/s ETA 0:01'],
    [[Number.NaN, 10], ''],
  ];
  for (const [args, text] of rows) assert.equal(formatRateEta(...args), text, JSON.stringify(args));
  assert.deepEqual([0, 0.2, 7, 59.5, 60, 3599, 3600].map(formatDuration), ['0:00', '0:01', '0:07', '1:00', '1:00', '59:59', '1:00:00']);
  // Bytes per second between the first and the last sample, once they span 500 ms.
  assert.equal(rateOf([]), undefined);
  assert.equal(rateOf([{ t: 0, bytes: 0 }, { t: 499, bytes: 1000 }]), undefined);
  assert.equal(rateOf([{ t: 1000, bytes: 0 }, { t: 1500, bytes: 100 }, { t: 3000, bytes: 4000 }]), 2000);
  assert.equal(rateOf([{ t: 0, bytes: 5000 }, { t: 1000, bytes: 0 }]), undefined, 'a restart from 0 gives no rate');
});

test('a job keeps its --ca-file; Ctrl-C on a terminal ends the bar with a newline and leaves the job resumable', async (t) => {
  const pki = await devPki();
  const base = tempDir('cb-cli-run-');
  // No ROOT or CA store: the server's root is in the job's CA file only.
  const stores = join(base, 'stores');
  mkdirSync(join(stores, 'current-user', 'MY'), { recursive: true });
  const env = { ...process.env, CERTBOUND_JOBS_DIR: join(base, 'jobs'), CERTBOUND_STORE_ROOT: stores };
  const body = randomBytes(1024 * 1024);
  const srv = await startFileServer({ pki, clientAuth: 'none', body, throttle: { chunk: 32 * 1024, everyMs: 40 } });
  t.after(() => srv.close());
  const c = capture(env);
  const cli = async (...args: string[]) => {
    c.reset();
    return runClientCli(args, c.io);
  };

  // Without the CA file the server is not trusted: the file is what makes the transfer work.
  assert.equal(await cli('job', 'create', 'no-ca'), 0);
  const noCa = c.out().trim();
  assert.equal(await cli('job', 'add', noCa, srv.url, join(base, 'no-ca.bin')), 0);
  assert.equal(await cli('job', 'resume', noCa, '--wait'), 1);
  assert.match(c.err(), new RegExp(`^certbound: job ${noCa} failed: 0x80072f8f ERROR_WINHTTP_SECURE_FAILURE: `));

  assert.equal(await cli('job', 'create', 'with-ca', '--ca-file', pki.rootCa), 0);
  const id = c.out().trim();
  const dest = join(base, 'payload.bin');
  assert.equal(await cli('job', 'add', id, srv.url, dest), 0);
  assert.equal(await cli('job', 'list'), 0);
  assert.match(c.out(), new RegExp(`${id}  SUSPENDED[^\\n]*\\n {4}ca-file ${pki.rootCa}\\n`));
  assert.equal((JSON.parse(readFileSync(join(base, 'jobs', `${id}.json`), 'utf8')) as { caFile: string }).caFile, pki.rootCa);
  // A CA file that holds no certificate is refused when the job is created (and the job cancelled).
  assert.equal(await cli('job', 'create', 'bad-ca', '--ca-file', pki.clientKey), 1);
  assert.match(c.err(), /^certbound: create \(--ca-file .*client\.key\) failed: 0x80070057 E_INVALIDARG\n$/);

  // `job resume --wait` in a terminal, without --ca-file; Ctrl-C once a rate and an ETA are shown.
  const r = await run('python3', ['-c', PTY, '/s ETA', process.execPath, BIN, 'job', 'resume', id, '--wait'], { env, timeoutMs: 30_000 });
  assert.equal(r.stderr, '130', `exit code 130 after Ctrl-C:\n${r.stdout}`);
  const out = r.stdout;
  assert.match(out, /\[[#-]{30}\] +\d+% {2}[\d.]+ KiB \/ 1\.0 MiB {2}files 0\/1 {2}TRANSFERRING {2}[\d.]+ KiB\/s ETA 0:0\d/, 'the bar shows rate and ETA');
  // After ^C: the bar redrawn once with where the job stopped, the line ended, one line on how to go on.
  const stopped = new RegExp(`\\r${ESC}\\[2K\\[[#-]{30}\\] +(\\d+)% {2}[\\d.]+ KiB / 1\\.0 MiB {2}files 0/1 {2}STOPPED\\r\\njob ${id} stopped here by Ctrl-C at (\\d+)%, [\\d.]+ KiB: it stays queued with its partial file; certbound job watch ${id} continues it\\r\\n$`);
  const m = stopped.exec(out);
  assert.ok(m, JSON.stringify(out.slice(-400)));
  const pct = Number(m[1]);
  assert.ok(pct > 0 && pct < 100, `stopped part-way (${pct}%)`);

  // Left resumable: queued, with its partial bytes, and the next watch (no --ca-file again) finishes it with a range.
  const manager = await JobManager.open({ dir: join(base, 'jobs'), autoRun: false });
  const left = manager.getJob(id).job?.snapshot();
  await manager.close();
  assert.equal(left?.state, JobState.QUEUED);
  assert.ok((left?.progress.bytesTransferred ?? 0) > 0, 'partial bytes kept');
  const requests = srv.log.length;
  assert.equal(await cli('job', 'watch', id), 0, c.err());
  assert.match(c.out(), /^TRANSFERRED 100% 1\.0 MiB\/1\.0 MiB files 1\/1$/m);
  assert.deepEqual(srv.log.slice(requests).map((e) => e.status), [206], 'continued with a range');
  assert.equal(await cli('job', 'complete', id), 0);
  assert.equal(sha256File(dest), srv.sha256);
});
