// How a fleet reaches Redis: rediss:// verified against --fleet-ca (a server certificate from
// another CA is refused: the machine serves on its own, degraded), a password from a file and an
// ACL user (a wrong one is refused the same way), and the password never shown (status, logs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { issueCertificate, OID } from '../src/tls/cert-builder.js';
import { createFleet } from '../src/fleet/fleet.js';
import { freePort } from './helpers/exec.js';
import { redisCall } from './helpers/redis.js';
import { tempDir } from './helpers/pki.js';

async function redisWith(args: string[], port: number): Promise<() => Promise<void>> {
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return () => new Promise<void>((resolve) => { if (child.exitCode !== null) resolve(); else { child.once('exit', () => resolve()); child.kill('SIGKILL'); } });
}

const secret = 'a fleet secret of at least thirty-two bytes....';

test('rediss:// with --fleet-ca: connected through TLS; a server certificate from another CA is refused (degraded, never connected)', async (t) => {
  const dir = tempDir('certbound-fleet-tls-');
  const ca = await issueCertificate({ subject: { commonName: 'redis CA' }, ca: true });
  const other = await issueCertificate({ subject: { commonName: 'another CA' }, ca: true });
  const leaf = await issueCertificate({ subject: { commonName: '127.0.0.1' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['127.0.0.1'] });
  writeFileSync(join(dir, 'srv.pem'), leaf.pem);
  writeFileSync(join(dir, 'srv.key'), leaf.keyPem);
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  const port = await freePort();
  const stop = await redisWith(['--port', '0', '--tls-port', String(port), '--tls-cert-file', join(dir, 'srv.pem'), '--tls-key-file', join(dir, 'srv.key'), '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no'], port);
  t.after(stop);
  const good = createFleet({ url: `rediss://127.0.0.1:${port}`, secret, ca: ca.pem, machine: 'tls-good' });
  t.after(() => good.close());
  await good.start();
  assert.equal(good.status().state, 'connected');
  assert.equal(good.status().tickets.source, 'fleet');
  const warnings: object[] = [];
  const bad = createFleet({ url: `rediss://127.0.0.1:${port}`, secret, ca: other.pem, machine: 'tls-bad', connectWaitMs: 1500, logger: { info: () => {}, error: () => {}, warn: (o) => { warnings.push(o); } } });
  t.after(() => bad.close());
  await bad.start();
  assert.equal(bad.status().state, 'degraded', 'a Redis whose certificate does not chain to --fleet-ca is not joined');
  assert.equal(bad.status().tickets.source, 'local');
  assert.equal(await bad.read('staple', 'x'), undefined);
  assert.deepEqual((await bad.lead('staple', 'x')).kind, 'local');
  assert.equal(warnings.length, 1, 'one line per outage');
  assert.equal((warnings[0] as { code?: string }).code, 'CB_ERR_FLEET_UNAVAILABLE');
  // Plain redis:// to a TLS port gets no answer it can use either.
  const plain = createFleet({ url: `redis://127.0.0.1:${port}`, secret, machine: 'plain', connectWaitMs: 800 });
  t.after(() => plain.close());
  await plain.start();
  assert.notEqual(plain.status().state, 'connected');
});

test('a password from a file and an ACL user: joined; a wrong password is refused (degraded); the password is never shown', async (t) => {
  const dir = tempDir('certbound-fleet-auth-');
  const port = await freePort();
  const stop = await redisWith(['--port', String(port), '--requirepass', 'default-pass-123', '--user', 'certbound', 'on', '>acl-pass-456', '~certbound:*', '&certbound:*', '+@all'], port);
  t.after(stop);
  const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text, { mode: 0o600 }); return p; };
  const lines: string[] = [];
  const logger = { info: (o: object, m: string) => { lines.push(JSON.stringify(o) + m); }, warn: (o: object, m: string) => { lines.push(JSON.stringify(o) + m); }, error: (o: object, m: string) => { lines.push(JSON.stringify(o) + m); } };
  const byFile = createFleet({ url: `redis://127.0.0.1:${port}`, passwordFile: file('pass', 'default-pass-123\n'), secret, machine: 'by-file', logger });
  t.after(() => byFile.close());
  await byFile.start();
  assert.equal(byFile.status().state, 'connected');
  const acl = createFleet({ url: `redis://certbound:acl-pass-456@127.0.0.1:${port}`, secret, machine: 'acl', logger });
  t.after(() => acl.close());
  await acl.start();
  assert.equal(acl.status().state, 'connected');
  assert.equal(acl.status().url, `redis://certbound:***@127.0.0.1:${port}`);
  assert.ok(acl.ticketKeys()?.equals(byFile.ticketKeys() as Buffer), 'one fleet, one key set');
  const wrong = createFleet({ url: `redis://127.0.0.1:${port}`, password: 'wrong-pass', secret, machine: 'wrong', connectWaitMs: 1000, logger });
  t.after(() => wrong.close());
  await wrong.start();
  assert.equal(wrong.status().state, 'degraded');
  assert.match(wrong.status().reason ?? '', /WRONGPASS|invalid|NOAUTH/i);
  const text = lines.join('\n') + JSON.stringify([byFile.status(), acl.status(), wrong.status()]);
  for (const pass of ['default-pass-123', 'acl-pass-456', 'wrong-pass']) assert.ok(!text.includes(pass), `${pass} is never shown`);
});

