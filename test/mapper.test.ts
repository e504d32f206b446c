// The certificate mapper as IIS configures it: one-to-one by thumbprint, many-to-one rules on
// subject/issuer fields, a custom function; then the mapper on a real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { compileMapper, type MapperConfig, type MapperInput, type CertificateMapperFn } from '../src/tls/mapper.js';
import { devPki } from './helpers/pki.js';
import { get, startServer } from './helpers/server.js';
import { CertStatus } from '../src/status.js';

const ALICE_SHA1 = '0a1b2c3d4e5f60718293a4b5c6d7e8f901234567';
const BOB_SHA1 = 'ffeeddccbbaa99887766554433221100ffeeddcc';

/** A certificate as the mapper sees it (subject/issuer as Node prints them, one attribute a line). */
function cert(sha1: string, subject: string, issuer = 'O=certbound dev\nCN=certbound dev client CA'): MapperInput {
  return { sha1, sha256: '00'.repeat(32), subject, issuer, serialNumber: '01', certFlags: 0, der: Buffer.alloc(0) };
}
const alice = cert(ALICE_SHA1, 'O=certbound dev\nOU=users\nCN=alice');
const bob = cert(BOB_SHA1, 'O=Example Corp\nOU=Admins\nCN=bob.admin');
const mallory = cert('1111111111111111111111111111111111111111', 'O=certbound dev\nOU=users\nCN=mallory', 'O=elsewhere\nCN=rogue CA');

interface Row { name: string; config: MapperConfig | CertificateMapperFn | undefined; input: MapperInput; identity: string | null; denied: boolean; by?: string }

