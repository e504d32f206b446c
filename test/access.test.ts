// The access rule (src/server/access.ts) as a table: mode × route requirement × decision →
// served, or refused with a code (and whether the connection closes). Expected values are
// written out here from the rules in docs/client-auth-modes.md, not derived from the code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accessRefusal, type RouteRequirement } from '../src/server/access.js';
import { CertStatus } from '../src/status.js';
import { NO_CERTIFICATE, type TrustDecision, type TrustReason } from '../src/tls/client-certificate.js';
import type { ClientAuthMode } from '../src/tls/client-auth.js';

const decision = (reason: TrustReason, certFlags = 0): TrustDecision => Object.freeze({
  authorized: reason === 'authorized', reason, certFlags, identity: reason === 'authorized' ? 'alice' : null, deniedByMapper: reason === 'denied-by-mapper', mapperReason: null, revocation: null,
});
const D = {
  none: null,
  ok: decision('authorized'),
  expired: decision('untrusted', CertStatus.CERT_E_EXPIRED),
  revoked: decision('revoked', CertStatus.CERT_E_REVOKED),
  unknown: decision('revocation-unknown', CertStatus.CRYPT_E_REVOCATION_OFFLINE),
  denied: decision('denied-by-mapper'),
} as const;

// [mode, requirement, decision, expected: 'serve' | code (+ '!' when the connection closes)]
type Row = [ClientAuthMode, RouteRequirement, keyof typeof D, string];
const U = 'CB_ERR_CLIENT_CERT_UNTRUSTED';
const R = 'CB_ERR_CLIENT_CERT_REQUIRED';
const X = 'CB_ERR_CLIENT_CERT_DENIED';
const ROWS: Row[] = [
  // Routes without an option: the mode decides.
  ['none', 'none', 'none', 'serve'], ['none', 'none', 'ok', 'serve'], ['none', 'none', 'expired', 'serve'], ['none', 'none', 'revoked', 'serve'], ['none', 'none', 'denied', 'serve'],
  ['optional', 'none', 'none', 'serve'], ['optional', 'none', 'ok', 'serve'], ['optional', 'none', 'expired', U], ['optional', 'none', 'revoked', U], ['optional', 'none', 'unknown', U], ['optional', 'none', 'denied', X],
  ['require', 'none', 'none', `${R}!`], ['require', 'none', 'ok', 'serve'], ['require', 'none', 'expired', `${U}!`], ['require', 'none', 'revoked', `${U}!`], ['require', 'none', 'unknown', `${U}!`], ['require', 'none', 'denied', `${X}!`],
  ['accept-untrusted', 'none', 'none', 'serve'], ['accept-untrusted', 'none', 'ok', 'serve'], ['accept-untrusted', 'none', 'expired', 'serve'], ['accept-untrusted', 'none', 'revoked', 'serve'], ['accept-untrusted', 'none', 'denied', 'serve'],
  // Routes marked required / on-demand: authorized, in every mode.
  ...(['none', 'optional', 'accept-untrusted'] as const).flatMap((mode) => (['required', 'on-demand'] as const).flatMap((req): Row[] => [
    [mode, req, 'none', R], [mode, req, 'ok', 'serve'], [mode, req, 'expired', U], [mode, req, 'revoked', U], [mode, req, 'unknown', U], [mode, req, 'denied', X],
  ])),
  ['require', 'required', 'none', `${R}!`], ['require', 'required', 'ok', 'serve'], ['require', 'required', 'revoked', `${U}!`], ['require', 'on-demand', 'denied', `${X}!`],
];

test('accessRefusal: every mode × requirement × decision (TLS)', () => {
  for (const [mode, requirement, d, want] of ROWS) {
    const r = accessRefusal({ mode, requirement, tls: true, decision: D[d], rejectDeniedByMapper: true });
    const got = r ? `${r.code}${r.close ? '!' : ''}` : 'serve';
    assert.equal(got, want, `${mode} / ${requirement} / ${d}`);
  }
});

test('accessRefusal: the 403 body names the verdict', () => {
  const r = accessRefusal({ mode: 'optional', requirement: 'none', tls: true, decision: D.revoked, rejectDeniedByMapper: true });
  assert.deepEqual(r?.extra, { certFlags: CertStatus.CERT_E_REVOKED, certFlagsName: 'CERT_E_REVOKED' });
  assert.deepEqual(r?.args, ['CERT_E_REVOKED']);
});

test('accessRefusal: without TLS, marked routes and require mode are refused with CB_ERR_TLS_REQUIRED', () => {
  const rows: Array<[ClientAuthMode, RouteRequirement, string]> = [
    ['none', 'none', 'serve'], ['optional', 'none', 'serve'], ['accept-untrusted', 'none', 'serve'], ['require', 'none', 'CB_ERR_TLS_REQUIRED'],
    ['none', 'required', 'CB_ERR_TLS_REQUIRED'], ['optional', 'on-demand', 'CB_ERR_TLS_REQUIRED'], ['accept-untrusted', 'required', 'CB_ERR_TLS_REQUIRED'], ['require', 'on-demand', 'CB_ERR_TLS_REQUIRED'],
  ];
  for (const [mode, requirement, want] of rows) {
    assert.equal(accessRefusal({ mode, requirement, tls: false, decision: null, rejectDeniedByMapper: true })?.code ?? 'serve', want, `${mode} / ${requirement}`);
  }
});

test('accessRefusal: rejectDeniedByMapper false lets a denied certificate through unmarked routes only', () => {
  assert.equal(accessRefusal({ mode: 'optional', requirement: 'none', tls: true, decision: D.denied, rejectDeniedByMapper: false }), null);
  assert.equal(accessRefusal({ mode: 'require', requirement: 'none', tls: true, decision: D.denied, rejectDeniedByMapper: false }), null);
  assert.equal(accessRefusal({ mode: 'optional', requirement: 'required', tls: true, decision: D.denied, rejectDeniedByMapper: false })?.code, X);
  assert.equal(accessRefusal({ mode: 'optional', requirement: 'none', tls: true, decision: D.expired, rejectDeniedByMapper: false })?.code, U, 'only the mapper\'s denial is waived');
  assert.equal(NO_CERTIFICATE.authorized, false);
});