test('a Redis user that may not run scripts (NOPERM): degraded with the reason, said once, and the ticket keys still rotate on this machine; a planted fence of another type heals', async (t) => {
  const port = await freePort();
  const stop = await redisWith(['--port', String(port), '--user', 'nolua', 'on', '>nolua-pass-789', '~certbound:*', '&certbound:*', '+@all', '-eval', '-evalsha'], port);
  t.after(stop);
  const lines: Array<Record<string, unknown>> = [];
  const logger = { info: (o: object) => { lines.push(o as Record<string, unknown>); }, warn: (o: object) => { lines.push(o as Record<string, unknown>); }, error: (o: object) => { lines.push(o as Record<string, unknown>); } };
  const tickets = { rotationMs: 1000, ticketLifetimeSeconds: 1 };
  const noLua = createFleet({ url: `redis://nolua:nolua-pass-789@127.0.0.1:${port}`, secret, machine: 'no-lua', logger, tickets });
  t.after(() => noLua.close());
  await noLua.start();
  const status = noLua.status();
  assert.deepEqual([status.state, status.tickets.source], ['degraded', 'local']);
  assert.match(status.reason ?? '', /^Redis refused a command \(read:tickets\): NOPERM/);
  const first = noLua.ticketKeys();
  assert.equal(first?.length, 48);
  // Keys of this machine are never kept past their interval: rotated here (the fleet's lock cannot be taken).
  const deadline = Date.now() + 5000;
  while (noLua.ticketKeys()?.equals(first as Buffer) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(noLua.ticketKeys()?.equals(first as Buffer), false, 'rotated on this machine');
  assert.equal(noLua.status().tickets.source, 'local');
  // Said once per kind of command refused (here the ticket record's read, and the first rotation's lock).
  const refusals = lines.filter((l) => l.code === 'CB_ERR_FLEET_UNAVAILABLE').map((l) => l.operation as string);
  assert.ok(refusals.includes('read:tickets'), refusals.join());
  assert.equal(new Set(refusals).size, refusals.length, `once each: ${refusals.join()}`);

  // A hash planted where the tickets' fencing counter belongs (and the lock's): the lock script removes them and the fleet rotates as usual.
  assert.equal(await redisCall(port, 'HSET', 'certbound:fence:tickets', 'x', 'y'), 1);
  assert.equal(await redisCall(port, 'HSET', 'certbound:lock:tickets', 'x', 'y'), 1);
  const healed = createFleet({ url: `redis://127.0.0.1:${port}`, secret, machine: 'healed', logger, tickets: { rotationMs: 3_600_000, ticketLifetimeSeconds: 300 }, healthCheckMs: 300 });
  t.after(() => healed.close());
  await healed.start();
  assert.deepEqual([healed.status().state, healed.status().tickets.source, healed.status().tickets.generation], ['connected', 'fleet', 1]);
  assert.equal(await redisCall(port, 'TYPE', 'certbound:fence:tickets'), 'string');
  assert.equal(lines.filter((l) => l.code === 'CB_ERR_FLEET_TICKETS').length, 0, 'nothing to report: healed');
  const waitFor = async (what: string, check: () => boolean) => {
    for (const until = Date.now() + 8000; !check(); await new Promise((r) => setTimeout(r, 50))) if (Date.now() > until) assert.fail(`not within 8 s: ${what}: ${JSON.stringify(healed.status())}`);
  };

  // A spoilt record (a field too long) and an announcement: the keys in force are written back, so no ticket ends.
  const keys = healed.ticketKeys() as Buffer;
  assert.equal(await redisCall(port, 'HSET', 'certbound:tickets', 'sealed', 'A'.repeat(257)), 0);
  assert.equal(await redisCall(port, 'PUBLISH', 'certbound:announce', JSON.stringify({ kind: 'tickets', id: 'tickets', fence: 1, from: 'attacker', nextUpdate: null })), 2);
  await waitFor('the record written again', () => healed.status().tickets.generation === 2);
  assert.ok(healed.ticketKeys()?.equals(keys), 'the same keys: tickets issued before still resume');
  assert.deepEqual(lines.filter((l) => l.code === 'CB_ERR_FLEET_TICKETS').map((l) => l.reason), ['malformed']);

  // The announcement channel taken away from the user (an ACL edit): Redis drops the subscriber;
  // its resubscription is refused, and the machine says so (degraded) instead of ending; given back, it subscribes again.
  assert.equal(await redisCall(port, 'ACL', 'SETUSER', 'default', 'resetchannels'), 'OK');
  await waitFor('degraded by the refused channel', () => /^Redis refused a command \(subscribe\): NOPERM/.test(healed.status().reason ?? ''));
  assert.equal(healed.status().state, 'degraded');
  assert.equal(await redisCall(port, 'ACL', 'SETUSER', 'default', 'allchannels'), 'OK');
  await waitFor('subscribed again', () => healed.status().state === 'connected');

  // PUBLISH refused (the record spoilt again, so that the machine writes and announces): degraded,
  // said once; the ACL fixed, the health check's harmless retry clears it within an interval.
  const warned = lines.filter((l) => l.code === 'CB_ERR_FLEET_UNAVAILABLE').length;
  assert.equal(await redisCall(port, 'ACL', 'SETUSER', 'default', '-publish'), 'OK');
  assert.equal(await redisCall(port, 'HSET', 'certbound:tickets', 'sealed', 'B'.repeat(300)), 0);
  await redisCall(port, 'DEL', 'certbound:lock:tickets');
  const generation = healed.status().tickets.generation as number;
  // The next resync finds it (an announcement cannot be sent now): made sooner by a reconnect.
  await redisCall(port, 'CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
  await waitFor('degraded by the refused PUBLISH', () => /^Redis refused a command \(publish\): NOPERM/.test(healed.status().reason ?? ''));
  assert.equal(healed.status().tickets.generation, generation + 1, 'the keys in force written back');
  assert.ok(healed.ticketKeys()?.equals(keys));
  assert.equal(lines.filter((l) => l.code === 'CB_ERR_FLEET_UNAVAILABLE' && l.operation === 'publish').length, 1);
  assert.equal(await redisCall(port, 'ACL', 'SETUSER', 'default', '+publish'), 'OK');
  await waitFor('PUBLISH accepted again', () => healed.status().state === 'connected');
  assert.ok(lines.filter((l) => l.code === 'CB_ERR_FLEET_UNAVAILABLE').length > warned);
});
