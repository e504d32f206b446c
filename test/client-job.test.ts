// Transfer jobs without the network: the BG_JOB_STATE machine as tables, retry timing, owner
// checks on the certificate, the job-state errors of the seed, and persistence across a
// restart (a new manager on the same directory).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HResult, hresultName } from '../src/client/hresult.js';
import { applyCall, applyEvent, DEFAULT_RETRY_POLICY, JobState, jobStateName, noProgressExpired, retryDelayMs, type EngineEvent, type JobCall } from '../src/client/job.js';
import { SIZE_UNKNOWN } from '../src/client/job-file.js';
import { JobManager, jobProgress } from '../src/client/job-manager.js';
import { classifyError, classifyStatus } from '../src/client/transfer-error.js';
import { parseContentRange, resumeHeaders } from '../src/client/transfer.js';
import { devPki, tempDir } from './helpers/pki.js';
import { makeStoreRoot, thumbprintOf } from './client-fixtures.js';

const S = JobState;
const ALL_STATES = Object.values(S);
const name = (hr: number) => hresultName(hr) ?? hr.toString(16);

test('BG_JOB_STATE values (bits.h)', () => {
  assert.deepEqual(S, { QUEUED: 0, CONNECTING: 1, TRANSFERRING: 2, SUSPENDED: 3, ERROR: 4, TRANSIENT_ERROR: 5, TRANSFERRED: 6, ACKNOWLEDGED: 7, CANCELLED: 8 });
  assert.equal(jobStateName(5), 'TRANSIENT_ERROR');
});

test('calls: every transition of the BITS reference pages', () => {
  const withFiles = { files: 1, allTransferred: false };
  const done = { files: 1, allTransferred: true };
  const empty = { files: 0, allTransferred: false };
  // [state, call, context, expected hr, expected state]
  const table: [number, JobCall, typeof withFiles, number, number][] = [
    [S.SUSPENDED, 'resume', withFiles, HResult.S_OK, S.QUEUED],
    [S.SUSPENDED, 'resume', empty, HResult.BG_E_EMPTY, S.SUSPENDED],
    [S.SUSPENDED, 'resume', done, HResult.S_OK, S.TRANSFERRED],
    [S.ERROR, 'resume', withFiles, HResult.S_OK, S.QUEUED],
    [S.TRANSIENT_ERROR, 'resume', withFiles, HResult.S_OK, S.QUEUED],
    [S.QUEUED, 'resume', withFiles, HResult.S_OK, S.QUEUED],
    [S.TRANSFERRING, 'resume', withFiles, HResult.S_OK, S.TRANSFERRING],
    [S.TRANSFERRING, 'suspend', withFiles, HResult.S_OK, S.SUSPENDED],
    [S.QUEUED, 'suspend', withFiles, HResult.S_OK, S.SUSPENDED],
    [S.ERROR, 'suspend', withFiles, HResult.S_OK, S.SUSPENDED],
    [S.TRANSFERRED, 'suspend', done, HResult.S_OK, S.SUSPENDED],
    [S.TRANSFERRING, 'cancel', withFiles, HResult.S_OK, S.CANCELLED],
    [S.ERROR, 'cancel', withFiles, HResult.S_OK, S.CANCELLED],
    [S.TRANSFERRED, 'complete', done, HResult.S_OK, S.ACKNOWLEDGED],
    [S.ERROR, 'complete', withFiles, HResult.BG_S_PARTIAL_COMPLETE, S.ACKNOWLEDGED],
    [S.SUSPENDED, 'complete', empty, HResult.BG_S_PARTIAL_COMPLETE, S.ACKNOWLEDGED],
    [S.TRANSFERRED, 'addFile', done, HResult.S_OK, S.QUEUED],
    [S.SUSPENDED, 'addFile', withFiles, HResult.S_OK, S.SUSPENDED],
    [S.TRANSFERRING, 'setOption', withFiles, HResult.S_OK, S.TRANSFERRING],
  ];
  for (const [state, call, ctx, hr, next] of table) {
    const out = applyCall(state as 0, call, ctx);
    assert.deepEqual([name(out.hr), jobStateName(out.state)], [name(hr), jobStateName(next)], `${jobStateName(state)} ${call}`);
  }
  // Once CANCELLED or ACKNOWLEDGED, every call is BG_E_INVALID_STATE and nothing moves.
  for (const state of [S.CANCELLED, S.ACKNOWLEDGED]) {
    for (const call of ['resume', 'suspend', 'cancel', 'complete', 'addFile', 'setOption'] as JobCall[]) {
      assert.deepEqual(applyCall(state, call, done), { hr: HResult.BG_E_INVALID_STATE, state }, `${jobStateName(state)} ${call}`);
    }
  }
});

