// The one status table (src/status.ts) against the tables it replaced: every name → value pair
// each API's table had before the merge, with the values copied from the Windows SDK headers
// (winerror.h, bitsmsg.h) rather than derived, and the name look-ups answering as they did.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BitsHResult, CertStatus, HResult, OcspHandleStatus, Win32, WinStatus, certStatusName, hresultName, win32StatusName } from '../src/status.js';
import { HResult as ClientHResult } from '../src/client/hresult.js';
import { OcspHandleStatus as HandleOcspHandleStatus } from '../src/ocsp/handle.js';
import { CRYPT_E_ASN1_BADTAG, E_INVALID_PASSWORD, NTE_BAD_ALGID } from '../src/client/store.js';
import { NTE_NO_KEY } from '../src/client/selection.js';
import * as publicApi from '../src/index.js';

// Each table as it was (src/status.ts, src/client/hresult.ts, src/ocsp/handle.ts), in its order.
const OLD_WIN32: [string, number][] = [
  ['NO_ERROR', 0], ['ERROR_INVALID_PARAMETER', 87], ['ERROR_INSUFFICIENT_BUFFER', 122], ['ERROR_MORE_DATA', 234], ['ERROR_NOT_SUPPORTED', 50],
  ['ERROR_IO_PENDING', 997], ['ERROR_NOT_FOUND', 1168], ['ERROR_OPERATION_ABORTED', 995], ['ERROR_TIMEOUT', 1460],
];
const OLD_NEGOTIATE_HRESULT: [string, number][] = [
  ['S_OK', 0x00000000], ['E_FAIL', 0x80004005], ['E_NOT_SUPPORTED', 0x80070032], ['E_TIMEOUT', 0x800705B4], ['E_ABORTED', 0x800703E3],
];
const OLD_CERT_STATUS: [string, number][] = [
  ['OK', 0], ['CERT_E_EXPIRED', 0x800B0101], ['CERT_E_VALIDITYPERIODNESTING', 0x800B0102], ['CERT_E_ROLE', 0x800B0103],
  ['CERT_E_PATHLENCONST', 0x800B0104], ['CERT_E_CRITICAL', 0x800B0105], ['CERT_E_PURPOSE', 0x800B0106], ['CERT_E_MALFORMED', 0x800B0108],
  ['CERT_E_UNTRUSTEDROOT', 0x800B0109], ['CERT_E_CHAINING', 0x800B010A], ['TRUST_E_FAIL', 0x800B010B], ['CERT_E_REVOKED', 0x800B010C],
  ['CERT_E_REVOCATION_FAILURE', 0x800B010E], ['CERT_E_WRONG_USAGE', 0x800B0110], ['CERT_E_UNTRUSTEDCA', 0x800B0112],
  ['TRUST_E_CERT_SIGNATURE', 0x80096004], ['CRYPT_E_NO_REVOCATION_CHECK', 0x80092012], ['CRYPT_E_REVOCATION_OFFLINE', 0x80092013],
];
const OLD_BITS_HRESULT: [string, number][] = [
  ['S_OK', 0x00000000], ['S_FALSE', 0x00000001], ['E_NOTIMPL', 0x80004001], ['E_ACCESSDENIED', 0x80070005], ['E_INVALIDARG', 0x80070057],
  ['E_FILE_NOT_FOUND', 0x80070002], ['RPC_X_NULL_REF_POINTER', 0x800706F4], ['RPC_X_BAD_STUB_DATA', 0x800706F7], ['CRYPT_E_NOT_FOUND', 0x80092004],
  ['BG_E_NOT_FOUND', 0x80200001], ['BG_E_INVALID_STATE', 0x80200002], ['BG_E_EMPTY', 0x80200003], ['BG_E_MISSING_FILE_SIZE', 0x80200011],
  ['BG_E_INVALID_SERVER_RESPONSE', 0x8020001B], ['BG_E_LOCAL_FILE_CHANGED', 0x8020001D], ['BG_E_STRING_TOO_LONG', 0x80200021],
  ['BG_E_NO_PROGRESS', 0x80200024], ['BG_S_PARTIAL_COMPLETE', 0x00200017], ['ERROR_WINHTTP_TIMEOUT', 0x80072EE2],
  ['ERROR_WINHTTP_NAME_NOT_RESOLVED', 0x80072EE7], ['ERROR_WINHTTP_CANNOT_CONNECT', 0x80072EFD], ['ERROR_WINHTTP_CONNECTION_ERROR', 0x80072EFE],
  ['ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED', 0x80072F0C], ['ERROR_WINHTTP_SECURE_FAILURE', 0x80072F8F],
];
const OLD_OCSP_HANDLE: [string, number][] = [
  ['NO_ERROR', 0], ['ERROR_INVALID_PARAMETER', 87], ['CRYPT_E_REVOCATION_OFFLINE', 0x80092013], ['CRYPT_E_NOT_IN_REVOCATION_DATABASE', 0x80092014],
];
// The lone constants of src/client/store.ts and src/client/selection.ts.
const OLD_LONE: [string, number, number][] = [
  ['E_INVALID_PASSWORD', 0x80070056, E_INVALID_PASSWORD], ['NTE_BAD_ALGID', 0x80090008, NTE_BAD_ALGID],
  ['CRYPT_E_ASN1_BADTAG', 0x8009310B, CRYPT_E_ASN1_BADTAG], ['NTE_NO_KEY', 0x8009000D, NTE_NO_KEY],
];

