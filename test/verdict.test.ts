// The verdict rules: OpenSSL's verify error → the CERT_E_* value HTTP.sys puts in CertFlags,
// the clientAuth usage rule, and the status values themselves against winerror.h.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certFlagsFor, VERIFY_ERROR_TO_CERT_STATUS } from '../src/tls/verdict.js';
import { CertStatus, Win32, certStatusName, hresultHex, win32StatusName } from '../src/status.js';

// Copied by hand from the Windows SDK's winerror.h: the independent source of these numbers.
const WINERROR_H: Record<string, number> = {
  NO_ERROR: 0,
  ERROR_NOT_SUPPORTED: 50,
  ERROR_INVALID_PARAMETER: 87,
  ERROR_INSUFFICIENT_BUFFER: 122,
  ERROR_MORE_DATA: 234,
  WAIT_TIMEOUT: 258,
  ERROR_TIMEOUT: 1460,
  ERROR_OPERATION_ABORTED: 995,
  ERROR_IO_PENDING: 997,
  ERROR_NOT_FOUND: 1168,
  CERT_E_EXPIRED: 0x800B0101,
  CERT_E_VALIDITYPERIODNESTING: 0x800B0102,
  CERT_E_ROLE: 0x800B0103,
  CERT_E_PATHLENCONST: 0x800B0104,
  CERT_E_CRITICAL: 0x800B0105,
  CERT_E_PURPOSE: 0x800B0106,
  CERT_E_MALFORMED: 0x800B0108,
  CERT_E_UNTRUSTEDROOT: 0x800B0109,
  CERT_E_CHAINING: 0x800B010A,
  TRUST_E_FAIL: 0x800B010B,
  CERT_E_REVOKED: 0x800B010C,
  CERT_E_REVOCATION_FAILURE: 0x800B010E,
  CERT_E_WRONG_USAGE: 0x800B0110,
  CERT_E_UNTRUSTEDCA: 0x800B0112,
  TRUST_E_CERT_SIGNATURE: 0x80096004,
  CRYPT_E_NO_REVOCATION_CHECK: 0x80092012,
  CRYPT_E_REVOCATION_OFFLINE: 0x80092013,
};

test('every Win32 status and CERT_E_* value equals winerror.h', () => {
  // Every exported value must be in the table above: a new status needs its winerror.h number here.
  for (const [name, value] of Object.entries(Win32)) assert.equal(value, WINERROR_H[name], name);
  for (const [name, value] of Object.entries(CertStatus)) {
    if (name === 'OK') assert.equal(value, 0);
    else assert.equal(value, WINERROR_H[name], name);
  }
  // And the ones the issue names are all there.
  for (const name of ['CERT_E_EXPIRED', 'CERT_E_UNTRUSTEDROOT', 'CERT_E_UNTRUSTEDCA', 'CERT_E_WRONG_USAGE', 'CERT_E_REVOKED'] as const) {
    assert.equal(CertStatus[name], WINERROR_H[name], name);
  }
  for (const name of ['NO_ERROR', 'ERROR_INVALID_PARAMETER', 'ERROR_INSUFFICIENT_BUFFER', 'ERROR_MORE_DATA', 'ERROR_IO_PENDING', 'ERROR_NOT_FOUND'] as const) {
    assert.equal(Win32[name], WINERROR_H[name], name);
  }
});

test('status names and HRESULT printing', () => {
  assert.equal(certStatusName(0x800b0101), 'CERT_E_EXPIRED');
  assert.equal(certStatusName(0), 'OK');
  assert.equal(certStatusName(123), undefined);
  assert.equal(win32StatusName(234), 'ERROR_MORE_DATA');
  assert.equal(win32StatusName(1), undefined);
  assert.equal(hresultHex(CertStatus.CERT_E_WRONG_USAGE), '0x800b0110');
  assert.equal(hresultHex(-2146762495), '0x800b0101', 'a signed 32-bit HRESULT prints the same');
  assert.equal(hresultHex(0), '0x00000000');
});