test('engine events: only the transitions BITS makes, callers win races', () => {
  const table: [number, EngineEvent, number][] = [
    [S.QUEUED, 'start', S.CONNECTING],
    [S.CONNECTING, 'connected', S.TRANSFERRING],
    [S.CONNECTING, 'transientError', S.TRANSIENT_ERROR],
    [S.TRANSFERRING, 'transientError', S.TRANSIENT_ERROR],
    [S.TRANSFERRING, 'fatalError', S.ERROR],
    [S.TRANSIENT_ERROR, 'fatalError', S.ERROR],
    [S.TRANSIENT_ERROR, 'retry', S.QUEUED],
    [S.TRANSIENT_ERROR, 'noProgressTimeout', S.ERROR],
    [S.TRANSFERRING, 'allTransferred', S.TRANSFERRED],
    [S.TRANSFERRING, 'restart', S.QUEUED],
    [S.CONNECTING, 'restart', S.QUEUED],
    // A caller suspended or cancelled while the engine was busy: its events change nothing.
    [S.SUSPENDED, 'connected', S.SUSPENDED],
    [S.SUSPENDED, 'transientError', S.SUSPENDED],
    [S.CANCELLED, 'allTransferred', S.CANCELLED],
    [S.SUSPENDED, 'start', S.SUSPENDED],
    [S.ERROR, 'retry', S.ERROR],
    [S.TRANSFERRED, 'restart', S.TRANSFERRED],
  ];
  for (const [state, event, next] of table) assert.equal(jobStateName(applyEvent(state as 0, event)), jobStateName(next), `${jobStateName(state)} ${event}`);
  for (const s of ALL_STATES) assert.ok(ALL_STATES.includes(applyEvent(s, 'restart')));
});