const oldLookup = (table: [string, number][], value: number) => table.find(([, v]) => v === value)?.[0];

test('each API table keeps its names, values and order', () => {
  const cases: [string, object, [string, number][]][] = [
    ['Win32', Win32, OLD_WIN32], ['HResult', HResult, OLD_NEGOTIATE_HRESULT], ['CertStatus', CertStatus, OLD_CERT_STATUS],
    ['BitsHResult', BitsHResult, OLD_BITS_HRESULT], ['client HResult', ClientHResult, OLD_BITS_HRESULT],
    ['OcspHandleStatus', OcspHandleStatus, OLD_OCSP_HANDLE], ['ocsp/handle OcspHandleStatus', HandleOcspHandleStatus, OLD_OCSP_HANDLE],
    ['public Win32', publicApi.Win32, OLD_WIN32], ['public HResult', publicApi.HResult, OLD_NEGOTIATE_HRESULT],
    ['public CertStatus', publicApi.CertStatus, OLD_CERT_STATUS], ['public BitsHResult', publicApi.BitsHResult, OLD_BITS_HRESULT],
    ['public OcspHandleStatus', publicApi.OcspHandleStatus, OLD_OCSP_HANDLE],
  ];
  for (const [label, table, old] of cases) {
    assert.deepEqual(Object.entries(table), old, label);
    assert.ok(Object.isFrozen(table), `${label} is frozen`);
  }
  for (const [name, value, constant] of OLD_LONE) assert.equal(constant, value, name);
});

test('every API table is a view of WinStatus: one value per name', () => {
  for (const table of [Win32, HResult, BitsHResult, OcspHandleStatus, CertStatus]) {
    for (const [name, value] of Object.entries(table)) {
      if (table === CertStatus && name === 'OK') assert.equal(value, WinStatus.S_OK, 'CertFlags 0 is S_OK');
      else assert.equal(value, WinStatus[name as keyof typeof WinStatus], name);
    }
  }
  for (const [name, value] of OLD_LONE) assert.equal(WinStatus[name as keyof typeof WinStatus], value, name);
  // And WinStatus holds nothing the old tables did not: each of its names was in one of them.
  const oldNames = new Set([...OLD_WIN32, ...OLD_NEGOTIATE_HRESULT, ...OLD_CERT_STATUS, ...OLD_BITS_HRESULT, ...OLD_OCSP_HANDLE, ...OLD_LONE].map(([n]) => n));
  assert.deepEqual(Object.keys(WinStatus).filter((n) => !oldNames.has(n)), []);
});

test('no value has two names in WinStatus, except 0 (Win32 NO_ERROR, HRESULT S_OK)', () => {
  const byValue = new Map<number, string[]>();
  for (const [name, value] of Object.entries(WinStatus)) byValue.set(value, [...(byValue.get(value) ?? []), name]);
  const shared = [...byValue].filter(([, names]) => names.length > 1);
  assert.deepEqual(shared, [[0, ['NO_ERROR', 'S_OK']]]);
});

test('name look-ups answer as before for every known value', () => {
  const values = new Set<number>([
    ...[...OLD_WIN32, ...OLD_NEGOTIATE_HRESULT, ...OLD_CERT_STATUS, ...OLD_BITS_HRESULT, ...OLD_OCSP_HANDLE, ...OLD_LONE].map(([, v]) => v),
    ...Object.values(WinStatus), 2, 258, 0x80000000, 0xffffffff,
  ]);
  for (const v of values) {
    assert.equal(certStatusName(v), oldLookup(OLD_CERT_STATUS, v), `certStatusName(${v.toString(16)})`);
    assert.equal(win32StatusName(v), oldLookup(OLD_WIN32, v), `win32StatusName(${v.toString(16)})`);
    assert.equal(hresultName(v), oldLookup(OLD_BITS_HRESULT, v), `hresultName(${v.toString(16)})`);
  }
  // A signed 32-bit HRESULT is the same value; HTTP statuses are named by pattern.
  assert.equal(hresultName(0x80200001 | 0), 'BG_E_NOT_FOUND');
  assert.equal(hresultName(0x80190194), 'BG_E_HTTP_ERROR_404');
  assert.equal(publicApi.hresultName, hresultName);
});
