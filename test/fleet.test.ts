// Fleet mode with real processes (issue 16): four `certbound serve` processes, each with its own
// state directory, stand in for four machines on one real redis-server: A, B and C in one process
// each, D with two workers (its primary holds the fleet connection and relays keys, staples and
// fleet status to them). The dev OCSP responder (12-second responses, the seed's settings scaled
// to seconds: a refresh every 8 s) sits behind a relay that counts requests and can hold them.
// Checked: one OCSP retrieval per refresh across the fleet and the same staple on every machine;
// TLS 1.3 and TLS 1.2 tickets from one machine resume on another with the client's identity and
// verdict; the fleet secret (and the ticket keys) never appear in Redis; a staple tampered with in
// Redis is refused, logged, never stapled and replaced; Redis stopped: every machine keeps serving,
// says so once and in /readyz, then rejoins with the keys in force; the machine retrieving at a
// refresh is killed and another takes over once its lock expires. And the CLI's checks of the flags.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { startDevOcspResponder, type DevOcspResponder } from '../src/ocsp/responder.js';
import { verifyOcspResponse } from '../src/ocsp/validate.js';
import { parseCertificate } from '../src/ocsp/request.js';
import { pkijs } from '../src/tls/pkijs-engine.js';
import { deriveFleetKeys, documentMac, openTicketRecord } from '../src/fleet/fleet-rules.js';
import { run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { BIN, Machine, OcspRelay, redisCall, redisHash, until, visit, type LogLine } from './helpers/fleet-machines.js';

const NS = 'fleet16';
const LOCK_TTL_MS = 2000;
/** Responses valid 12 s; prefetch from nextUpdate − 4 s: a refresh every 8 s (the fleet's copy is taken while at least the 5 s retry floor remains). */
const VALIDITY_MINUTES = 0.2;
const REFRESH_MS = 8000;
const SETTINGS = ['--srv-ocsp-resp-min-validity-seconds', '1', '--srv-ocsp-resp-max-before-next-update-seconds', '4', '--srv-ocsp-resp-min-before-next-update-seconds', '1', '--srv-ocsp-resp-min-after-next-update-seconds', '1'];

interface CertJson { sha256: string; authorized: boolean; reason: string }
interface ConnectionJson { resumed: boolean; protocol: string; clientCertificate: CertJson | null; ocsp: { stapled: boolean; thisUpdate: string | null; certStatus: string | null } }
interface ReadyJson { status: string; ocsp: { stapled: boolean } | null; fleet?: { state: string; since: string; reason: string | null; tickets: { source: string; generation: number | null; rotatesAt: string | null } } }

interface Fx {
  dir: string;
  ca: IssuedCertificate;
  server: IssuedCertificate;
  client: IssuedCertificate;
  files: { ca: string; cert: string; key: string; clientCert: string; clientKey: string; secret: string };
  /** The 48 random bytes, and the file's text (base64: what certbound takes as the secret). */
  secretRaw: Buffer;
  secretText: string;
  /** SHA-256 of the server certificate's DER: the staple's id in Redis. */
  fp: string;
  redis: RedisServer;
  responder: DevOcspResponder;
  relay: OcspRelay;
  relayUrl: string;
  machines: Machine[];
}
let fx: Fx;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const stapleKey = () => `${NS}:staple:${fx.fp}`;
const clientOpts = () => ({ ca: fx.ca.pem, cert: fx.client.pem, key: fx.client.keyPem });
const alive = () => fx.machines.filter((m) => m.child.exitCode === null && m.child.signalCode === null);
const stapled = (m: Machine) => m.ocsp().filter((l) => l.outcome === 'stapled');
/** The newest thisUpdate any machine stapled (ms). */
const newestStaple = () => Math.max(...fx.machines.flatMap((m) => stapled(m).map((l) => Date.parse(l.thisUpdate as string))));

function machineArgs(name: string, workers: number): string[] {
  return [
    '--workers', String(workers), '--host', '127.0.0.1', '--port', '0', '--state-dir', join(fx.dir, `state-${name}`),
    '--cert', fx.files.cert, '--key', fx.files.key, '--ca', fx.files.ca, '--client-auth', 'optional', '--ocsp-url', fx.relayUrl,
    '--fleet', fx.redis.url, '--fleet-secret-file', fx.files.secret, '--fleet-lock-ttl', String(LOCK_TTL_MS), '--fleet-namespace', NS,
    '--log-level', 'info', ...SETTINGS,
  ];
}

/** Verifies a staple against the server certificate now. */
async function verifies(der: Buffer): Promise<boolean> {
  return (await verifyOcspResponse(der, { cert: parseCertificate(fx.server.der), issuer: parseCertificate(fx.ca.der), now: Date.now() })).ok;
}

/** The BasicOCSPResponse inside an OCSPResponse (throws when it does not parse). */
function basicOf(der: Buffer): pkijs.BasicOCSPResponse {
  const inner = pkijs.OCSPResponse.fromBER(der).responseBytes?.response.valueBlock.valueHexView;
  assert.ok(inner, 'the response has responseBytes');
  return pkijs.BasicOCSPResponse.fromBER(inner);
}

/** Every machine alive logged a stapled update newer than `after` (ms); resolves with those lines, one per machine. */
function nextStaples(after: number, ms: number, machines = alive()): Promise<LogLine[]> {
  return until(() => `a staple newer than ${new Date(after).toISOString()} on ${machines.map((m) => m.name).join(', ')}: ${machines.map((m) => `${m.name}: ${JSON.stringify(stapled(m).slice(-2))}`).join('\n')}`, ms, () => {
    const lines = machines.map((m) => stapled(m).find((l) => Date.parse(l.thisUpdate as string) > after));
    return lines.every(Boolean) ? (lines as LogLine[]) : undefined;
  });
}

/** The staple's sources of one refresh: exactly one machine retrieved it, the others took the fleet's copy. */
function assertOneRetrieval(lines: LogLine[], what: string): void {
  const shown = () => fx.machines.map((m) => `${m.name}: ${JSON.stringify(m.ocsp().slice(-3).map((l) => [l.time, l.outcome, l.source, l.thisUpdate, l.reason]))}`).join('\n');
  assert.equal(new Set(lines.map((l) => l.thisUpdate)).size, 1, `${what}: every machine staples the same response\n${shown()}`);
  assert.deepEqual(lines.map((l) => l.source).sort(), [...Array<string>(lines.length - 1).fill('fleet'), 'responder'], `${what}: one machine retrieved, the others took the fleet's copy\n${shown()}`);
}

/** Every distinct staple any machine stapled came from exactly one retrieval: responder requests = responder-sourced staples = distinct thisUpdates. */
function assertOneFetchPerStaple(what: string): void {
  const all = fx.machines.flatMap((m) => stapled(m));
  const fromResponder = all.filter((l) => l.source === 'responder');
  assert.equal(new Set(fromResponder.map((l) => l.thisUpdate)).size, fromResponder.length, `${what}: no response was retrieved twice`);
  assert.deepEqual([...new Set(all.map((l) => l.thisUpdate))].sort(), fromResponder.map((l) => l.thisUpdate).sort(), `${what}: every staple served was retrieved once`);
  assert.equal(fx.responder.requests, fromResponder.length, `${what}: the responder answered one request per staple`);
}

/** openssl s_client with the client certificate: GET /connection; -sess_out / -sess_in a session file. */
async function opensslVisit(port: number, o: { sessOut?: string; sessIn?: string }): Promise<{ reused: boolean; protocol: string | undefined; body: ConnectionJson }> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', fx.files.ca, '-cert', fx.files.clientCert, '-key', fx.files.clientKey, '-ign_eof',
    '-tls1_3', ...(o.sessOut ? ['-sess_out', o.sessOut] : []), ...(o.sessIn ? ['-sess_in', o.sessIn] : [])],
  { input: 'GET /connection HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', timeoutMs: 8000 });
  const answer = r.stdout.slice(r.stdout.indexOf('HTTP/1.1 200'));
  const head = answer.indexOf('\r\n\r\n');
  const length = Number(/\r\ncontent-length: (\d+)/i.exec(answer.slice(0, head))?.[1]);
  assert.ok(head > 0 && length > 0, `an answer from ${port}:\n${r.stdout}\n${r.stderr}`);
  // "Reused, TLSv1.3, Cipher is …" on a resumed session, "New, …" on a full handshake.
  const m = /^(New|Reused), (TLSv[\d.]+)/m.exec(r.stdout);
  return { reused: m?.[1] === 'Reused', protocol: m?.[2], body: JSON.parse(answer.slice(head + 4, head + 4 + length)) as ConnectionJson };
}