test('retry timing: BITS defaults, exponential backoff, no-progress timeout', () => {
  assert.equal(DEFAULT_RETRY_POLICY.minRetryDelayMs, 600_000);
  assert.equal(DEFAULT_RETRY_POLICY.noProgressTimeoutMs, 1_209_600_000);
  const p = { minRetryDelayMs: 100, maxRetryDelayMs: 1000, noProgressTimeoutMs: 5000 };
  assert.deepEqual([1, 2, 3, 4, 5, 50].map((n) => retryDelayMs(n, p)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(noProgressExpired(0, 4999, p), false);
  assert.equal(noProgressExpired(0, 5000, p), true);
  assert.equal(noProgressExpired(10, 10, { ...p, noProgressTimeoutMs: 0 }), true);
});

test('transfer errors: TLS, socket and HTTP outcomes as HRESULTs, transient or not', () => {
  const none = { hasCertificate: false, certificateRequested: false };
  const asked = { hasCertificate: false, certificateRequested: true };
  const table: [unknown, { hasCertificate: boolean; certificateRequested: boolean; responseStarted?: boolean }, number, boolean][] = [
    [{ code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', message: 'alert 116' }, none, HResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED, false],
    [{ code: 'EPROTO', message: 'SSL routines: sslv3 alert handshake failure: SSL alert number 40' }, asked, HResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED, false],
    [{ code: 'EPROTO', message: 'SSL routines: sslv3 alert handshake failure: SSL alert number 40' }, none, HResult.ERROR_WINHTTP_SECURE_FAILURE, false],
    [{ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', message: 'x' }, none, HResult.ERROR_WINHTTP_SECURE_FAILURE, false],
    [{ code: 'ERR_TLS_CERT_ALTNAME_INVALID', message: 'x' }, none, HResult.ERROR_WINHTTP_SECURE_FAILURE, false],
    [{ code: 'ECONNREFUSED', message: 'x' }, none, HResult.ERROR_WINHTTP_CANNOT_CONNECT, true],
    [{ code: 'ECONNRESET', message: 'x' }, none, HResult.ERROR_WINHTTP_CONNECTION_ERROR, true],
    [{ code: 'ECONNRESET', message: 'x' }, { hasCertificate: true, certificateRequested: true }, HResult.ERROR_WINHTTP_SECURE_FAILURE, false],
    [{ code: 'ECONNRESET', message: 'x' }, { hasCertificate: true, certificateRequested: true, responseStarted: true }, HResult.ERROR_WINHTTP_CONNECTION_ERROR, true],
    [{ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', message: 'alert 48' }, { hasCertificate: true, certificateRequested: true }, HResult.ERROR_WINHTTP_SECURE_FAILURE, false],
    [{ code: 'CB_TIMEOUT', message: 'x' }, none, HResult.ERROR_WINHTTP_TIMEOUT, true],
    [{ code: 'ENOTFOUND', message: 'x' }, none, HResult.ERROR_WINHTTP_NAME_NOT_RESOLVED, true],
    [{ code: 'EACCES', message: 'x' }, none, HResult.E_ACCESSDENIED, false],
    [{ code: 'ELOOP', message: 'x' }, none, HResult.E_ACCESSDENIED, false],
    [{ code: 'EISDIR', message: 'x' }, none, HResult.E_ACCESSDENIED, false],
  ];
  for (const [err, ctx, hr, transient] of table) {
    const f = classifyError(err, ctx);
    assert.deepEqual([name(f.hr), f.transient], [name(hr), transient], JSON.stringify(err));
  }
  assert.deepEqual([name(classifyStatus(404).hr), classifyStatus(404).transient], ['BG_E_HTTP_ERROR_404', false]);
  assert.deepEqual([name(classifyStatus(503).hr), classifyStatus(503).transient], ['BG_E_HTTP_ERROR_503', true]);
});

test('Range helpers: Content-Range parsing and If-Range choice (RFC 9110)', () => {
  assert.deepEqual(parseContentRange('bytes 100-199/200'), { first: 100, last: 199, complete: 200 });
  assert.deepEqual(parseContentRange('bytes 0-9/*'), { first: 0, last: 9 });
  assert.equal(parseContentRange('bytes 9-1/20'), undefined);
  assert.equal(parseContentRange('items 0-1/2'), undefined);
  assert.equal(parseContentRange(undefined), undefined);
  assert.deepEqual(resumeHeaders(10, { etag: '"abc"', lastModified: 'x' }), { range: 'bytes=10-', 'if-range': '"abc"' });
  assert.deepEqual(resumeHeaders(10, { etag: 'W/"weak"', lastModified: 'Tue, 01 Jan 2030 00:00:00 GMT' }), { range: 'bytes=10-', 'if-range': 'Tue, 01 Jan 2030 00:00:00 GMT' });
  assert.equal(resumeHeaders(10, { etag: 'W/"weak"' }), undefined, 'a weak ETag cannot guard a range');
  assert.equal(resumeHeaders(0, { etag: '"abc"' }), undefined);
  assert.equal(resumeHeaders(10, undefined), undefined);
});

test('progress adds up, unknown sizes stay unknown', () => {
  const f = (bytesTotal: number, bytesTransferred: number, completed: boolean) => ({ remoteUrl: '', localName: '', partPath: '', bytesTotal, bytesTransferred, completed });
  assert.deepEqual(jobProgress({ files: [f(10, 10, true), f(20, 5, false)] }), { bytesTotal: 30, bytesTransferred: 15, filesTotal: 2, filesTransferred: 1 });
  assert.equal(jobProgress({ files: [f(10, 10, true), f(SIZE_UNKNOWN, 5, false)] }).bytesTotal, SIZE_UNKNOWN);
});

test('owner checks, the seed\'s job-state errors, GetClientCertificate and RemoveClientCertificate', async (t) => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-owner-'), pki);
  const m = await JobManager.open({ dir: tempDir('cb-jobs-'), caller: 'alice', store: { root }, autoRun: false });
  t.after(() => m.close());
  const thumb = thumbprintOf(pki.client);
  const { hr, job } = m.createJob('owned');
  assert.equal(hr, 0);
  assert.ok(job);
  assert.equal(job.state, S.SUSPENDED, 'new jobs start suspended');
  assert.equal(job.owner, 'alice');
  assert.equal(job.getClientCertificate().hr, HResult.RPC_X_BAD_STUB_DATA, 'no certificate yet');
  assert.equal(job.removeClientCertificate(), HResult.S_FALSE);

  // Another caller sees the job but may not set or remove its certificate.
  const bobsView = m.getJob(job.id, 'bob').job;
  assert.ok(bobsView);
  assert.equal(await bobsView.setClientCertificateByID(0, 'MY', thumb), HResult.E_ACCESSDENIED);
  assert.equal(await bobsView.setClientCertificateByName(0, 'MY', 'dev-client'), HResult.E_ACCESSDENIED);

  // The owner may; argument errors come before the owner check, as the RPC stub rejects them.
  assert.equal(await bobsView.setClientCertificateByID(0, 'MY', Buffer.alloc(3)), HResult.RPC_X_BAD_STUB_DATA);
  assert.equal(await job.setClientCertificateByID(42, 'MY', thumb), HResult.E_NOTIMPL);
  assert.equal(await job.setClientCertificateByID(0, 'NOPE', thumb), HResult.E_FILE_NOT_FOUND);
  assert.equal(await job.setClientCertificateByID(0, 'MY', 'ab'.repeat(20)), HResult.CRYPT_E_NOT_FOUND);
  assert.equal(await job.setClientCertificateByID(0, null, thumb), HResult.RPC_X_NULL_REF_POINTER);
  assert.equal(await job.setClientCertificateByID(0, 'MY', null), HResult.RPC_X_NULL_REF_POINTER);
  assert.equal(await job.setClientCertificateByID(0, 'x'.repeat(256), thumb), HResult.BG_E_STRING_TOO_LONG);
  assert.equal(await job.setClientCertificateByID(1, 'MY', thumb), 0);
  const got = job.getClientCertificate();
  assert.deepEqual([got.hr, got.location, got.storeName, got.hash?.toString('hex'), got.subjectName], [0, 1, 'MY', thumb, 'certbound dev, users, dev-client']);
  assert.equal(bobsView.removeClientCertificate(), HResult.E_ACCESSDENIED);

  // A change of owner removes the certificate (BITS remark).
  assert.equal(bobsView.takeOwnership(), 0);
  assert.equal(job.owner, 'bob');
  assert.equal(job.getClientCertificate().hr, HResult.RPC_X_BAD_STUB_DATA);
  assert.equal(await job.setClientCertificateByID(0, 'MY', thumb), HResult.E_ACCESSDENIED, 'alice is no longer the owner');
  assert.equal(await bobsView.setClientCertificateByName(0, 'MY', 'users, dev-client'), 0);
  assert.equal(bobsView.removeClientCertificate(), 0);

  // Cancelled and acknowledged jobs refuse every change with BG_E_INVALID_STATE.
  assert.equal(job.resume(), HResult.BG_E_EMPTY);
  assert.equal(bobsView.cancel(), 0);
  assert.equal(job.state, S.CANCELLED);
  assert.equal(await bobsView.setClientCertificateByID(0, 'MY', thumb), HResult.BG_E_INVALID_STATE);
  assert.equal(await bobsView.setClientCertificateByName(0, 'MY', 'dev-client'), HResult.BG_E_INVALID_STATE);
  assert.equal(bobsView.removeClientCertificate(), HResult.BG_E_INVALID_STATE);
  for (const call of [() => job.resume(), () => job.suspend(), () => job.cancel(), () => job.complete(), () => job.addFile('https://127.0.0.1/x', '/tmp/x')]) {
    assert.equal(call(), HResult.BG_E_INVALID_STATE);
  }
  const second = m.createJob('acked').job;
  assert.ok(second);
  assert.equal(second.addFile('http://insecure.example/x', '/tmp/x'), HResult.E_INVALIDARG, 'HTTPS only');
  assert.equal(second.complete(), HResult.BG_S_PARTIAL_COMPLETE);
  assert.equal(second.state, S.ACKNOWLEDGED);
  assert.equal(await second.setClientCertificateByID(0, 'MY', thumb), HResult.BG_E_INVALID_STATE);
});

test('persistence: a new manager on the same directory carries on, interrupted jobs are queued again', async () => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-persist-'), pki);
  const dir = tempDir('cb-jobs-');
  const out = tempDir('cb-out-');
  const first = await JobManager.open({ dir, caller: 'alice', store: { root }, autoRun: false });
  const a = first.createJob('a').job;
  const b = first.createJob('b').job;
  assert.ok(a && b);
  assert.equal(a.addFile('https://127.0.0.1:9/one', join(out, 'one')), 0);
  assert.equal(await a.setClientCertificateByID(0, 'MY', thumbprintOf(pki.client)), 0);
  assert.equal(a.resume(), 0);
  assert.equal(b.addFile('https://127.0.0.1:9/two', join(out, 'two')), 0);
  await first.close();
  // Every write is atomic (temp file + rename): only whole JSON files remain.
  assert.deepEqual(readdirSync(dir).filter((n) => !n.endsWith('.json')), []);
  // Simulate a crash in the middle of a transfer of `b`, with 5 bytes already on disk.
  const bFile = join(dir, `${b.id}.json`);
  const record = JSON.parse(readFileSync(bFile, 'utf8')) as { state: number };
  record.state = S.TRANSFERRING;
  writeFileSync(bFile, JSON.stringify(record));
  writeFileSync(join(out, 'two.certbound-part'), '12345');
  writeFileSync(join(dir, 'garbage.json'), '{ torn');

  const second = await JobManager.open({ dir, caller: 'alice', store: { root }, autoRun: false });
  const a2 = second.getJob(a.id).job;
  const b2 = second.getJob(b.id).job;
  assert.ok(a2 && b2);
  assert.equal(a2.state, S.QUEUED);
  assert.equal(a2.displayName, 'a');
  assert.equal(a2.owner, 'alice');
  assert.equal(a2.getClientCertificate().hash?.toString('hex'), thumbprintOf(pki.client));
  assert.equal(b2.state, S.QUEUED, 'TRANSFERRING at the crash → QUEUED');
  assert.equal(b2.getProgress().bytesTransferred, 5, 'progress is read back from the partial file');
  assert.equal(second.listJobs().length, 2);
  // Cancel and Complete remove the job from the directory, as BITS removes them from its queue.
  assert.equal(b2.cancel(), 0);
  assert.equal(existsSync(join(out, 'two.certbound-part')), false, 'cancel deletes the partial file');
  await second.close();
  const third = await JobManager.open({ dir, caller: 'alice', store: { root }, autoRun: false });
  assert.equal(third.getJob(b.id).hr, HResult.BG_E_NOT_FOUND);
  assert.equal(third.getJob(a.id).hr, 0);
  await third.close();
});

test('state changes go to the logger (stable keys) and the diagnostics channel', async (t) => {
  const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
  const { pino } = await import('pino');
  const { Writable } = await import('node:stream');
  const { JOB_STATE_CHANNEL } = await import('../src/client/job-manager.js');
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } });
  const published: string[] = [];
  const onMessage = (m: unknown) => { published.push((m as { stateName: string }).stateName); };
  subscribe(JOB_STATE_CHANNEL, onMessage);
  t.after(() => unsubscribe(JOB_STATE_CHANNEL, onMessage));
  const m = await JobManager.open({ dir: tempDir('cb-log-jobs-'), caller: 'alice', autoRun: false, logger: pino({ base: null, timestamp: false }, sink) });
  t.after(() => m.close());
  const job = m.createJob('logged').job;
  assert.ok(job);
  job.addFile('https://127.0.0.1:9/x', join(tempDir('cb-log-out-'), 'x'));
  job.resume();
  job.suspend();
  job.cancel();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(lines.map((l) => [l.state, l.previous]), [['SUSPENDED', null], ['QUEUED', 'SUSPENDED'], ['SUSPENDED', 'QUEUED'], ['CANCELLED', 'SUSPENDED']]);
  for (const l of lines) assert.deepEqual(Object.keys(l).sort(), ['bytesTransferred', 'error', 'hr', 'jobId', 'level', 'msg', 'owner', 'previous', 'state']);
  assert.deepEqual(published, ['SUSPENDED', 'QUEUED', 'SUSPENDED', 'CANCELLED']);
});

test('docs/client.md states the defaults the code has', () => {
  const doc = readFileSync(new URL('../docs/client.md', import.meta.url), 'utf8');
  const fmt = (n: number) => n.toLocaleString('en-US').replace(/,/g, ' ');
  for (const [key, value] of Object.entries(DEFAULT_RETRY_POLICY)) {
    assert.ok(doc.includes(`\`${key}\` (default ${fmt(value)}`), `${key} default ${fmt(value)} is documented`);
  }
});
