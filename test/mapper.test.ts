// The certificate mapper as IIS configures it: one-to-one by thumbprint, many-to-one rules on
// subject, issuer and subjectAltName, a custom function; issuer rules and CA pins decided on
// the verified chain (a forged chain under a same-named CA does not pass); the configuration
// refused with CB_ERR_INVALID_OPTION; then the mapper on a real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { compileMapper, type MapperConfig, type MapperInput, type CertificateMapperFn, type ManyToOneMapping } from '../src/tls/mapper.js';
import { canonicalIp, parseSubjectAltNames } from '../src/tls/subject-alt-name.js';
import { issueCertificate, OID, subjectKeyId, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { pkijs } from '../src/tls/pkijs-engine.js';
import { CertboundError } from '../src/errors.js';
import { CertStatus } from '../src/status.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { get, startServer } from './helpers/server.js';

const ALICE_SHA1 = '0a1b2c3d4e5f60718293a4b5c6d7e8f901234567';
const BOB_SHA1 = 'ffeeddccbbaa99887766554433221100ffeeddcc';

/** A certificate as the mapper sees it (subject/issuer as Node prints them, one attribute a line), without DER or chain. */
function cert(sha1: string, subject: string, issuer = 'O=certbound dev\nCN=certbound dev client CA'): MapperInput {
  return { sha1, sha256: '00'.repeat(32), subject, issuer, serialNumber: '01', certFlags: 0, der: Buffer.alloc(0) };
}
const alice = cert(ALICE_SHA1, 'O=certbound dev\nOU=users\nCN=alice');
const bob = cert(BOB_SHA1, 'O=Example Corp\nOU=Admins\nCN=bob.admin');
const mallory = cert('1111111111111111111111111111111111111111', 'O=certbound dev\nOU=users\nCN=mallory', 'O=elsewhere\nCN=rogue CA');

interface Row { name: string; config: MapperConfig | CertificateMapperFn | undefined; input: MapperInput; identity: string | null; denied: boolean; by?: string; reason?: string }

const rows: Row[] = [
  { name: 'no mapper: no identity, nothing denied', config: undefined, input: alice, identity: null, denied: false, by: 'none' },
  { name: 'one-to-one by thumbprint', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }] }, input: alice, identity: 'alice', denied: false, by: 'one-to-one' },
  { name: 'one-to-one: colons, spaces and upper case in the configured thumbprint are ignored', config: { oneToOne: [{ thumbprint: '0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:01:23:45:67', identity: 'alice' }] }, input: alice, identity: 'alice', denied: false },
  { name: 'one-to-one: spaces as Windows shows thumbprints', config: { oneToOne: [{ thumbprint: '0a 1b 2c 3d 4e 5f 60 71 82 93 a4 b5 c6 d7 e8 f9 01 23 45 67', identity: 'alice' }] }, input: alice, identity: 'alice', denied: false },
  { name: 'one-to-one: another certificate is unmapped, hence denied', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }] }, input: bob, identity: null, denied: true, by: 'unmapped', reason: 'no mapping matches the certificate' },
  { name: 'one-to-one: a disabled mapping is skipped', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice', enabled: false }, { thumbprint: BOB_SHA1, identity: 'bob' }] }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'one-to-one: denyUnmapped false lets an unmapped certificate through without identity', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }], denyUnmapped: false }, input: bob, identity: null, denied: false },
  { name: 'many-to-one: exact attribute', config: { manyToOne: [{ name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: alice, identity: 'user', denied: false, by: 'many-to-one:users' },
  { name: 'many-to-one: wildcard', config: { manyToOne: [{ name: 'admins', rules: [{ field: 'subject', attribute: 'CN', match: '*.admin' }], identity: 'admin' }] }, input: bob, identity: 'admin', denied: false },
  { name: 'many-to-one: wildcard in the middle', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'O', match: 'Ex*Corp' }], identity: 'example' }] }, input: bob, identity: 'example', denied: false },
  { name: 'many-to-one: a wildcard matches an empty run', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: 'bob*.admin*' }], identity: 'x' }] }, input: bob, identity: 'x', denied: false },
  { name: 'many-to-one: the wildcard matches the whole value, not a part', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: 'bob' }], identity: 'x' }] }, input: bob, identity: null, denied: true },
  { name: 'many-to-one: regex characters in the pattern are literal', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: 'bob.admi.' }], identity: 'x' }] }, input: bob, identity: null, denied: true },
  { name: 'many-to-one: case-insensitive by default', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'ADMINS' }], identity: 'admin' }] }, input: bob, identity: 'admin', denied: false },
  { name: 'many-to-one: caseSensitive refuses another case', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'ADMINS', caseSensitive: true }], identity: 'admin' }] }, input: bob, identity: null, denied: true },
  { name: 'many-to-one: caseSensitive accepts the same case', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'Admins', caseSensitive: true }], identity: 'admin' }] }, input: bob, identity: 'admin', denied: false },
  { name: 'many-to-one: rules are ANDed (all match)', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }, { field: 'subject', attribute: 'CN', match: 'alice' }], identity: 'user' }] }, input: alice, identity: 'user', denied: false },
  { name: 'many-to-one: rules are ANDed (one fails)', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }, { field: 'subject', attribute: 'CN', match: 'alice' }], identity: 'user' }] }, input: mallory, identity: null, denied: true },
  { name: 'many-to-one: an attribute the certificate lacks does not match', config: { manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'emailAddress', match: '*' }], identity: 'x' }] }, input: alice, identity: null, denied: true },
  { name: 'many-to-one: a deny mapping refuses', config: { manyToOne: [{ name: 'rogue', rules: [{ field: 'subject', attribute: 'CN', match: 'mallory' }], deny: true }], denyUnmapped: false }, input: mallory, identity: null, denied: true, by: 'many-to-one:rogue', reason: 'denied by mapping rogue' },
  { name: 'many-to-one: first matching mapping wins (deny before allow)', config: { manyToOne: [{ name: 'rogue', rules: [{ field: 'subject', attribute: 'CN', match: 'mallory' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: mallory, identity: null, denied: true, by: 'many-to-one:rogue' },
  { name: 'many-to-one: a disabled mapping is skipped', config: { manyToOne: [{ name: 'rogue', enabled: false, rules: [{ field: 'subject', attribute: 'CN', match: 'mallory' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: mallory, identity: 'user', denied: false },
  // The issuer name written in the leaf is not evidence: without a chain, issuer rules cannot be told.
  { name: 'issuer rule without a chain: the leaf\'s issuer name alone does not map', config: { manyToOne: [{ name: 'ca', rules: [{ field: 'issuer', attribute: 'CN', match: 'certbound dev client CA' }], identity: 'user' }] }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule without a chain: a deny mapping on the issuer denies (fail closed)', config: { manyToOne: [{ name: 'rogue', rules: [{ field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: alice, identity: null, denied: true, by: 'many-to-one:rogue', reason: 'denied by mapping rogue: the issuer cannot be told: no chain was given' },
  { name: 'issuer rule without a chain: a deny mapping whose subject rule is false does not deny', config: { manyToOne: [{ name: 'rogue', rules: [{ field: 'subject', attribute: 'CN', match: 'mallory' }, { field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: alice, identity: 'user', denied: false, by: 'many-to-one:users' },
  { name: 'issuerThumbprint without a chain does not map', config: { manyToOne: [{ name: 'pinned', rules: [], issuerThumbprint: BOB_SHA1, identity: 'user' }] }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'san rule on a certificate whose DER does not parse: an allow mapping does not match', config: { manyToOne: [{ name: 'm', rules: [{ field: 'san', attribute: 'DNS', match: '*' }], identity: 'x' }] }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'san rule on a certificate whose DER does not parse: a deny mapping denies', config: { manyToOne: [{ name: 'spiffe-dev', rules: [{ field: 'san', attribute: 'URI', match: 'spiffe://example.org/ns/dev/*' }], deny: true }], denyUnmapped: false }, input: alice, identity: null, denied: true, reason: 'denied by mapping spiffe-dev: the subjectAltName cannot be read' },
  { name: 'one-to-one is tried before many-to-one', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }], manyToOne: [{ name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] }, input: alice, identity: 'alice', denied: false, by: 'one-to-one' },
  { name: 'one-to-one beats a many-to-one deny', config: { oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }], manyToOne: [{ name: 'all', rules: [{ field: 'subject', attribute: 'CN', match: '*' }], deny: true }] }, input: alice, identity: 'alice', denied: false },
  { name: 'custom function: an identity', config: (c) => (c.subject.includes('CN=alice') ? { identity: 'custom-alice' } : null), input: alice, identity: 'custom-alice', denied: false, by: 'custom' },
  { name: 'custom function: a refusal', config: () => ({ denied: true, reason: 'not today' }), input: alice, identity: null, denied: true, by: 'custom', reason: 'not today' },
  { name: 'custom function: a throw is a refusal', config: () => { throw new Error('boom'); }, input: alice, identity: null, denied: true, by: 'custom', reason: 'custom mapper threw: boom' },
  { name: 'custom function alone: no opinion means no identity and no denial', config: () => null, input: bob, identity: null, denied: false, by: 'none' },
  { name: 'custom in a config: no opinion falls through to one-to-one', config: { custom: () => null, oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'alice' }] }, input: alice, identity: 'alice', denied: false },
  { name: 'custom in a config: an unmapped certificate is denied', config: { custom: () => null }, input: alice, identity: null, denied: true, by: 'unmapped' },
  { name: 'an empty config maps nothing and denies nothing', config: {}, input: alice, identity: null, denied: false },
];

function check(row: Row): void {
  const out = compileMapper(row.config)(row.input);
  assert.equal(out.identity, row.identity, 'identity');
  assert.equal(out.deniedByMapper, row.denied, 'deniedByMapper');
  if (row.denied) assert.ok(out.reason, 'a refusal says why');
  else assert.equal(out.reason, null);
  if (row.reason !== undefined) assert.equal(out.reason, row.reason);
  if (row.by) assert.equal(out.by, row.by);
}

for (const row of rows) test(`mapper: ${row.name}`, () => check(row));

test('mapper: a wildcard pattern that would make a RegExp backtrack for ages is matched in linear steps', () => {
  const long = cert(BOB_SHA1, `CN=${'a'.repeat(50_000)}`);
  const mapper = compileMapper({ manyToOne: [{ name: 'm', rules: [{ field: 'subject', attribute: 'CN', match: '*a*a*a*a*a*a*a*a*b' }], identity: 'x' }], denyUnmapped: false });
  const started = performance.now();
  assert.equal(mapper(long).identity, null);
  assert.ok(performance.now() - started < 2000, `took ${performance.now() - started} ms`);
});

// ---- real certificates: a client CA and a forger's CA with the same names ----

const org = 'certbound test';
const realRoot = await issueCertificate({ subject: { commonName: 'certbound test root CA', organization: org }, ca: true });
const realCa = await issueCertificate({ subject: { commonName: 'certbound test client CA', organization: org }, issuer: realRoot, ca: true, pathLength: 0 });
const otherCa = await issueCertificate({ subject: { commonName: 'partner CA', organization: 'elsewhere' }, ca: true });
const ALICE_NAMES = [
  { uri: 'spiffe://example.org/ns/prod/sa/alice' },
  { email: 'alice@example.org' },
  'alice.example.org',
  '10.1.2.3',
  '2001:db8::1',
  '::ffff:10.0.0.1',
  { upn: 'alice@corp.example' },
];
const aliceSubject = { commonName: 'alice', organization: org, organizationalUnit: 'users' };
const realLeaf = await issueCertificate({ subject: aliceSubject, issuer: realCa, extKeyUsage: [OID.clientAuth], altNames: ALICE_NAMES });
// The forger copies every name: a root and a client CA named like the real ones, and a leaf
// with alice's subject and subjectAltName. Only the keys differ.
const forgedRoot = await issueCertificate({ subject: { commonName: 'certbound test root CA', organization: org }, ca: true });
const forgedCa = await issueCertificate({ subject: { commonName: 'certbound test client CA', organization: org }, issuer: forgedRoot, ca: true, pathLength: 0 });
const forgedLeaf = await issueCertificate({ subject: aliceSubject, issuer: forgedCa, extKeyUsage: [OID.clientAuth], altNames: ALICE_NAMES });
// The same leaf with the real CA's key identifier written in it: the real CA now passes for its
// issuer by names and key ids (X509_check_issued, how a chain is built), and only the signature
// tells. Also a leaf with no key identifier at all, as old CAs wrote them.
const forgedLeafRealKeyId = await issueCertificate({ subject: aliceSubject, issuer: forgedCa, extKeyUsage: [OID.clientAuth], altNames: ALICE_NAMES, authorityKeyId: subjectKeyId(realCa.certificate) });
const forgedLeafNoKeyId = await issueCertificate({ subject: aliceSubject, issuer: forgedCa, extKeyUsage: [OID.clientAuth], altNames: ALICE_NAMES, authorityKeyId: null });
const partnerLeaf = await issueCertificate({ subject: { commonName: 'carol', organization: 'elsewhere' }, issuer: otherCa, extKeyUsage: [OID.clientAuth] });
const plainLeaf = await issueCertificate({ subject: { commonName: 'dave', organization: org, organizationalUnit: 'users' }, issuer: realCa, extKeyUsage: [OID.clientAuth] });

const sha1Of = (c: IssuedCertificate) => new X509Certificate(c.der).fingerprint.replace(/:/g, '').toLowerCase();

/** The mapper input the server builds for a leaf, with `chain` as it verified (or not given). */
function inputOf(leaf: IssuedCertificate, chain: readonly IssuedCertificate[] | null, certFlags = 0): MapperInput {
  const x = new X509Certificate(leaf.der);
  return {
    sha1: sha1Of(leaf),
    sha256: x.fingerprint256.replace(/:/g, '').toLowerCase(),
    subject: x.subject,
    issuer: x.issuer,
    serialNumber: x.serialNumber.toLowerCase(),
    certFlags,
    der: leaf.der,
    ...(chain ? { chain: chain.map((c) => c.der) } : {}),
  };
}

const real = inputOf(realLeaf, [realLeaf, realCa, realRoot]);
const realWithoutRoot = inputOf(realLeaf, [realLeaf, realCa]);
const realUnverified = inputOf(realLeaf, [realLeaf, realCa, realRoot], CertStatus.CERT_E_EXPIRED);
const realNoChain = inputOf(realLeaf, null);
const realWrongChain = { ...real, chain: [plainLeaf.der, realCa.der, realRoot.der] };
// As the client sends it: the forger's own chain, which the server could not verify.
const forged = inputOf(forgedLeaf, [forgedLeaf, forgedCa, forgedRoot], CertStatus.CERT_E_UNTRUSTEDROOT);
// The forger's chain claimed as verified (a server bug): only the CA pin tells it apart.
const forgedClaimed = inputOf(forgedLeaf, [forgedLeaf, forgedCa, forgedRoot]);
// The forged leaf with the real CA above it (a chain built by issuer name): the signature does not link.
const forgedUnderRealCa = inputOf(forgedLeaf, [forgedLeaf, realCa, realRoot]);
const forgedNoChain = inputOf(forgedLeaf, null);
const forgedKeyIdUnderRealCa = inputOf(forgedLeafRealKeyId, [forgedLeafRealKeyId, realCa, realRoot]);
const forgedNoKeyIdUnderRealCa = inputOf(forgedLeafNoKeyId, [forgedLeafNoKeyId, realCa, realRoot]);
const partner = inputOf(partnerLeaf, [partnerLeaf, otherCa]);
const plain = inputOf(plainLeaf, [plainLeaf, realCa, realRoot]);

test('fixtures: the names are the same, the keys are not', () => {
  assert.equal(real.subject, forged.subject);
  assert.equal(real.issuer, forged.issuer);
  assert.equal(new X509Certificate(realCa.der).subject, new X509Certificate(forgedCa.der).subject);
  assert.notEqual(sha1Of(realCa), sha1Of(forgedCa));
  assert.equal(new X509Certificate(realLeaf.der).verify(new X509Certificate(realCa.der).publicKey), true);
  assert.equal(new X509Certificate(forgedLeaf.der).verify(new X509Certificate(realCa.der).publicKey), false);
  const realCaX509 = new X509Certificate(realCa.der);
  assert.equal(new X509Certificate(forgedLeaf.der).checkIssued(realCaX509), false, 'the forger\'s own key id points at the forged CA');
  for (const leaf of [forgedLeafRealKeyId, forgedLeafNoKeyId]) {
    assert.equal(new X509Certificate(leaf.der).checkIssued(realCaX509), true, 'names and key ids say: issued by the real CA');
    assert.equal(new X509Certificate(leaf.der).verify(realCaX509.publicKey), false, 'the signature says otherwise');
  }
});

const byIssuer = (match: string): MapperConfig => ({ manyToOne: [{ name: 'ca', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }, { field: 'issuer', attribute: 'CN', match }], identity: 'user' }] });
const pinned = (thumbprint: string, extra: Partial<ManyToOneMapping> = {}): MapperConfig => ({ manyToOne: [{ name: 'pinned', rules: [{ field: 'subject', attribute: 'CN', match: 'alice' }], issuerThumbprint: thumbprint, identity: 'alice', ...extra }] });
const denyPinned = (thumbprint: string): MapperConfig => ({
  manyToOne: [
    { name: 'revoked CA', rules: [], issuerThumbprint: thumbprint, deny: true },
    { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' },
  ],
});
const realCaColons = new X509Certificate(realCa.der).fingerprint;

const chainRows: Row[] = [
  { name: 'issuer rule: the real chain maps', config: byIssuer('certbound test client CA'), input: real, identity: 'user', denied: false, by: 'many-to-one:ca' },
  { name: 'issuer rule: the issuer is chain[1], not the root', config: byIssuer('certbound test root CA'), input: real, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the real leaf without a chain does not map', config: byIssuer('certbound test client CA'), input: realNoChain, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the real chain that did not verify (certFlags) does not map', config: byIssuer('certbound test client CA'), input: realUnverified, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: a chain that starts with another certificate does not map', config: byIssuer('certbound test client CA'), input: realWrongChain, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the forged chain as sent (unverified) does not map', config: byIssuer('certbound test client CA'), input: forged, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the forged leaf under the real CA (no signature link) does not map', config: byIssuer('certbound test client CA'), input: forgedUnderRealCa, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the forged leaf with the real CA\'s key id under the real CA does not map', config: byIssuer('certbound test client CA'), input: forgedKeyIdUnderRealCa, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the forged leaf without key id under the real CA does not map', config: byIssuer('certbound test client CA'), input: forgedNoKeyIdUnderRealCa, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuer rule: the forged leaf without a chain does not map', config: byIssuer('certbound test client CA'), input: forgedNoChain, identity: null, denied: true, by: 'unmapped' },
  // A name is not an identity: were the forged chain ever claimed verified, a name rule could not tell it apart.
  { name: 'issuer rule: a forged chain claimed verified matches by name (why issuerThumbprint exists)', config: byIssuer('certbound test client CA'), input: forgedClaimed, identity: 'user', denied: false },
  { name: 'issuerThumbprint: the real client CA maps', config: pinned(sha1Of(realCa)), input: real, identity: 'alice', denied: false, by: 'many-to-one:pinned' },
  { name: 'issuerThumbprint: written with colons and upper case', config: pinned(realCaColons), input: real, identity: 'alice', denied: false },
  { name: 'issuerThumbprint: the root above the client CA maps too', config: pinned(sha1Of(realRoot)), input: real, identity: 'alice', denied: false },
  { name: 'issuerThumbprint: the leaf\'s own thumbprint is not above the leaf', config: pinned(sha1Of(realLeaf)), input: real, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: a root the chain does not hold', config: pinned(sha1Of(realRoot)), input: realWithoutRoot, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the forged chain claimed verified does not map', config: pinned(sha1Of(realCa)), input: forgedClaimed, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the forged chain as sent does not map', config: pinned(sha1Of(realCa)), input: forged, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the forged leaf under the real CA does not map', config: pinned(sha1Of(realCa)), input: forgedUnderRealCa, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the forged leaf with the real CA\'s key id under the real CA does not map', config: pinned(sha1Of(realCa)), input: forgedKeyIdUnderRealCa, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the forged leaf without key id under the real CA does not map', config: pinned(sha1Of(realCa)), input: forgedNoKeyIdUnderRealCa, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the forged leaf without a chain does not map', config: pinned(sha1Of(realCa)), input: forgedNoChain, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: the real chain that did not verify does not map', config: pinned(sha1Of(realCa)), input: realUnverified, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint: a pin on the forger\'s CA does not match the real chain', config: pinned(sha1Of(forgedCa)), input: real, identity: null, denied: true, by: 'unmapped' },
  { name: 'issuerThumbprint with empty rules: every certificate of that CA', config: { manyToOne: [{ name: 'ca users', rules: [], issuerThumbprint: sha1Of(realCa), identity: 'ca-user' }] }, input: plain, identity: 'ca-user', denied: false },
  { name: 'issuerThumbprint and rules are ANDed', config: pinned(sha1Of(realCa)), input: plain, identity: null, denied: true, by: 'unmapped' },
  { name: 'deny by issuerThumbprint: the pinned CA\'s certificate is refused', config: denyPinned(sha1Of(realCa)), input: real, identity: null, denied: true, by: 'many-to-one:revoked CA', reason: 'denied by mapping revoked CA' },
  { name: 'deny by issuerThumbprint: a chain that links to another CA is not refused by it', config: denyPinned(sha1Of(otherCa)), input: real, identity: 'user', denied: false, by: 'many-to-one:users' },
  { name: 'deny by issuerThumbprint: a broken link cannot escape it', config: denyPinned(sha1Of(otherCa)), input: forgedUnderRealCa, identity: null, denied: true, by: 'many-to-one:revoked CA', reason: 'denied by mapping revoked CA: the issuer cannot be told: chain[1] did not issue chain[0]' },
  { name: 'deny by issuerThumbprint: a link whose signature fails cannot escape it', config: denyPinned(sha1Of(otherCa)), input: forgedKeyIdUnderRealCa, identity: null, denied: true, reason: 'denied by mapping revoked CA: the issuer cannot be told: chain[1] did not issue chain[0]' },
  { name: 'deny by issuerThumbprint: an unverified chain cannot escape it', config: denyPinned(sha1Of(otherCa)), input: forged, identity: null, denied: true, reason: 'denied by mapping revoked CA: the issuer cannot be told: the chain did not verify (certFlags 0x800b0109)' },
  { name: 'deny by issuer name: the partner CA is refused on its verified chain', config: { manyToOne: [{ name: 'no partners', rules: [{ field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }, { name: 'all', rules: [{ field: 'subject', attribute: 'CN', match: '*' }], identity: 'anyone' }] }, input: partner, identity: null, denied: true, by: 'many-to-one:no partners' },
  { name: 'deny by issuer name: the real chain is not refused by it', config: { manyToOne: [{ name: 'no partners', rules: [{ field: 'issuer', attribute: 'O', match: 'elsewhere' }], deny: true }, { name: 'all', rules: [{ field: 'subject', attribute: 'CN', match: '*' }], identity: 'anyone' }] }, input: real, identity: 'anyone', denied: false, by: 'many-to-one:all' },
];

for (const row of chainRows) test(`mapper on a chain: ${row.name}`, () => check(row));

// ---- subjectAltName ----

test('subjectAltName: parsed with pkijs, every type, IPs in canonical form', () => {
  assert.deepEqual(parseSubjectAltNames(realLeaf.der), {
    uri: ['spiffe://example.org/ns/prod/sa/alice'],
    email: ['alice@example.org'],
    dns: ['alice.example.org'],
    ip: ['10.1.2.3', '2001:db8::1', '10.0.0.1'],
    upn: ['alice@corp.example'],
  });
  assert.deepEqual(parseSubjectAltNames(plainLeaf.der), { uri: [], email: [], dns: [], ip: [], upn: [] });
  assert.equal(parseSubjectAltNames(Buffer.from('not a certificate')), null);
});

test('subjectAltName: the fixture holds what openssl reads in it', async () => {
  const path = join(tempDir(), 'alice.pem');
  writeFileSync(path, realLeaf.pem);
  const r = await run('openssl', ['x509', '-in', path, '-noout', '-ext', 'subjectAltName']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split('\n')[1]?.trim(), 'URI:spiffe://example.org/ns/prod/sa/alice, email:alice@example.org, DNS:alice.example.org, IP Address:10.1.2.3, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:A00:1, othername: UPN::alice@corp.example');
});

test('canonicalIp: one text per address', () => {
  const cases: [string, string | null][] = [
    ['10.1.2.3', '10.1.2.3'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8::0:1', '2001:db8::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['0:0:0:0:0:FFFF:A00:1', '10.0.0.1'],
    ['::ffff:10.6.6.6', '10.6.6.6'],
    ['::ffff:0a06:0606', '10.6.6.6'],
    ['fe80::1%eth0', null],
    ['010.1.2.3', null],
    ['localhost', null],
  ];
  for (const [input, expected] of cases) assert.equal(canonicalIp(input), expected, input);
});

const san = (attribute: 'URI' | 'email' | 'DNS' | 'IP' | 'UPN', match: string, caseSensitive?: boolean): MapperConfig => ({
  manyToOne: [{ name: 'san', rules: [{ field: 'san', attribute, match, ...(caseSensitive === undefined ? {} : { caseSensitive }) }], identity: 'by-san' }],
  denyUnmapped: false,
});

const sanRows: [string, MapperConfig, string | null][] = [
  ['URI exact (SPIFFE ID)', san('URI', 'spiffe://example.org/ns/prod/sa/alice'), 'by-san'],
  ['URI wildcard over a namespace', san('URI', 'spiffe://example.org/ns/prod/*'), 'by-san'],
  ['URI in another namespace', san('URI', 'spiffe://example.org/ns/dev/*'), null],
  ['URI is matched whole', san('URI', 'spiffe://example.org'), null],
  ['email exact', san('email', 'alice@example.org'), 'by-san'],
  ['email wildcard', san('email', '*@example.org'), 'by-san'],
  ['email case-insensitive by default', san('email', 'ALICE@EXAMPLE.ORG'), 'by-san'],
  ['email caseSensitive', san('email', 'ALICE@EXAMPLE.ORG', true), null],
  ['email does not read the UPN', san('email', 'alice@corp.example'), null],
  ['DNS exact', san('DNS', 'alice.example.org'), 'by-san'],
  ['DNS wildcard', san('DNS', '*.example.org'), 'by-san'],
  ['DNS does not read the URI', san('DNS', 'example.org'), null],
  ['IPv4 exact', san('IP', '10.1.2.3'), 'by-san'],
  ['IPv4 wildcard', san('IP', '10.1.2.*'), 'by-san'],
  ['IPv4 another address', san('IP', '10.1.2.4'), null],
  ['IPv6 canonical', san('IP', '2001:db8::1'), 'by-san'],
  ['IPv6 written long is made canonical', san('IP', '2001:DB8:0:0:0:0:0:1'), 'by-san'],
  ['IPv6 wildcard on the canonical form', san('IP', '2001:db8::*'), 'by-san'],
  ['IPv4-mapped IPv6', san('IP', '::ffff:10.0.0.1'), 'by-san'],
  ['UPN exact', san('UPN', 'alice@corp.example'), 'by-san'],
  ['UPN wildcard', san('UPN', '*@corp.example'), 'by-san'],
  ['UPN does not read the email', san('UPN', 'alice@example.org'), null],
];

for (const [name, config, identity] of sanRows) {
  test(`mapper on subjectAltName: ${name}`, () => {
    const out = compileMapper(config)(real);
    assert.equal(out.identity, identity);
    assert.equal(out.deniedByMapper, false);
  });
}

test('mapper on subjectAltName: a certificate without the extension matches no san rule, and a san deny mapping does not deny it', () => {
  assert.equal(compileMapper(san('DNS', '*'))(plain).identity, null);
  const out = compileMapper({ manyToOne: [{ name: 'dev', rules: [{ field: 'san', attribute: 'URI', match: '*' }], deny: true }, { name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] })(plain);
  assert.deepEqual(out, { identity: 'user', deniedByMapper: false, reason: null, by: 'many-to-one:users' });
});

test('mapper on subjectAltName: the forger\'s copy of a SPIFFE ID only maps together with the CA pin', () => {
  const spiffe: MapperConfig = { manyToOne: [{ name: 'prod', rules: [{ field: 'san', attribute: 'URI', match: 'spiffe://example.org/ns/prod/*' }], issuerThumbprint: sha1Of(realCa), identity: 'prod' }] };
  assert.equal(compileMapper(spiffe)(real).identity, 'prod');
  for (const input of [forged, forgedClaimed, forgedUnderRealCa, forgedKeyIdUnderRealCa, forgedNoKeyIdUnderRealCa, forgedNoChain]) assert.equal(compileMapper(spiffe)(input).identity, null);
});

test('mapper: the subjectAltName and the chain are read only when a rule needs them, and once per certificate', (t) => {
  const parse = t.mock.method(pkijs.Certificate, 'fromBER');
  const verify = t.mock.method(X509Certificate.prototype, 'verify');
  compileMapper({ manyToOne: [{ name: 'users', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'user' }] })(real);
  assert.equal(parse.mock.callCount(), 0, 'a subject rule parses no subjectAltName');
  assert.equal(verify.mock.callCount(), 0, 'a subject rule checks no chain');
  const mapper = compileMapper({
    manyToOne: [
      { name: 'a', rules: [{ field: 'san', attribute: 'DNS', match: 'alice.example.org' }, { field: 'issuer', attribute: 'CN', match: 'nope' }], identity: 'a' },
      { name: 'b', rules: [{ field: 'san', attribute: 'URI', match: '*' }], issuerThumbprint: sha1Of(otherCa), identity: 'b' },
      { name: 'c', rules: [{ field: 'san', attribute: 'UPN', match: 'alice@*' }, { field: 'issuer', attribute: 'O', match: org }], issuerThumbprint: sha1Of(realRoot), identity: 'c' },
    ],
  });
  assert.equal(mapper(real).identity, 'c');
  assert.equal(parse.mock.callCount(), 1, 'the subjectAltName is parsed once for three mappings');
  assert.equal(verify.mock.callCount(), 2, 'two links (leaf → CA → root) checked once for two issuer rules and two pins');
  assert.equal(mapper(real).identity, 'c');
  assert.equal(parse.mock.callCount(), 2, 'another mapping call reads its certificate again');
});

// ---- configuration errors ----

test('mapper: bad configurations are refused with CB_ERR_INVALID_OPTION naming the key', () => {
  const rule = { field: 'subject', attribute: 'CN', match: '*' } as const;
  const bad: [unknown, string][] = [
    [null, 'mapper: must be an object, not null'],
    [[], 'mapper: must be an object, not an array'],
    ['alice', 'mapper: must be an object, not "alice"'],
    [{ oneToMany: [] }, 'mapper.oneToMany: unknown key (allowed: oneToOne, manyToOne, custom, denyUnmapped)'],
    [{ denyUnmapped: 'false' }, 'mapper.denyUnmapped: must be true or false, not "false"'],
    [{ custom: 'alice' }, 'mapper.custom: must be a function, not "alice"'],
    [{ oneToOne: {} }, 'mapper.oneToOne: must be an array, not an object'],
    [{ oneToOne: ['x'] }, 'mapper.oneToOne[0]: must be an object, not "x"'],
    [{ oneToOne: [{ thumbprint: 'abcd', identity: 'x' }] }, 'mapper.oneToOne[0].thumbprint: "abcd" is not a SHA-1 thumbprint (20 bytes of hex)'],
    [{ oneToOne: [{ thumbprint: 'zz'.repeat(20), identity: 'x' }] }, `mapper.oneToOne[0].thumbprint: "${'zz'.repeat(20)}" is not a SHA-1 thumbprint (20 bytes of hex)`],
    [{ oneToOne: [{ thumbprint: 'ab'.repeat(32), identity: 'x' }] }, `mapper.oneToOne[0].thumbprint: "${'ab'.repeat(32)}" is not a SHA-1 thumbprint (20 bytes of hex)`],
    [{ oneToOne: [{ thumbprint: 42, identity: 'x' }] }, 'mapper.oneToOne[0].thumbprint: must be a SHA-1 thumbprint in hex, not 42'],
    [{ oneToOne: [{ thumbprint: ALICE_SHA1, identity: '' }] }, 'mapper.oneToOne[0].identity: must be a non-empty string, not ""'],
    [{ oneToOne: [{ thumbprint: ALICE_SHA1, identiy: 'x' }] }, 'mapper.oneToOne[0].identiy: unknown key (allowed: thumbprint, identity, enabled)'],
    [{ oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'x', enabled: 'yes' }] }, 'mapper.oneToOne[0].enabled: must be true or false, not "yes"'],
    [{ oneToOne: [{ thumbprint: ALICE_SHA1, identity: 'x' }, { thumbprint: ALICE_SHA1.toUpperCase(), identity: 'y' }] }, 'mapper.oneToOne[1].thumbprint: another enabled mapping has the same thumbprint'],
    [{ manyToOne: [{ name: 'm', rules: [rule] }] }, 'mapper.manyToOne[0].identity: needed unless deny: true'],
    [{ manyToOne: [{ name: 'm', rules: [rule], deny: true, identity: 'x' }] }, 'mapper.manyToOne[0].identity: a deny mapping has no identity'],
    [{ manyToOne: [{ name: 'm', rules: [rule], deny: 'yes' }] }, 'mapper.manyToOne[0].deny: must be true or false, not "yes"'],
    [{ manyToOne: [{ name: 'm', rules: [], identity: 'x' }] }, 'mapper.manyToOne[0].rules: needs at least one rule (or an issuerThumbprint)'],
    [{ manyToOne: [{ name: 'm', identity: 'x' }] }, 'mapper.manyToOne[0].rules: missing'],
    [{ manyToOne: [{ rules: [rule], identity: 'x' }] }, 'mapper.manyToOne[0].name: must be a non-empty string, not undefined'],
    [{ manyToOne: [{ name: 'm', rules: [rule], identity: 'x' }, { name: 'm', rules: [rule], identity: 'y' }] }, 'mapper.manyToOne[1].name: "m" names another mapping too'],
    [{ manyToOne: [{ name: 'm', rules: [rule], identity: 'x', priority: 1 }] }, 'mapper.manyToOne[0].priority: unknown key (allowed: name, rules, issuerThumbprint, identity, deny, enabled)'],
    [{ manyToOne: [{ name: 'm', rules: [rule], identity: 'x', issuerThumbprint: 'ab'.repeat(32) }] }, `mapper.manyToOne[0].issuerThumbprint: "${'ab'.repeat(32)}" is not a SHA-1 thumbprint (20 bytes of hex)`],
    [{ manyToOne: [{ name: 'm', rules: [rule, { field: 'serial', attribute: 'CN', match: '*' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[1].field: must be one of subject, issuer, san, not "serial"'],
    [{ manyToOne: [{ name: 'm', rules: ['CN=*'], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0]: must be an object, not "CN=*"'],
    [{ manyToOne: [{ name: 'm', rules: [{ ...rule, casesensitive: true }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].casesensitive: unknown key (allowed: field, attribute, match, caseSensitive)'],
    [{ manyToOne: [{ name: 'm', rules: [{ ...rule, caseSensitive: 'no' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].caseSensitive: must be true or false, not "no"'],
    [{ manyToOne: [{ name: 'm', rules: [{ ...rule, attribute: '' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].attribute: must be a non-empty string, not ""'],
    [{ manyToOne: [{ name: 'm', rules: [{ ...rule, match: '' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].match: must be a non-empty string, not ""'],
    [{ manyToOne: [{ name: 'm', rules: [{ field: 'san', attribute: 'uri', match: '*' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].attribute: must be one of URI, email, DNS, IP, UPN for field san, not "uri"'],
    [{ manyToOne: [{ name: 'm', rules: [{ field: 'san', attribute: 'IP', match: 'localhost' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].match: "localhost" is not an IPv4 or IPv6 address (use * for a pattern)'],
    [{ manyToOne: [{ name: 'm', enabled: false, rules: [{ field: 'issuer', attribute: 'CN', match: '' }], identity: 'x' }] }, 'mapper.manyToOne[0].rules[0].match: must be a non-empty string, not ""'],
  ];
  for (const [config, message] of bad) {
    assert.throws(() => compileMapper(config as MapperConfig), (err: unknown) => {
      assert.ok(err instanceof CertboundError, `${message}: a CertboundError`);
      assert.equal(err.code, 'CB_ERR_INVALID_OPTION');
      assert.equal(err.message, `Invalid option ${message}`);
      return true;
    });
  }
});

test('mapper: every mapper of docs/client-auth-modes.md compiles', () => {
  const text = readFileSync(join(import.meta.dirname, '..', 'docs', 'client-auth-modes.md'), 'utf8');
  const configs = [...text.matchAll(/^```json\n([\s\S]*?)^```$/gm)].map((m) => (JSON.parse(m[1] ?? '') as { mapper?: MapperConfig }).mapper);
  assert.equal(configs.length, 2);
  for (const config of configs) {
    assert.ok(config);
    assert.equal(typeof compileMapper(config), 'function');
  }
});

test('mapper: a mapping with only an issuerThumbprint compiles', () => {
  assert.equal(typeof compileMapper({ manyToOne: [{ name: 'ca', rules: [], issuerThumbprint: ALICE_SHA1, deny: true }] }), 'function');
});

// ---- on a real server ----

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

test('a server with a CA pin: the dev client CA\'s certificate maps, the untrusted CA\'s does not', async (t) => {
  const pki = await devPki();
  const clientCaSha1 = new X509Certificate(readFileSync(pki.clientCa)).fingerprint;
  const mapper: MapperConfig = { manyToOne: [{ name: 'dev CA', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], issuerThumbprint: clientCaSha1, identity: 'dev-ca-user' }] };
  const { port } = await startServer(t, 'accept-untrusted', { mapper, underPressure: false });
  const ok = await get(port, '/connection', { cert: pki.client, key: pki.clientKey });
  assert.equal((ok.json() as Info).clientCertificate?.identity, 'dev-ca-user');
  const outsider = await get(port, '/connection', { cert: pki.clientUntrusted, key: pki.clientUntrustedKey });
  assert.equal((outsider.json() as Info).clientCertificate?.identity, null);
  assert.equal((outsider.json() as Info).clientCertificate?.authorized, false, 'the mapper does not run on an untrusted chain');
});

test('SAN deny rules cannot be dodged with another spelling: an IPv4-mapped IPv6 address, a DNS root dot, a control character', async () => {
  const leaf = (altNames: Array<string | { upn: string }>) => issueCertificate({ subject: { commonName: 'dodger', organization: org }, issuer: realCa, extKeyUsage: [OID.clientAuth], altNames });
  const config = (attribute: 'IP' | 'DNS' | 'UPN', match: string): MapperConfig => ({
    manyToOne: [
      { name: 'blocked', rules: [{ field: 'san', attribute, match }], deny: true },
      { name: 'members', rules: [{ field: 'subject', attribute: 'O', match: org }], identity: 'member' },
    ],
  });
  const rows: Array<[string, Array<string | { upn: string }>, MapperConfig]> = [
    ['IPv4-mapped IPv6 for a denied IPv4', ['::ffff:10.6.6.6'], config('IP', '10.6.6.6')],
    ['a denied IPv4 written as IPv6 in the rule', ['10.6.6.6'], config('IP', '::ffff:10.6.6.6')],
    ['DNS with its root dot', ['blocked.example.com.'], config('DNS', 'blocked.example.com')],
    ['UPN with a NUL after the denied name', [{ upn: 'mallory@corp.example\u0000' }], config('UPN', 'mallory@corp.example')],
  ];
  for (const [name, altNames, cfg] of rows) {
    const c = await leaf(altNames);
    const x = new X509Certificate(c.der);
    const out = compileMapper(cfg)({ sha1: x.fingerprint.replace(/:/g, '').toLowerCase(), sha256: '', subject: x.subject, issuer: x.issuer, serialNumber: x.serialNumber, certFlags: 0, der: c.der, chain: [c.der, realCa.der, realRoot.der] });
    assert.deepEqual([out.identity, out.deniedByMapper], [null, true], name);
  }
});