/**
 * Scans every key of Redis: the fleet's keys only, the ticket record's five fields, and neither the
 * fleet secret (raw, its file's base64 text, hex), nor the keys derived from it, nor the ticket keys
 * the record seals (decrypted here with the secret) in any key or value.
 */
async function assertNoSecretInRedis(): Promise<void> {
  const keys = ((await redisCall(fx.redis.port, 'KEYS', '*')) as Buffer[]).map((k) => k.toString('latin1'));
  assert.deepEqual(keys.filter((k) => !k.startsWith(`${NS}:lock:`)).sort(), [`${NS}:fence:staple:${fx.fp}`, `${NS}:fence:tickets`, `${NS}:staple:${fx.fp}`, `${NS}:tickets`].sort());
  const tickets = await redisHash(fx.redis.port, `${NS}:tickets`);
  assert.deepEqual([...tickets.keys()].sort(), ['createdAt', 'fence', 'generation', 'sealed', 'secretId']);
  assert.deepEqual([...(await redisHash(fx.redis.port, stapleKey())).keys()].sort(), ['der', 'from', 'mac', 'storedAt']);
  // The record opens with the secret of the file (so the machines' keys are these), and the keys inside never appear in clear.
  const derived = deriveFleetKeys(Buffer.from(fx.secretText), NS);
  const opened = openTicketRecord(Object.fromEntries([...tickets].map(([k, v]) => [k, v.toString('latin1')])), derived, NS);
  assert.equal(opened?.ok, true, 'the ticket record is sealed under the fleet secret');
  const ticketKeys = (opened as { keys: Buffer }).keys;
  const secrets: Array<[string, Buffer]> = [
    ['secret bytes', fx.secretRaw], ['secret text', Buffer.from(fx.secretText)], ['secret hex', Buffer.from(fx.secretRaw.toString('hex'))],
    ['seal key', derived.sealKey], ['seal key base64', Buffer.from(derived.sealKey.toString('base64'))], ['seal key hex', Buffer.from(derived.sealKey.toString('hex'))],
    ['MAC key', derived.macKey], ['MAC key base64', Buffer.from(derived.macKey.toString('base64'))], ['MAC key hex', Buffer.from(derived.macKey.toString('hex'))],
    ['ticket keys', ticketKeys], ['ticket keys base64', Buffer.from(ticketKeys.toString('base64'))], ['ticket keys hex', Buffer.from(ticketKeys.toString('hex'))],
  ];
  for (const key of keys) {
    const type = await redisCall(fx.redis.port, 'TYPE', key);
    const values: Buffer[] = [Buffer.from(key)];
    if (type === 'hash') values.push(...[...(await redisHash(fx.redis.port, key))].flatMap(([k, v]) => [Buffer.from(k), v]));
    else if (type === 'string') values.push((await redisCall(fx.redis.port, 'GET', key)) as Buffer);
    else assert.fail(`unexpected ${String(type)} key ${key}`);
    for (const v of values) for (const [what, s] of secrets) assert.equal(v.indexOf(s), -1, `${what} in ${key}`);
  }
}

