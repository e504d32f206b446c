// The pure rules of fleet mode (src/fleet/fleet-rules.ts), as tables: URLs, namespaces, the
// secret, the sealed ticket-key record (every field authenticated), the session id context and
// the rotation floor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import {
  checkDocument, checkFleetSecret, checkFleetUrl, checkNamespace, checkRotation, deriveFleetKeys, documentMac, fleetKeys, fleetSessionIdContext, lockTtl,
  openTicketRecord, readFleetPasswordFile, readFleetSecret, sealTicketKeys, urlId,
} from '../src/fleet/fleet-rules.js';
import { isCertboundError } from '../src/errors.js';
import { tempDir } from './helpers/pki.js';
import { resolveServeConfig } from '../src/server/config.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return isCertboundError(err) ? err.code : `not a CertboundError: ${String(err)}`;
  }
};

test('fleet URLs: redis:// and rediss:// with a host; a password is hidden where it is shown', () => {
  const rows: Array<[string, string | undefined, string?]> = [
    ['redis://127.0.0.1:6379', undefined, 'redis://127.0.0.1:6379'],
    ['rediss://redis.example:6380/2', undefined, 'rediss://redis.example:6380/2'],
    ['redis://user:s3cret@127.0.0.1:6379', undefined, 'redis://user:***@127.0.0.1:6379'],
    ['redis://[::1]:6379', undefined, 'redis://[::1]:6379'],
    ['http://127.0.0.1:6379', 'CB_ERR_INVALID_OPTION'],
    ['redis://', 'CB_ERR_INVALID_OPTION'],
    ['redis://h:1/?password=x', 'CB_ERR_INVALID_OPTION'],
    ['redis://h:1/#x', 'CB_ERR_INVALID_OPTION'],
    ['redis://h:1/abc', 'CB_ERR_INVALID_OPTION'],
    ['not a url', 'CB_ERR_INVALID_OPTION'],
  ];
  for (const [url, err, shown] of rows) {
    assert.equal(code(() => checkFleetUrl(url)), err, url);
    if (shown) assert.equal(checkFleetUrl(url).shown, shown);
  }
});

test('namespaces: 1..64 of letters, digits, . _ -; every key starts with it', () => {
  for (const ok of ['certbound', 'a', 'prod.eu-1_x', 'x'.repeat(64)]) assert.equal(code(() => checkNamespace(ok)), undefined, ok);
  for (const bad of ['', 'x'.repeat(65), 'a:b', 'a b', '{tag}', 'a*', 'é']) assert.equal(code(() => checkNamespace(bad)), 'CB_ERR_INVALID_OPTION', bad);
  const k = fleetKeys('ns1');
  assert.deepEqual([k.tickets, k.lock('tickets'), k.fence('staple:ab'), k.document('crl', 'cd'), k.channel], ['ns1:tickets', 'ns1:lock:tickets', 'ns1:fence:staple:ab', 'ns1:crl:cd', 'ns1:announce']);
  assert.equal(urlId('http://crl.example/ca.crl'), createHash('sha256').update('http://crl.example/ca.crl').digest('hex'));
});

