// The decision as pure functions (src/tls/client-certificate.ts): chain verdict first, then
// revocation, then the mapper on an authorized chain only. Real certificates of the dev PKI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { certificateFacts, certificateView, decideTrust, type RevocationOutcome } from '../src/tls/client-certificate.js';
import { compileMapper } from '../src/tls/mapper.js';
import type { HandshakeRecord } from '../src/tls/peer-chain.js';
import { CertStatus } from '../src/status.js';
import { devPki } from './helpers/pki.js';

const record = (der: Buffer, verifyError: string | null): HandshakeRecord => Object.freeze({ sequence: 1, completedAt: 0, protocol: 'TLSv1.3', cipher: null, resumed: false, alpnProtocol: null, chain: [der], verifyError });
const outcome = (certFlags: number, revocationStatus = certFlags, source = 'ocsp'): RevocationOutcome => ({ certFlags, revocationStatus, source, reason: null });

test('decideTrust: the mapper runs only on an authorized chain; revocation before it; one authorized answer', async () => {
  const pki = await devPki();
  const der = new X509Certificate(readFileSync(pki.client)).raw;
  const sha1 = new X509Certificate(der).fingerprint.replace(/:/g, '').toLowerCase();
  const mapper = compileMapper({ oneToOne: [{ thumbprint: sha1, identity: 'alice' }] });
  let calls = 0;
  const counting = (input: Parameters<typeof mapper>[0]) => { calls++; return mapper(input); };
  const good = certificateFacts(record(der, null));
  const expired = certificateFacts(record(der, 'CERT_HAS_EXPIRED'));
  assert.ok(good && expired);
  const rows: Array<[string, ReturnType<typeof decideTrust>, { authorized: boolean; reason: string; certFlags: number; identity: string | null }]> = [
    ['verified, no revocation check', decideTrust(good, undefined, counting), { authorized: true, reason: 'authorized', certFlags: 0, identity: 'alice' }],
    ['chain error: no mapping, whatever the mapper would say', decideTrust(expired, undefined, counting), { authorized: false, reason: 'untrusted', certFlags: CertStatus.CERT_E_EXPIRED, identity: null }],
    ['chain error wins over revocation', decideTrust(expired, outcome(CertStatus.CERT_E_REVOKED), counting), { authorized: false, reason: 'untrusted', certFlags: CertStatus.CERT_E_EXPIRED, identity: null }],
    ['revocation pending', decideTrust(good, 'pending', counting), { authorized: false, reason: 'revocation-pending', certFlags: CertStatus.CRYPT_E_NO_REVOCATION_CHECK, identity: null }],
    ['revoked', decideTrust(good, outcome(CertStatus.CERT_E_REVOKED), counting), { authorized: false, reason: 'revoked', certFlags: CertStatus.CERT_E_REVOKED, identity: null }],
    ['unknown, hard fail', decideTrust(good, outcome(CertStatus.CRYPT_E_REVOCATION_OFFLINE), counting), { authorized: false, reason: 'revocation-unknown', certFlags: CertStatus.CRYPT_E_REVOCATION_OFFLINE, identity: null }],
    ['unknown, soft fail', decideTrust(good, outcome(0, CertStatus.CRYPT_E_REVOCATION_OFFLINE, 'none'), counting), { authorized: true, reason: 'authorized', certFlags: 0, identity: 'alice' }],
    ['good by OCSP', decideTrust(good, outcome(0), counting), { authorized: true, reason: 'authorized', certFlags: 0, identity: 'alice' }],
  ];
  for (const [name, d, want] of rows) assert.deepEqual({ authorized: d.authorized, reason: d.reason, certFlags: d.certFlags, identity: d.identity }, want, name);
  assert.equal(calls, 3, 'the mapper ran for the three authorized chains only');

  const denied = decideTrust(good, undefined, compileMapper({ oneToOne: [{ thumbprint: '00'.repeat(20), identity: 'bob' }] }));
  assert.deepEqual([denied.authorized, denied.reason, denied.deniedByMapper, denied.certFlags], [false, 'denied-by-mapper', true, 0]);
  const soft = decideTrust(good, outcome(0, CertStatus.CRYPT_E_REVOCATION_OFFLINE, 'none'), mapper);
  assert.deepEqual(soft.revocation, { status: CertStatus.CRYPT_E_REVOCATION_OFFLINE, source: 'none', reason: null }, 'soft fail still reports the status');

  const view = certificateView(good, decideTrust(good, undefined, mapper));
  assert.equal(view.sha1, sha1);
  assert.ok(view.der.equals(der));
  assert.ok(Object.isFrozen(view));
  assert.equal(certificateFacts(Object.freeze({ ...record(der, null), chain: [] })), null);
});

test('a custom mapper that answers anything but the documented shapes denies (an async function, a number identity, an empty one)', () => {
  const input = { sha1: 'a'.repeat(40), sha256: 'b'.repeat(64), subject: 'CN=x', issuer: 'CN=y', serialNumber: '01', certFlags: 0, der: Buffer.alloc(1) };
  const bad: Array<[string, () => unknown]> = [
    ['a Promise', () => Promise.resolve({ identity: 'alice' })],
    ['a number identity', () => ({ identity: 42 })],
    ['an empty identity', () => ({ identity: '' })],
    ['a string', () => 'alice'],
    ['denied without true', () => ({ denied: 'yes' })],
  ];
  for (const [name, fn] of bad) {
    const out = compileMapper(fn as never)(input);
    assert.deepEqual([out.identity, out.deniedByMapper], [null, true], name);
  }
  assert.deepEqual([compileMapper(() => null)(input).deniedByMapper, compileMapper(() => ({ identity: 'alice' }))(input).identity], [false, 'alice']);
});