before(async () => {
  const dir = tempDir('certbound-fleet-');
  const [redis, ca] = await Promise.all([startRedis(), issueCertificate({ subject: { commonName: 'fleet test CA' }, ca: true })]);
  const [server, client] = await Promise.all([
    issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost', '127.0.0.1'] }),
    issueCertificate({ subject: { commonName: 'fleet client' }, issuer: ca, extKeyUsage: [OID.clientAuth] }),
  ]);
  const responder = await startDevOcspResponder({ issuer: ca, validityMinutes: VALIDITY_MINUTES });
  const relay = new OcspRelay(responder.url);
  const relayUrl = await relay.listen();
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), clientCert: join(dir, 'client.pem'), clientKey: join(dir, 'client.key'), secret: join(dir, 'fleet.secret') };
  writeFileSync(files.ca, ca.pem);
  writeFileSync(files.cert, server.pem);
  writeFileSync(files.key, server.keyPem, { mode: 0o600 });
  writeFileSync(files.clientCert, client.pem);
  writeFileSync(files.clientKey, client.keyPem, { mode: 0o600 });
  const secretRaw = randomBytes(48);
  const secretText = secretRaw.toString('base64');
  writeFileSync(files.secret, `${secretText}\n`, { mode: 0o600 });
  fx = { dir, ca, server, client, files, secretRaw, secretText, fp: sha256(server.der), redis, responder, relay, relayUrl, machines: [] };
  // Four machines started together, as a fleet restarts: three in one process each, and D with
  // two workers (its primary holds the fleet connection and relays keys, staples and status).
  fx.machines = [['a', 1], ['b', 1], ['c', 1], ['d', 2]].map(([name, workers]) => new Machine(name as string, machineArgs(name as string, workers as number), dir));
  await Promise.all(fx.machines.map((m) => m.listening()));
});