test('the fleet secret: a 0600 file of at least 32 bytes (a trailing newline does not count)', () => {
  const dir = tempDir('certbound-fleet-secret-');
  const file = (name: string, data: string | Buffer, mode: number) => {
    const p = join(dir, name);
    writeFileSync(p, data);
    chmodSync(p, mode);
    return p;
  };
  const RANDOM = 'Kq3v9ZtB7xw2LmNp0sYd4HfJ8cRgUe1A';
  assert.equal(readFleetSecret(file('ok', `${RANDOM}\n`, 0o600)).length, 32);
  assert.equal(readFleetSecret(file('ok-ro', `${RANDOM}b7Xq2Lw9`, 0o400)).length, 40);
  // A short pattern repeated has the length and the distinct values, not the secrecy.
  // A typed secret (a repeated sequence, a run of consecutive values) has the length and the distinct values, not the secrecy.
  for (const [name, text, why] of [
    ['repeated', 'Kq3v9ZtB'.repeat(4), /repeats a sequence of 8 bytes/],
    ['repeated-plus', `Z${'Kq3v9ZtB'.repeat(4)}   `, /repeats a sequence of 8 bytes/],
    ['words', 'passwordpasswordpassword12345678', /repeats a sequence of 8 bytes/],
    ['alphabet', 'abcdefghijklmnopqrstuvwxyzABCDEF', /a run of 8 consecutive byte values/],
    ['countdown', 'Kq3v9ZtB7xw2LmNp0s98765432HfJ8cR', /a run of 8 consecutive byte values/],
  ] as const) {
    assert.match((() => { try { readFleetSecret(file(name, text, 0o600)); } catch (e) { return `${(e as { code?: string }).code} ${(e as Error).message}`; } return ''; })(), new RegExp(`^CB_ERR_FLEET_SECRET .*${why.source}`), name);
  }
  assert.equal(code(() => readFleetSecret(file('spaces', ' '.repeat(48), 0o600))), 'CB_ERR_FLEET_SECRET', '48 spaces are no secret');
  assert.equal(code(() => readFleetSecret(file('nuls', Buffer.alloc(48), 0o600))), 'CB_ERR_FLEET_SECRET', '48 NUL bytes are no secret');
  assert.equal(readFleetSecret(file('hex', '9f3c2a7be01d4c58a6f27e93b4d0c1857a2e6f09b3c4d5e1f8a7b6c9d0e2f314\n', 0o600)).length, 64, 'hex (openssl rand -hex 32) has 16 distinct values: enough');
  assert.equal(readFleetSecret(file('base64', `${randomBytes(48).toString('base64')}\n`, 0o600)).length, 64);
  const rows: Array<[string, string]> = [
    [file('short', `${'abcdefgh'.repeat(4).slice(1)}\n`, 0o600), 'CB_ERR_FLEET_SECRET'],
    [file('wide', 'abcdefgh'.repeat(6), 0o644), 'CB_ERR_FLEET_SECRET'],
    [file('group', 'abcdefgh'.repeat(6), 0o640), 'CB_ERR_FLEET_SECRET'],
    [file('big', 'a'.repeat(5000), 0o600), 'CB_ERR_FLEET_SECRET'],
    [join(dir, 'missing'), 'CB_ERR_FLEET_SECRET'],
    [dir, 'CB_ERR_FLEET_SECRET'],
  ];
  for (const [path, err] of rows) assert.equal(code(() => readFleetSecret(path)), err, path);
  assert.match((() => { try { readFleetSecret(join(dir, 'wide')); } catch (e) { return (e as Error).message; } return ''; })(), /mode 0644/);
  // The file's problem once, after the file's name (not a second 'Cannot use …' prefix).
  assert.equal((() => { try { readFleetSecret(join(dir, 'missing')); } catch (e) { return (e as Error).message; } return ''; })(), `Cannot use the fleet secret ${join(dir, 'missing')}: ENOENT`);
  // The Redis password file: the same mode rule (CB_ERR_PASSPHRASE_FILE), its first line.
  assert.equal(readFleetPasswordFile(file('pass', 'redis-pass\nignored\n', 0o600)), 'redis-pass');
  assert.equal(code(() => readFleetPasswordFile(file('pass-wide', 'redis-pass\n', 0o644))), 'CB_ERR_PASSPHRASE_FILE');
  assert.equal(code(() => readFleetPasswordFile(join(dir, 'no-pass'))), 'CB_ERR_PASSPHRASE_FILE');
  assert.equal(code(() => checkFleetSecret('x'.repeat(31))), 'CB_ERR_FLEET_SECRET');
  assert.equal(checkFleetSecret(`${RANDOM}\r\n`).length, 32);
});