const rows: Row[] = [
  { name: 'no mapper: no identity, nothing denied', config: undefined, input: alice, identity: null, denied: false, by: 'none' },
  { name: 'one-to-one by thumbprint', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }] }, input: alice, identity: 'alice', denied: false, by: 'one-to-one' },
  { name: 'one-to-one: colons, spaces and upper case in the configured thumbprint are ignored', config: { oneToOne: [{ thumbprint: '0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:01:23:45:67', identity: 'alice' }] }, input: alice, identity: 'alice', denied: false },
  { name: 'one-to-one: spaces as Windows shows thumbprints', config: { oneToOne: [{ thumbprint: '0a 1b 2c 3d 4e 5f 60 71 82 93 a4 b5 c6 d7 e8 f9 01 23 45 67', identity: 'alice' }] }, input: alice, identity: 'alice', denied: false },
  { name: 'one-to-one: another certificate is unmapped, hence denied', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }] }, input: bob, identity: null, denied: true, by: 'unmapped' },
  { name: 'one-to-one: a disabled mapping is skipped', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice', enabled: false }, { thumbprint: BOB_SHA1, identity: 'bob' }] }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'one-to-one: denyUnmapped false lets an unmapped certificate through without identity', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }], denyUnmapped: false }, input: bob, identity: null, denied: false },
  { name: 'many-to-one: exact attribute', config: { manyToOne: [{ name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: alice, identity: 'user', denied: false, by: 'many-to-one:users' },
  { name: 'many-to-one: wildcard', config: { manyToOne: [{ name: 'admins', rules: [{ field: 'subject', attribute: 'CN', match: '*.admin' }], identity: 'admin' }] }, input: bob, identity: 'admin', denied: false },
  { name: 'many-to-one: wildcard in the middle', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'O', match: 'Ex*Corp' }], identity: 'example' }] }, input: bob, identity: 'example', denied: false },
  { name: 'many-to-one: the wildcard matches the whole value, not a part', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: 'bob' }], identity: 'x' }] }, input: bob, identity: null, denied: true },
  { name: 'many-to-one: regex characters in the pattern are literal', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: 'bob.admi.' }], identity: 'x' }] }, input: bob, identity: null, denied: true },
  { name: 'many-to-one: case-insensitive by default', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'ADMINS' }], identity: 'admin' }] }, input: bob, identity: 'admin', denied: false },
  { name: 'many-to-one: caseSensitive refuses another case', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'ADMINS', caseSensitive: true }], identity: 'admin' }] }, input: bob, identity: null, denied: true },
  { name: 'many-to-one: caseSensitive accepts the same case', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'Admins', caseSensitive: true }], identity: 'admin' }] }, input: bob, identity: 'admin', denied: false },
  { name: 'many-to-one: rules are ANDed (all match)', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }, { field: 'issuer', attribute: 'CN', match: 'certbound dev client CA' }], identity: 'user' }] }, input: alice, identity: 'user', denied: false },
  { name: 'many-to-one: rules are ANDed (one fails)', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }, { field: 'issuer', attribute: 'CN', match: 'certbound dev client CA' }], identity: 'user' }] }, input: mallory, identity: null, denied: true },
  { name: 'many-to-one: an attribute the certificate lacks does not match', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'emailAddress', match: '*' }], identity: 'x' }] }, input: alice, identity: null, denied: true },
  { name: 'many-to-one: a deny mapping refuses', config: { manyToOne: [{ name: 'rogue', rules: [{ field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }], denyUnmapped: false }, input: mallory, identity: null, denied: true, by: 'many-to-one:rogue' },
  { name: 'many-to-one: first matching mapping wins (deny before allow)', config: { manyToOne: [{ name: 'rogue', rules: [{ field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: mallory, identity: null, denied: true, by: 'many-to-one:rogue' },
  { name: 'many-to-one: a disabled mapping is skipped', config: { manyToOne: [{ name: 'rogue', enabled: false, rules: [{ field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: mallory, identity: 'user', denied: false },
  { name: 'one-to-one is tried before many-to-one', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }], manyToOne: [{ name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: alice, identity: 'alice', denied: false, by: 'one-to-one' },
  { name: 'one-to-one beats a many-to-one deny', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }], manyToOne: [{ name: 'all', rules: [{ field: 'subject', attribute: 'CN', match: '*' }], deny: true }] }, input: alice, identity: 'alice', denied: false },
  { name: 'custom function: an identity', config: (c) => (c.subject.includes('CN=alice') ? { identity: 'custom-alice' } : null), input: alice, identity: 'custom-alice', denied: false, by: 'custom' },
  { name: 'custom function: a refusal', config: () => ({ denied: true, reason: 'not today' }), input: alice, identity: null, denied: true, by: 'custom' },
  { name: 'custom function: a throw is a refusal', config: () => { throw new Error('boom'); }, input: alice, identity: null, denied: true, by: 'custom' },
  { name: 'custom function alone: no opinion means no identity and no denial', config: () => null, input: bob, identity: null, denied: false, by: 'none' },
  { name: 'custom in a config: no opinion falls through to one-to-one', config: { custom: () => null, oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }] }, input: alice, identity: 'alice', denied: false },
  { name: 'custom in a config: an unmapped certificate is denied', config: { custom: () => null }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'an empty config maps nothing and denies nothing', config: {}, input: alice, identity: null, denied: false },
];

for (const row of rows) {
  test(`mapper: ${row.name}`, () => {
    const out = compileMapper(row.config)(row.input);
    assert.equal(out.identity, row.identity);
    assert.equal(out.deniedByMapper, row.denied);
    if (row.denied) assert.ok(out.reason, 'a refusal says why');
    else assert.equal(out.reason, null);
    if (row.by) assert.equal(out.by, row.by);
  });
}

test('mapper: a thrown error message becomes the reason', () => {
  const out = compileMapper(() => { throw new Error('directory offline'); })(alice);
  assert.match(out.reason ?? '', /directory offline/);
});

test('mapper: bad configurations throw TypeError when compiled', () => {
  const bad: [string, MapperConfig][] = [
    ['a thumbprint that is not 20 bytes', { oneToOne: [{ thumbprint: 'abcd', identity: 'x' }] }],
    ['a thumbprint with non-hex characters', { oneToOne: [{ thumbprint: 'zz'.repeat(20), identity: 'x' }] }],
    ['a SHA-256 instead of a SHA-1 thumbprint', { oneToOne: [{ thumbprint: 'ab'.repeat(32), identity: 'x' }] }],
    ['an empty identity', { oneToOne: [{ thumbprint: ALICE_SHA1, identity: '' }] }],
    ['many-to-one without identity or deny', { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: '*' }] }] }],
    ['many-to-one without rules', { manyToOne: [{ name: 'm', rules: [], identity: 'x' }] }],
    ['a rule on another field', { manyToOne: [{ name: 'm', rules: [{ field: 'serial' as 'subject', attribute: 'CN', match: '*' }], identity: 'x' }] }],
  ];
  for (const [name, config] of bad) assert.throws(() => compileMapper(config), TypeError, name);
});

interface Info { clientCertificate: null | { identity: string | null; deniedByMapper: boolean; certFlags: number; authorized: boolean; reason: string } }

test('a server with a mapper: /connection shows the identity; optional mode refuses a denied certificate, accept-untrusted lets it in', async (t) => {
  const pki = await devPki();
  const sha1 = new X509Certificate(readFileSync(pki.client)).fingerprint;
  const mapper: MapperConfig = {
    oneToOne: [{ thumbprint: sha1, identity: 'dev-client@example' }],
    manyToOne: [{ name: 'expired users', rules: [{ field: 'subject', attribute: 'CN', match: 'dev-client-expired' }], identity: 'expired-user' }],
  };
  const optional = await startServer(t, 'optional', { mapper, underPressure: false });
  const ok = await get(optional.port, '/connection', { cert: pki.client, key: pki.clientKey });
  assert.equal(ok.status, 200);
  assert.equal((ok.json() as Info).clientCertificate?.identity, 'dev-client@example');
  assert.equal((ok.json() as Info).clientCertificate?.deniedByMapper, false);
  const anonymous = await get(optional.port, '/connection');
  assert.equal(anonymous.status, 200, 'no certificate, nothing to deny');

  // A trusted certificate that a deny mapping matches: optional mode refuses the request.
  const denyAll = await startServer(t, 'optional', { underPressure: false, mapper: { manyToOne: [{ name: 'nobody', rules: [{ field: 'subject', attribute: 'CN', match: 'dev-client' }], deny: true }] } });
  const refused = await get(denyAll.port, '/connection', { cert: pki.client, key: pki.clientKey });
  assert.equal(refused.status, 403);
  assert.equal((refused.json() as { code: string }).code, 'CB_ERR_CLIENT_CERT_DENIED');

  const untrusted = await startServer(t, 'accept-untrusted', { mapper, underPressure: false });
  const denied = await get(untrusted.port, '/connection', { cert: pki.clientUntrusted, key: pki.clientUntrustedKey });
  assert.equal(denied.status, 200, 'accept-untrusted leaves the decision to the application');
  assert.equal((denied.json() as Info).clientCertificate?.authorized, false);
  assert.equal((denied.json() as Info).clientCertificate?.reason, 'untrusted');
  assert.equal((denied.json() as Info).clientCertificate?.deniedByMapper, false, 'the mapper runs on authorized chains only');
  assert.equal((denied.json() as Info).clientCertificate?.identity, null);
  // An expired certificate that a mapping names gets no identity: an identity only ever comes from an authorized chain.
  const expired = await get(untrusted.port, '/connection', { cert: pki.clientExpired, key: pki.clientExpiredKey });
  assert.equal((expired.json() as Info).clientCertificate?.identity, null);
  assert.equal((expired.json() as Info).clientCertificate?.certFlags, CertStatus.CERT_E_EXPIRED);
  assert.equal((expired.json() as Info).clientCertificate?.reason, 'untrusted');
});