after(async () => {
  // FLEET_DEBUG=DIR keeps each machine's output (DIR/a.log …) for a failure's post-mortem.
  if (process.env.FLEET_DEBUG) for (const m of fx?.machines ?? []) writeFileSync(join(process.env.FLEET_DEBUG, `${m.name}.log`), m.output);
  for (const m of fx?.machines ?? []) m.kill();
  await Promise.all((fx?.machines ?? []).map((m) => Promise.race([m.exited, sleep(3000)])));
  await fx?.relay.close();
  await fx?.responder.close();
  await fx?.redis.stop();
});

describe('a fleet of four machines on one Redis', () => {
  test('start-up: one OCSP retrieval for the four machines, each staples the same response', async () => {
    const firsts = fx.machines.map((m) => stapled(m)[0] as LogLine);
    assert.ok(firsts.every(Boolean), 'every machine stapled at start-up');
    assertOneRetrieval(firsts, 'start-up');
    // One request, not one per machine (more only if a scheduled refresh came already, on a slow start: one each).
    assertOneFetchPerStaple('start-up');
    assert.equal(fx.responder.requests, new Set(fx.machines.flatMap((m) => stapled(m).map((l) => l.thisUpdate))).size);
    // D twice more: its port is shared by two workers.
    const visits = await Promise.all([...fx.machines, fx.machines[3] as Machine, fx.machines[3] as Machine].map((m) => visit<ConnectionJson>(m.port, clientOpts())));
    const staples = visits.map((v) => v.staple);
    assert.ok(staples[0] && (await verifies(staples[0])), 'the staple verifies');
    assert.ok(staples.every((s) => s?.equals(staples[0] as Buffer)), 'every machine staples the same bytes (D: both workers, relayed by its primary)');
    assert.deepEqual(visits.map((v) => v.body.ocsp.thisUpdate), visits.map(() => new Date(newestStaple()).toISOString()));
    const stored = (await redisHash(fx.redis.port, stapleKey())).get('der');
    assert.ok(stored?.equals(staples[0] as Buffer), 'the staple in Redis is the one served');
  });

  test('a TLS 1.3 ticket from machine A resumes on B (openssl) and on D\'s workers, a TLS 1.2 one on C: identity and verdict restored', async () => {
    const [a, b, c, d] = fx.machines as [Machine, Machine, Machine, Machine];
    const fingerprint = /sha256 Fingerprint=([0-9A-F:]+)/i.exec((await run('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', fx.files.clientCert])).stdout)?.[1]?.replace(/:/g, '').toLowerCase();
    assert.equal(fingerprint, sha256(fx.client.der));
    const identity = (r: { reused: boolean; protocol: string | null | undefined; body: ConnectionJson }) => [r.reused, r.protocol, r.body.resumed, r.body.clientCertificate?.sha256, r.body.clientCertificate?.authorized];
    const sess = join(fx.dir, 'a13.sess');
    assert.deepEqual(identity(await opensslVisit(a.port, { sessOut: sess })), [false, 'TLSv1.3', false, fingerprint, true]);
    assert.deepEqual(identity(await opensslVisit(b.port, { sessIn: sess })), [true, 'TLSv1.3', true, fingerprint, true], 'B resumed A\'s TLS 1.3 session');
    for (let i = 0; i < 2; i++) assert.deepEqual(identity(await opensslVisit(d.port, { sessIn: sess })), [true, 'TLSv1.3', true, fingerprint, true], 'D (a worker) resumed A\'s TLS 1.3 session');

    const first12 = await visit<ConnectionJson>(a.port, { ...clientOpts(), version: 'TLSv1.2' });
    assert.deepEqual(identity(first12), [false, 'TLSv1.2', false, fingerprint, true]);
    assert.deepEqual(identity(await visit<ConnectionJson>(c.port, { ...clientOpts(), version: 'TLSv1.2', session: first12.session })), [true, 'TLSv1.2', true, fingerprint, true], 'C resumed A\'s TLS 1.2 session');

    // Every machine holds the fleet's keys of one generation; D's /readyz (a worker's) shows its primary's status.
    const ready = await Promise.all(fx.machines.map((m) => visit<ReadyJson>(m.port, { ...clientOpts(), path: '/readyz' })));
    const generation = ready[0]?.body.fleet?.tickets.generation;
    assert.equal(typeof generation, 'number');
    for (const r of ready) assert.deepEqual([r.status, r.body.status, r.body.fleet?.state, r.body.fleet?.reason, r.body.fleet?.tickets.source, r.body.fleet?.tickets.generation], [200, 'ready', 'connected', null, 'fleet', generation]);
  });

  test('the fleet secret, its derived key and the ticket keys never appear in Redis', async () => {
    await assertNoSecretInRedis();
  });

  test('a scheduled refresh: the four machines race for it, one retrieves', async () => {
    const before = newestStaple();
    const lines = await nextStaples(before, REFRESH_MS + 4000);
    assertOneRetrieval(lines, 'scheduled refresh');
    await sleep(300);
    assertOneFetchPerStaple('after a scheduled refresh');
    const visits = await Promise.all(fx.machines.map((m) => visit<ConnectionJson>(m.port, clientOpts())));
    assert.deepEqual(visits.map((v) => v.body.ocsp.thisUpdate), lines.map((l) => l.thisUpdate));
    assert.ok(visits.every((v) => v.staple?.equals(visits[0]?.staple as Buffer)));
  });

  test('a staple tampered with in Redis is refused and logged by every machine, never stapled, and replaced by one retrieval at the next refresh', async () => {
    const port = fx.redis.port;
    const keys = deriveFleetKeys(Buffer.from(fx.secretText), NS);
    // Without the fleet secret a writer cannot make a MAC: refused before any parsing. With it (a
    // machine of the fleet gone wrong), the bytes are still checked as a retrieved response is.
    const cases = [
      { kind: 'garbage without a MAC', mac: false, reason: 'mac' },
      { kind: 'a flipped signature byte, with a valid MAC', mac: true, reason: 'bad-signature' },
      { kind: 'garbage with a valid MAC', mac: true, reason: 'malformed' },
    ] as const;
    const good = (await redisHash(port, stapleKey())).get('der') as Buffer;
    const before = newestStaple();
    let bad = Buffer.alloc(0);
    for (const { kind, mac, reason } of cases) {
      if (reason !== 'bad-signature') bad = Buffer.from('not an OCSP response');
      else {
        // A byte inside the signature BIT STRING: the response still parses, its signature fails.
        const sig = Buffer.from(basicOf(good).signature.valueBlock.valueHexView);
        const at = good.indexOf(sig);
        assert.ok(at > 0);
        bad = Buffer.from(good);
        bad[at + sig.length - 2] = (bad[at + sig.length - 2] as number) ^ 0x01;
        assert.ok(basicOf(bad), 'still parses');
      }
      const refusals = (m: Machine) => m.logs.filter((l) => l.outcome === 'refused' && (l.event === 'ocsp-update' || l.event === 'fleet-document'));
      const refusedBefore = fx.machines.map((m) => refusals(m).length);
      const storedAt = Date.now();
      const fields = mac ? ['der', bad, 'storedAt', String(storedAt), 'mac', documentMac(keys, 'staple', fx.fp, storedAt, bad)] : ['der', bad];
      assert.equal(await redisCall(port, 'HSET', stapleKey(), ...fields), 0);
      // An announcement as another machine would send it, so that every machine reads the document now.
      // Six subscribers: A, B, C, D's primary and D's two workers (their connection serves the revocation cache).
      assert.equal(await redisCall(port, 'PUBLISH', `${NS}:announce`, JSON.stringify({ kind: 'staple', id: fx.fp, fence: 999, from: 'attacker', nextUpdate: Date.now() + 86_400_000 })), 6);
      await until(() => `every machine refused ${kind}; not: ${fx.machines.filter((m, i) => refusals(m).length <= (refusedBefore[i] as number)).map((m) => m.name).join(', ')}`, 15_000, () => fx.machines.every((m, i) => refusals(m).length > (refusedBefore[i] as number)));
      // Each machine staples what it verified before, never the tampered bytes.
      for (const v of await Promise.all(fx.machines.map((m) => visit<ConnectionJson>(m.port, clientOpts())))) {
        assert.ok(v.staple && !v.staple.equals(bad) && (await verifies(v.staple)), 'a verified staple, not the tampered one');
      }
      fx.machines.forEach((m, i) => {
        // Read once for the announcement, and once more if the machine's planned refresh came meanwhile: each time refused the same way, and serving.
        const refused = refusals(m).slice(refusedBefore[i]);
        const shape = mac ? ['ocsp-update', 'fleet', reason, true, true] : ['fleet-document', 'staple', fx.fp, reason, 40];
        for (const l of refused) {
          assert.deepEqual(l.event === 'fleet-document'
            ? [l.event, l.kind, l.id, l.reason, l.level]
            : [l.event, l.source, l.reason, String(l.detail).startsWith('fleet staple:'), l.serving], shape, `${m.name} refused ${kind} (and kept serving)`);
        }
      });
    }
    // The announcements made no machine retrieve (fleet-staples.test.ts counts that exactly); the
    // next planned refresh replaces the tampered bytes with one retrieval for the fleet.
    const lines = await nextStaples(before, REFRESH_MS + 4000);
    assertOneRetrieval(lines, 'after tampering');
    const stored = (await redisHash(port, stapleKey())).get('der') as Buffer;
    assert.ok(!stored.equals(bad) && (await verifies(stored)), 'a verified response replaced it in Redis');
    const visits = await Promise.all(fx.machines.map((m) => visit<ConnectionJson>(m.port, clientOpts())));
    for (const v of visits) {
      assert.ok(v.staple?.equals(stored), 'every machine staples the good replacement, never the tampered bytes');
      assert.equal(v.body.ocsp.thisUpdate, lines[0]?.thisUpdate);
    }
    assertOneFetchPerStaple('after tampering');
  });

  test('Redis stopped: every machine serves, logs one CB_ERR_FLEET_UNAVAILABLE and reports degraded; Redis back: each rejoins and tickets resume across machines', async () => {
    const [a, b, c, d] = fx.machines as [Machine, Machine, Machine, Machine];
    // Per process (pino's pid): a cluster's workers hold fleet connections of their own (the revocation cache).
    const outageLines = (m: Machine, pid = m.pid) => m.logs.filter((l) => l.code === 'CB_ERR_FLEET_UNAVAILABLE' && l.pid === pid);
    const readyz = (m: Machine) => visit<ReadyJson>(m.port, { ...clientOpts(), path: '/readyz' });
    const generation = (await readyz(a)).body.fleet?.tickets.generation as number;
    const requests = fx.responder.requests;
    const redisUrl = new URL(fx.redis.url).href;
    await fx.redis.stop();
    await until('every machine says Redis is unavailable', 5000, () => fx.machines.every((m) => outageLines(m).length > 0));
    // D twice: its port is shared by two workers, each with the status its primary relays.
    for (const m of [...fx.machines, d]) {
      const r = await readyz(m);
      assert.equal(r.status, 200, `${m.name} stays ready`);
      assert.deepEqual([r.body.status, r.body.fleet?.state, typeof r.body.fleet?.reason, r.body.fleet?.tickets.source, r.body.ocsp?.stapled], ['ready', 'degraded', 'string', 'fleet', true], `${m.name}: ${JSON.stringify(r.body)}`);
      const v = await visit<ConnectionJson>(m.port, clientOpts());
      assert.deepEqual([v.status, v.body.clientCertificate?.authorized, v.body.ocsp.stapled, Boolean(v.staple)], [200, true, true, true], `${m.name} serves with its own state`);
    }
    // A ticket taken during the outage: the keys in force stay, so it resumes on another machine too.
    const during = await visit<ConnectionJson>(a.port, { ...clientOpts(), version: 'TLSv1.3' });
    assert.equal((await visit<ConnectionJson>(b.port, { ...clientOpts(), version: 'TLSv1.3', session: during.session })).reused, true, 'resumed on B during the outage');
    await fx.redis.start();
    await until('every machine rejoined', 8000, () => fx.machines.every((m) => m.logs.some((l) => l.msg === 'fleet: Redis is back; rejoined the fleet' && l.pid === m.pid)));
    // The rejoining machines put the keys in force back into Redis, as the next generation of the same keys.
    let last: ReadyJson[] = [];
    await until(() => `every /readyz says connected, generation ${generation + 1}: ${JSON.stringify(last)}`, 5000, async () => {
      last = (await Promise.all([...fx.machines, d].map(readyz))).map((r) => r.body);
      return last.every((r) => r.status === 'ready' && r.fleet?.state === 'connected' && r.fleet.reason === null && r.fleet.tickets.source === 'fleet' && r.fleet.tickets.generation === generation + 1);
    });
    assert.equal((await redisHash(fx.redis.port, `${NS}:tickets`)).get('generation')?.toString(), String(generation + 1));
    for (const m of fx.machines) {
      assert.deepEqual(outageLines(m).map((l) => [l.level, l.state, l.url]), [[40, 'degraded', redisUrl]], `${m.name}'s primary logs the outage once`);
      // One line per machine: D's workers (their own connection, for the revocation cache) leave it to their primary.
      assert.deepEqual([...new Set(m.logs.filter((l) => l.code === 'CB_ERR_FLEET_UNAVAILABLE').map((l) => l.pid as number))], [m.pid], `${m.name}: one process says it`);
    }
    // The outage's ticket from A resumes everywhere; a new ticket from C resumes on A.
    for (const m of [a, b, c, d]) {
      const v = await visit<ConnectionJson>(m.port, { ...clientOpts(), version: 'TLSv1.3', session: during.session });
      assert.deepEqual([v.reused, v.body.resumed, v.body.clientCertificate?.sha256], [true, true, sha256(fx.client.der)], `the outage's ticket from A resumes on ${m.name}`);
    }
    const fresh = await visit<ConnectionJson>(c.port, { ...clientOpts(), version: 'TLSv1.3' });
    assert.equal((await visit<ConnectionJson>(a.port, { ...clientOpts(), version: 'TLSv1.3', session: fresh.session })).reused, true, 'a new ticket from C resumes on A');
    // A refresh that came due during the outage was made by each machine on its own (no lock to share): at most one each.
    assert.ok(fx.responder.requests - requests <= fx.machines.length, `retrievals during the outage: ${fx.responder.requests - requests}`);
  });

  test('CLI: --fleet needs a secret file of mode 0600 with at least 32 bytes, and a rotation no shorter than the ticket lifetime', async () => {
    const base = ['--workers', '1', '--port', '0', '--cert', fx.files.cert, '--key', fx.files.key, '--ca', fx.files.ca, '--state-dir', join(fx.dir, 'state-cli')];
    const open = join(fx.dir, 'open.secret');
    writeFileSync(open, `${randomBytes(48).toString('base64')}\n`);
    chmodSync(open, 0o644);
    const short = join(fx.dir, 'short.secret');
    writeFileSync(short, randomBytes(5).toString('hex'), { mode: 0o600 }); // 10 bytes, no newline to trim
    const cases: Array<[string[], string]> = [
      [['--fleet', 'redis://x:1'], 'CB_ERR_INVALID_OPTION'],
      [['--fleet', fx.redis.url, '--fleet-secret-file', open], 'CB_ERR_FLEET_SECRET'],
      [['--fleet', fx.redis.url, '--fleet-secret-file', short], 'CB_ERR_FLEET_SECRET'],
      [['--fleet', fx.redis.url, '--fleet-secret-file', fx.files.secret, '--ticket-key-rotation', '60000'], 'CB_ERR_INVALID_OPTION'],
    ];
    const results = await Promise.all(cases.map(([args]) => run(process.execPath, [BIN, 'serve', ...base, ...args], { cwd: fx.dir, timeoutMs: 10_000 })));
    results.forEach((r, i) => {
      const [args, code] = cases[i] as [string[], string];
      assert.equal(r.code, 1, `${args.join(' ')} exits 1:\n${r.stdout}${r.stderr}`);
      const codes = [...new Set((r.stdout + r.stderr).match(/CB_ERR_[A-Z_]+/g) ?? [])];
      assert.deepEqual(codes, [code], `${args.join(' ')}:\n${r.stderr}`);
    });
    assert.match(results[0]?.stderr ?? '', /--fleet-secret-file/);
    assert.match(results[1]?.stderr ?? '', /mode 0644/);
    assert.match(results[2]?.stderr ?? '', /holds 10 bytes; at least 32/);
    assert.match(results[3]?.stderr ?? '', /ticket-?[kK]ey-?[rR]otation/);
  });

  test('the machine retrieving at a refresh is killed: another takes over once the lock expires, and the survivors serve its staple', async () => {
    const before = newestStaple();
    const requests = fx.responder.requests;
    // The next retrieval is held by the relay longer than the lock lives.
    const holdMs = LOCK_TTL_MS + 500;
    fx.relay.delayMs = holdMs;
    const arrived = new Promise<number>((resolve) => { fx.relay.onArrival = () => resolve(Date.now()); });
    const arrivedAt = await Promise.race([arrived, sleep(REFRESH_MS + 4000).then(() => { throw new Error('no retrieval at the refresh'); })]);
    fx.relay.onArrival = undefined;
    const lock = await redisCall(fx.redis.port, 'GET', `${NS}:lock:staple:${fx.fp}`);
    assert.ok(Buffer.isBuffer(lock), 'a machine holds the staple lock');
    // <hostname>:<pid>:<random>:<fence>
    const pid = Number(/:(\d+):[0-9a-f]{6}:\d+$/.exec(lock.toString())?.[1]);
    const holder = fx.machines.find((m) => m.pid === pid);
    assert.ok(holder, `the lock ${lock.toString()} names one of the machines`);
    holder.kill('SIGKILL');
    const killedAt = Date.now();
    fx.relay.delayMs = 0;
    await holder.exited;
    const survivors = alive();
    assert.equal(survivors.length, fx.machines.length - 1);
    const lines = await nextStaples(before, LOCK_TTL_MS + 4000, survivors);
    const takeover = lines.find((l) => l.source === 'responder');
    assert.ok(takeover, 'a survivor retrieved');
    const tookMs = Date.now() - killedAt;
    assert.ok(tookMs < LOCK_TTL_MS + 2500, `taken over ${tookMs} ms after the kill (lock ${LOCK_TTL_MS} ms)`);
    // Not before the dead holder's lock expired (it was taken just before its request reached the relay).
    assert.ok(Date.parse(takeover.thisUpdate as string) >= arrivedAt + LOCK_TTL_MS - 500, 'the survivors waited for the lock to expire');
    assertOneRetrieval(lines, 'takeover');
    await until('the relay let the dead machine\'s request go', arrivedAt + holdMs + 1000 - Date.now(), () => fx.relay.dropped === 1);
    assert.equal(fx.relay.dropped, 1, 'the dead machine\'s request never reached the responder');
    assert.equal(fx.responder.requests, requests + 1);
    const visits = await Promise.all(survivors.map((m) => visit<ConnectionJson>(m.port, clientOpts())));
    assert.deepEqual(visits.map((v) => v.body.ocsp.thisUpdate), lines.map((l) => l.thisUpdate), 'the survivors serve the new staple');
    assert.ok(visits.every((v) => v.staple?.equals(visits[0]?.staple as Buffer)));
    assert.ok((await redisHash(fx.redis.port, stapleKey())).get('der')?.equals(visits[0]?.staple as Buffer));
    assertOneFetchPerStaple('over the whole run');
    // The ticket record rewritten at the rejoin, and the staple stored since, hold no secret either.
    await assertNoSecretInRedis();
  });
});
