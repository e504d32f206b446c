// `certbound serve --workers 2` (bin/certbound.js over dist/): connection ids unique across
// workers, TLS 1.2 session tickets issued by one worker resume on the other, the primary's key
// rotation ends old tickets for all workers, the primary's OCSP staple reaches every worker,
// SIGTERM stops the whole cluster. The CA bundle holds the root only (the client sends its
// intermediate, which a ticket does not keep): a ticket resumed on the other worker restores the
// same chain and verdict from the intermediate the primary relayed. --max-connection-lifetime
// closes an idle keep-alive connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';
import { createDevPki } from '../src/tls/dev-pki.js';
import { issueCertificate, loadIssuer, OID } from '../src/tls/cert-builder.js';
import { startDevPkiResponder } from '../src/ocsp/dev-responder.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'certbound.js');
const ROTATION_MS = 5000;

interface Visit { worker: bigint; connectionId: bigint; reused: boolean; serverSaysResumed: boolean; session: Buffer | undefined; cert: { chainLength: number; authorized: boolean; certFlagsName: string } | null }

/** One TLS 1.2 connection with the dev client certificate: GET /connection, then close. */
function visit(port: number, dir: string, session?: Buffer, client?: { cert: string; key: string }): Promise<Visit> {
  return new Promise((resolvePromise, reject) => {
    let ticket: Buffer | undefined;
    const s = connect({
      host: '127.0.0.1', port, servername: 'localhost', maxVersion: 'TLSv1.2',
      ca: readFileSync(join(dir, 'root-ca.pem')), cert: client?.cert ?? readFileSync(join(dir, 'client.pem')), key: client?.key ?? readFileSync(join(dir, 'client.key')),
      ...(session ? { session } : {}),
    }, () => s.write('GET /connection HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
    s.on('session', (sess: Buffer) => { ticket = sess; });
    let raw = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { raw += d; });
    s.setTimeout(8000, () => s.destroy(new Error('timeout')));
    s.on('error', reject);
    s.on('end', () => {
      const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      try {
        const info = JSON.parse(body) as { connectionId: string; resumed: boolean; clientCertificate: Visit['cert'] };
        const id = BigInt(info.connectionId);
        resolvePromise({ worker: id >> 48n, connectionId: id, reused: s.isSessionReused(), serverSaysResumed: info.resumed, session: ticket, cert: info.clientCertificate });
      } catch {
        reject(new Error(`unexpected answer: ${raw.slice(0, 300)}`));
      }
    });
  });
}

test('serve --workers 2: unique ids (across a killed worker), tickets shared and rotated by the primary, staples relayed to every listener, SIGTERM stops all', async (t) => {
  const cwd = tempDir('certbound-cluster-');
  // A PKI whose server certificate names an OCSP responder on a port of this test (the dev
  // PKI's fixed 8889 may be taken on a shared machine).
  const dir = join(cwd, 'pki');
  const ocspPort = await freePort();
  await createDevPki(dir, { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
  const responder = await startDevPkiResponder(dir, { port: ocspPort });
  t.after(() => responder.close());
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, 'serve', '--workers', '2', '--port', String(port), '--log-level', 'warn', '--ticket-key-rotation', String(ROTATION_MS),
    '--cert', join(dir, 'server.pem'), '--key', join(dir, 'server.key'), '--ca', join(dir, 'root-ca.pem'), '--on-demand-host', 'twin.localhost', '--max-connection-lifetime', '500'], { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.after(() => { try { process.kill(-(child.pid as number), 'SIGKILL'); } catch { /* already gone */ } });
  for (const until = Date.now() + 30_000; Date.now() < until && !/2 worker processes/.test(output);) await sleep(50);
  assert.match(output, /serving https:\/\/localhost:\d+\/ .*\n[\s\S]*2 worker processes/, output);
  assert.equal((output.match(/serving https/g) ?? []).length, 1, 'one banner, from the primary');

  // Connection ids: prefix worker index + 1 in the high 16 bits, both workers reached.
  const visits: Visit[] = [];
  for (let i = 0; i < 12 && new Set(visits.map((v) => v.worker)).size < 2; i++) visits.push(await visit(port, dir));
  assert.deepEqual([...new Set(visits.map((v) => v.worker))].sort(), [1n, 2n], 'connections reached both workers');
  assert.equal(new Set(visits.map((v) => v.connectionId)).size, visits.length, 'connection ids are unique');

  // A ticket from one worker resumes on the other.
  const first = await visit(port, dir);
  assert.ok(first.session, 'the server issued a session ticket');
  assert.deepEqual([first.cert?.authorized, first.cert?.certFlagsName, first.cert?.chainLength], [true, 'OK', 3], 'chain of 3 with the intermediate the client sent');
  // The intermediate travels worker → primary → other worker over IPC; until it arrives, a
  // resumption there fails closed (docs/client-auth-modes.md).
  await sleep(100);
  let other: Visit | undefined;
  for (let i = 0; i < 12 && !other; i++) {
    const v = await visit(port, dir, first.session);
    if (v.worker !== first.worker) other = v;
  }
  assert.ok(other, 'a resumption attempt reached the other worker');
  assert.equal(other.reused, true, 'the other worker resumed the session (client side)');
  assert.equal(other.serverSaysResumed, true, 'the other worker resumed the session (its /connection)');
  assert.deepEqual(other.cert, first.cert, 'the other worker restored the same chain and verdict');

  // A client under a second intermediate, seen in a full handshake by one worker only: the other
  // rebuilds the chain of its ticket from the intermediate the primary relayed.
  const root = await loadIssuer(readFileSync(join(dir, 'root-ca.pem'), 'utf8'), readFileSync(join(dir, 'root-ca.key'), 'utf8'));
  const ca2 = await issueCertificate({ subject: { commonName: 'second client CA' }, issuer: root, ca: true, pathLength: 0 });
  const leaf2 = await issueCertificate({ subject: { commonName: 'client under CA 2' }, issuer: ca2, extKeyUsage: [OID.clientAuth] });
  const client2 = { cert: leaf2.pem + ca2.pem, key: leaf2.keyPem };
  const first2 = await visit(port, dir, undefined, client2);
  assert.deepEqual([first2.cert?.authorized, first2.cert?.chainLength], [true, 3]);
  await sleep(100);
  let other2: Visit | undefined;
  for (let i = 0; i < 12 && !other2; i++) {
    const v = await visit(port, dir, first2.session, client2);
    if (v.worker !== first2.worker) other2 = v;
  }
  assert.equal(other2?.reused, true, 'the second client resumed on the other worker');
  assert.deepEqual(other2?.cert, first2.cert, 'the other worker restored the chain and verdict from the relayed intermediate');

  // After a rotation the old ticket resumes nowhere; a new one resumes across workers again.
  await sleep(ROTATION_MS + 500);
  const stale = [await visit(port, dir, first.session), await visit(port, dir, first.session)];
  assert.deepEqual(stale.map((v) => v.reused), [false, false], 'a ticket from before the rotation is refused by both workers');
  const fresh = await visit(port, dir);
  let resumedElsewhere: Visit | undefined;
  for (let i = 0; i < 12 && !resumedElsewhere; i++) {
    const v = await visit(port, dir, fresh.session);
    if (v.worker !== fresh.worker) resumedElsewhere = v;
  }
  assert.equal(resumedElsewhere?.reused, true, 'a ticket issued after the rotation resumes on the other worker');

  // The primary's staple (dev OCSP responder + one stapler) is served by both workers.
  const statuses = new Set<string>();
  for (let i = 0; i < 40 && statuses.size < 1; i++) {
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-status', '-CAfile', join(dir, 'root-ca.pem')], { input: '', timeoutMs: 8000 });
    const m = /Cert Status: (\w+)/.exec(r.stdout);
    if (m) statuses.add(m[1] as string);
    else await sleep(100);
  }
  assert.deepEqual([...statuses], ['good'], `a worker staples the response the primary fetched; server output:\n${output}`);
  const twice = await Promise.all([0, 1].map(() => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-status', '-CAfile', join(dir, 'root-ca.pem')], { input: '', timeoutMs: 8000 })));
  for (const r of twice) assert.match(r.stdout, /Cert Status: good/);
  // The TLS 1.2 twin of each worker (--on-demand-host) staples the relayed response too.
  const twin = await Promise.all([0, 1, 2].map(() => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'twin.localhost', '-status', '-CAfile', join(dir, 'root-ca.pem')], { input: '', timeoutMs: 8000 })));
  for (const r of twin) {
    assert.match(r.stdout, /Protocol *: TLSv1\.2/, 'the twin answered');
    assert.match(r.stdout, /Cert Status: good/, 'the twin staples the primary\'s response');
  }
  assert.equal(responder.requests, 1, 'the responder saw one client (the primary), not one per worker');

  // kill -9 a worker: its replacement gets a new connection-id epoch, so no id repeats.
  const before = new Set(visits.map((v) => v.connectionId));
  const pids = (await run('ps', ['-o', 'pid=', '--ppid', String(child.pid)])).stdout.split(/\s+/).filter(Boolean).map(Number);
  assert.equal(pids.length, 2, 'two workers');
  process.kill(pids[0] as number, 'SIGKILL');
  const after: Visit[] = [];
  // The survivor answers at once; the replacement forks and loads the app first (seconds on a
  // loaded machine), so the wait is bounded in time, not in visits.
  const replacedBy = Date.now() + 30_000;
  while (Date.now() < replacedBy && !after.some((v) => v.worker === 3n)) {
    try {
      after.push(await visit(port, dir));
    } catch {
      /* the killed worker's connections */
    }
    await sleep(50);
  }
  assert.ok(after.some((v) => v.worker === 3n), `the replacement worker uses epoch 3; saw ${[...new Set(after.map((v) => v.worker))].join(', ')}`);
  for (const v of after) assert.ok(!before.has(v.connectionId), `id ${v.connectionId} was not handed out before the restart`);

  // --max-connection-lifetime 500: an idle keep-alive connection is closed by the server.
  const started = Date.now();
  const idle = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, cert: readFileSync(join(dir, 'client.pem')), key: readFileSync(join(dir, 'client.key')) });
  idle.on('error', () => {});
  idle.once('secureConnect', () => idle.write('GET /connection HTTP/1.1\r\nHost: localhost\r\n\r\n'));
  idle.resume();
  const closedAfter = await Promise.race([new Promise<number>((r) => idle.once('close', () => r(Date.now() - started))), sleep(3000).then(() => -1)]);
  idle.destroy();
  assert.ok(closedAfter >= 480 && closedAfter < 2500, `closed after ${closedAfter} ms`);

  process.kill(child.pid as number, 'SIGTERM');
  assert.equal(await exited, 0, 'the primary exits 0 once its workers have stopped');
  await assert.rejects(visit(port, dir), 'nothing listens any more');
});