// OpenSSL verify error (Node's authorizationError code) → the CERT_E_* CryptoAPI reports for the same defect.
const EXPECTED: Record<string, keyof typeof WINERROR_H> = {
  CERT_HAS_EXPIRED: 'CERT_E_EXPIRED',
  CERT_NOT_YET_VALID: 'CERT_E_EXPIRED',
  ERROR_IN_CERT_NOT_BEFORE_FIELD: 'CERT_E_EXPIRED',
  ERROR_IN_CERT_NOT_AFTER_FIELD: 'CERT_E_EXPIRED',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'CERT_E_UNTRUSTEDROOT',
  SELF_SIGNED_CERT_IN_CHAIN: 'CERT_E_UNTRUSTEDROOT',
  CERT_UNTRUSTED: 'CERT_E_UNTRUSTEDROOT',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'CERT_E_UNTRUSTEDCA',
  UNABLE_TO_GET_ISSUER_CERT: 'CERT_E_UNTRUSTEDCA',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'CERT_E_UNTRUSTEDCA',
  CERT_REJECTED: 'CERT_E_UNTRUSTEDCA',
  INVALID_PURPOSE: 'CERT_E_WRONG_USAGE',
  CERT_REVOKED: 'CERT_E_REVOKED',
  UNABLE_TO_GET_CRL: 'CRYPT_E_NO_REVOCATION_CHECK',
  UNABLE_TO_GET_CRL_ISSUER: 'CRYPT_E_NO_REVOCATION_CHECK',
  CRL_HAS_EXPIRED: 'CRYPT_E_REVOCATION_OFFLINE',
  CRL_NOT_YET_VALID: 'CRYPT_E_REVOCATION_OFFLINE',
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: 'CERT_E_REVOCATION_FAILURE',
  CRL_SIGNATURE_FAILURE: 'CERT_E_REVOCATION_FAILURE',
  CERT_SIGNATURE_FAILURE: 'TRUST_E_CERT_SIGNATURE',
  UNABLE_TO_DECRYPT_CERT_SIGNATURE: 'TRUST_E_CERT_SIGNATURE',
  UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: 'TRUST_E_CERT_SIGNATURE',
  INVALID_CA: 'CERT_E_ROLE',
  PATH_LENGTH_EXCEEDED: 'CERT_E_PATHLENCONST',
  INVALID_EXTENSION: 'CERT_E_CRITICAL',
  UNHANDLED_CRITICAL_EXTENSION: 'CERT_E_CRITICAL',
  CERT_CHAIN_TOO_LONG: 'CERT_E_CHAINING',
};

test('the verify-error table: each OpenSSL code gives its CERT_E_* value', () => {
  assert.deepEqual(Object.keys(VERIFY_ERROR_TO_CERT_STATUS).sort(), Object.keys(EXPECTED).sort());
  for (const [code, name] of Object.entries(EXPECTED)) {
    assert.equal(VERIFY_ERROR_TO_CERT_STATUS[code], WINERROR_H[name], code);
    // The verify error wins over the usage rule: a client-auth certificate or none at all.
    assert.equal(certFlagsFor(code, undefined), WINERROR_H[name], code);
    assert.equal(certFlagsFor(code, ['1.3.6.1.5.5.7.3.2']), WINERROR_H[name], code);
  }
  assert.ok(Object.isFrozen(VERIFY_ERROR_TO_CERT_STATUS));
});

test('an unknown verify error is TRUST_E_FAIL, never 0', () => {
  assert.equal(certFlagsFor('SOMETHING_NEW', undefined), WINERROR_H.TRUST_E_FAIL);
  assert.equal(certFlagsFor('toString', undefined), WINERROR_H.TRUST_E_FAIL, 'no prototype keys');
});

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';
const EMAIL = '1.3.6.1.5.5.7.3.4';

test('the clientAuth usage rule on a verified chain (RFC 5280 4.2.1.12)', () => {
  const rows: [string, string[] | undefined, number][] = [
    ['no EKU extension: any usage', undefined, 0],
    ['an empty list counts as none', [], 0],
    ['clientAuth', [CLIENT_AUTH], 0],
    ['clientAuth among others', [SERVER_AUTH, CLIENT_AUTH], 0],
    ['anyExtendedKeyUsage', [ANY_EKU], 0],
    ['serverAuth only', [SERVER_AUTH], WINERROR_H.CERT_E_WRONG_USAGE!],
    ['emailProtection only', [EMAIL], WINERROR_H.CERT_E_WRONG_USAGE!],
    ['serverAuth and emailProtection', [SERVER_AUTH, EMAIL], WINERROR_H.CERT_E_WRONG_USAGE!],
  ];
  for (const [name, eku, flags] of rows) assert.equal(certFlagsFor(null, eku), flags, name);
});