test('sealed ticket keys: opened only with the same secret and namespace, and any changed field or byte is refused', () => {
  const secret = deriveFleetKeys(Buffer.from('the fleet secret of the sealing table, 0123456'), 'ns');
  const keys = randomBytes(48);
  const rec = sealTicketKeys(keys, secret, 'ns', 7, 1_700_000_000_000, 42);
  assert.deepEqual(Object.keys(rec).sort(), ['createdAt', 'fence', 'generation', 'sealed', 'secretId']);
  assert.ok(!JSON.stringify(rec).includes(keys.toString('base64')) && !JSON.stringify(rec).includes(keys.toString('hex')), 'the keys are not in the record in clear');
  const opened = openTicketRecord({ ...rec }, secret, 'ns');
  assert.ok(opened?.ok);
  assert.ok(opened.keys.equals(keys));
  assert.deepEqual([opened.generation, opened.createdAt, opened.fence], [7, 1_700_000_000_000, 42]);
  const flip = (b64: string, i: number) => { const b = Buffer.from(b64, 'base64'); b[i] = (b[i] as number) ^ 1; return b.toString('base64'); };
  const rows: Array<[string, Record<string, string>, 'malformed' | 'other-secret' | 'tampered']> = [
    ['a later generation claimed', { ...rec, generation: '8' }, 'tampered'],
    ['an older createdAt claimed', { ...rec, createdAt: '1600000000000' }, 'tampered'],
    ['another fence claimed', { ...rec, fence: '43' }, 'tampered'],
    ['a byte of the ciphertext', { ...rec, sealed: flip(rec.sealed, 40) }, 'tampered'],
    ['a byte of the tag', { ...rec, sealed: flip(rec.sealed, 13) }, 'tampered'],
    ['a byte of the iv', { ...rec, sealed: flip(rec.sealed, 0) }, 'tampered'],
    ['truncated', { ...rec, sealed: rec.sealed.slice(0, 20) }, 'malformed'],
    ['a field missing', { fence: rec.fence, generation: rec.generation, createdAt: rec.createdAt, secretId: rec.secretId } as Record<string, string>, 'malformed'],
    ['a non-number', { ...rec, generation: '7e3' }, 'malformed'],
    ['another secret id', { ...rec, secretId: '0000000000000000' }, 'other-secret'],
  ];
  for (const [what, r, reason] of rows) {
    const o = openTicketRecord(r, secret, 'ns');
    assert.equal(o?.ok, false, what);
    assert.equal(o?.ok === false ? o.reason : undefined, reason, what);
  }
  assert.equal(openTicketRecord({ ...rec }, deriveFleetKeys(Buffer.from('another fleet secret of the sealing table, 987'), 'ns'), 'ns')?.ok, false, 'another secret');
  assert.equal(openTicketRecord({ ...rec }, deriveFleetKeys(Buffer.from('the fleet secret of the sealing table, 0123456'), 'other'), 'other')?.ok, false, 'another namespace');
  assert.equal(openTicketRecord({}, secret, 'ns'), undefined, 'no record');
});

test('session id context, rotation floor and lock expiry', () => {
  const a = fleetSessionIdContext('ns', 'optional');
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.equal(a, fleetSessionIdContext('ns', 'optional'), 'every machine of the fleet derives the same');
  assert.notEqual(a, fleetSessionIdContext('ns', 'require'));
  assert.notEqual(a, fleetSessionIdContext('other', 'optional'));
  const rows: Array<[number, number, string | undefined]> = [
    [300_000, 300, undefined], [3_600_000, 300, undefined], [299_999, 300, 'CB_ERR_INVALID_OPTION'], [2_000, 2, undefined], [999, 0, 'CB_ERR_INVALID_OPTION'], [1.5e6 + 0.5, 300, 'CB_ERR_INVALID_OPTION'],
  ];
  for (const [ms, lifetime, err] of rows) assert.equal(code(() => checkRotation(ms, lifetime)), err, `${ms} ms vs ${lifetime} s`);
  assert.deepEqual([lockTtl(15_000), lockTtl(20_000), lockTtl(15_000, 2_000)], [30_000, 40_000, 2_000]);
});

test('documents in Redis: read only with the fleet\'s MAC over kind, id, time and bytes, within the size and age of their kind', () => {
  const secret = deriveFleetKeys(Buffer.from('the fleet secret of the document table, 012345'), 'ns');
  const other = deriveFleetKeys(Buffer.from('another fleet secret of the document table, 98'), 'ns');
  const now = 1_800_000_000_000;
  const der = Buffer.from('a signed response');
  const doc = (kind: 'staple' | 'ocsp' | 'crl', id: string, at: number, bytes = der, key = secret) => ({ der: bytes, storedAt: String(at), mac: documentMac(key, kind, id, at, bytes) });
  const rows: Array<[string, Parameters<typeof checkDocument>, string | null]> = [
    ['a staple stored now', [secret, 'staple', 'id1', doc('staple', 'id1', now), now], null],
    ['a staple stored a week ago (its own dates bound it)', [secret, 'staple', 'id1', doc('staple', 'id1', now - 7 * 86_400_000), now], null],
    ['a client OCSP response stored 59 min ago', [secret, 'ocsp', 'id1', doc('ocsp', 'id1', now - 59 * 60_000), now], null],
    ['a client OCSP response stored 61 min ago (fetched without this machine\'s nonce)', [secret, 'ocsp', 'id1', doc('ocsp', 'id1', now - 61 * 60_000), now], 'too-old'],
    ['stored in the future', [secret, 'staple', 'id1', doc('staple', 'id1', now + 600_000), now], 'from-the-future'],
    ['the MAC of another secret', [secret, 'staple', 'id1', doc('staple', 'id1', now, der, other), now], 'mac'],
    ['another id\'s document copied whole', [secret, 'staple', 'id2', doc('staple', 'id1', now), now], 'mac'],
    ['another kind\'s document copied whole', [secret, 'ocsp', 'id1', doc('staple', 'id1', now), now], 'mac'],
    ['a changed byte', [secret, 'staple', 'id1', { ...doc('staple', 'id1', now), der: Buffer.from('a signed responsf') }, now], 'mac'],
    ['an older time claimed (to live longer)', [secret, 'ocsp', 'id1', { ...doc('ocsp', 'id1', now - 61 * 60_000), storedAt: String(now) }, now], 'mac'],
    ['no MAC', [secret, 'staple', 'id1', { der, storedAt: String(now), mac: null }, now], 'malformed'],
    ['no time', [secret, 'staple', 'id1', { der, storedAt: null, mac: 'x' }, now], 'malformed'],
    ['a time that is no number', [secret, 'staple', 'id1', { der, storedAt: '1e12', mac: 'x' }, now], 'malformed'],
    ['a staple of 64 KiB + 1', [secret, 'staple', 'id1', doc('staple', 'id1', now, Buffer.alloc(65_537, 1)), now], 'too-large'],
  ];
  for (const [what, args, reason] of rows) {
    const r = checkDocument(...args);
    assert.equal(r.ok ? null : r.reason, reason, what);
    if (r.ok) assert.ok(r.der.equals(args[3].der as Buffer), what);
  }
});

test('serve\'s fleet flags: each needs --fleet, --fleet needs a secret file, a namespace given alone is refused too', () => {
  const rows: Array<[Record<string, unknown>, RegExp | undefined]> = [
    [{ 'fleet-namespace': 'prod' }, /--fleet-namespace: needs --fleet/],
    [{ 'fleet-secret-file': '/x' }, /--fleet-secret-file: needs --fleet/],
    [{ 'fleet-lock-ttl': '2000' }, /--fleet-lock-ttl: needs --fleet/],
    [{ fleet: 'redis://127.0.0.1:6379' }, /--fleet: needs --fleet-secret-file/],
    [{ fleet: 'redis://127.0.0.1:6379', 'fleet-secret-file': '/x', 'fleet-ca': ['/ca.pem'] }, /--fleet-ca: is for a rediss:/],
    [{ fleet: 'redis://127.0.0.1:6379', 'fleet-secret-file': '/x', 'ticket-key-rotation': '299999' }, /--ticket-key-rotation: with a fleet it must be at least the ticket lifetime \(300 s\)/],
    [{ fleet: 'redis://127.0.0.1:6379', 'fleet-secret-file': '/x', 'fleet-namespace': 'a:b' }, /--fleet-namespace/],
    [{ fleet: 'redis://127.0.0.1:6379', 'fleet-secret-file': '/x', 'fleet-namespace': 'prod' }, undefined],
  ];
  for (const [flags, message] of rows) {
    let got: string | undefined;
    try {
      resolveServeConfig(flags);
    } catch (err) {
      assert.ok(isCertboundError(err, 'CB_ERR_INVALID_OPTION'), String(err));
      got = (err as Error).message;
    }
    if (message) assert.match(got ?? 'accepted', message, JSON.stringify(flags));
    else assert.equal(got, undefined, JSON.stringify(flags));
  }
});
