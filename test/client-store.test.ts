// Certificate stores and selection: location table, store-name and thumbprint rules, every
// error of seeds 001/002 as an HRESULT, PEM and PKCS#12 entries (made by openssl), selection by
// thumbprint from each of the eight locations, by subject name, and EACCES → E_ACCESSDENIED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { HResult, hresultFromWin32, hresultName } from '../src/client/hresult.js';
import {
  checkStoreName, locationDir, LOCATION_DIRS, NTE_BAD_ALGID, E_INVALID_PASSWORD, openStore, parseStoreLocation, StoreLocation, storeDir,
} from '../src/client/store.js';
import { checkByIdArguments, checkByNameArguments, checkThumbprint, findCertificateById, findCertificateByName, NTE_NO_KEY } from '../src/client/selection.js';
import { simpleSubjectName, subjectMatches, displaySubjectName, subjectAttributes } from '../src/client/subject-name.js';
import { devPki, tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { makeStoreRoot, P12_PASSWORD, thumbprintOf } from './client-fixtures.js';

const HASH = 'a1066e13f234490a22d76fb280ab687d1655b314'; // the seed's example thumbprint

test('HRESULT values match winerror.h / bitsmsg.h', () => {
  assert.equal(hresultFromWin32(2), HResult.E_FILE_NOT_FOUND);
  assert.equal(hresultFromWin32(5), HResult.E_ACCESSDENIED);
  assert.equal(hresultFromWin32(1780), HResult.RPC_X_NULL_REF_POINTER);
  assert.equal(hresultFromWin32(1783), HResult.RPC_X_BAD_STUB_DATA);
  assert.equal(hresultFromWin32(12044), HResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED);
  assert.equal(HResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED, 0x80072f0c);
  assert.equal(HResult.BG_E_INVALID_STATE, 0x80200002);
  assert.equal(HResult.BG_E_STRING_TOO_LONG, 0x80200021);
  assert.equal(HResult.CRYPT_E_NOT_FOUND, 0x80092004);
  assert.equal(hresultName(0x80190194), 'BG_E_HTTP_ERROR_404');
});

test('BG_CERT_STORE_LOCATION values and their directories', () => {
  const table: [string, number, string][] = [
    ['CURRENT_USER', 0, 'current-user'], ['LOCAL_MACHINE', 1, 'local-machine'], ['CURRENT_SERVICE', 2, 'current-service'],
    ['SERVICES', 3, 'services'], ['USERS', 4, 'users'], ['CURRENT_USER_GROUP_POLICY', 5, 'current-user-group-policy'],
    ['LOCAL_MACHINE_GROUP_POLICY', 6, 'local-machine-group-policy'], ['LOCAL_MACHINE_ENTERPRISE', 7, 'local-machine-enterprise'],
  ];
  for (const [name, value, dir] of table) {
    assert.equal((StoreLocation as Record<string, number>)[name], value, name);
    assert.equal(LOCATION_DIRS[value], dir);
    assert.equal(parseStoreLocation(name), value);
    assert.equal(parseStoreLocation(`BG_CERT_STORE_LOCATION_${name}`), value);
    assert.equal(parseStoreLocation(dir), value);
    assert.equal(parseStoreLocation(String(value)), value);
    assert.equal(locationDir(value as 0, { root: '/r' }), `/r/${dir}`);
  }
  assert.equal(parseStoreLocation('8'), undefined);
  assert.equal(parseStoreLocation('nowhere'), undefined);
});

test('default roots: XDG config for the user, /etc for the machine, CERTBOUND_STORE_ROOT over both', () => {
  const env = { XDG_CONFIG_HOME: '/home/u/.cfg' };
  assert.equal(locationDir(StoreLocation.CURRENT_USER, { env }), '/home/u/.cfg/certbound/stores/current-user');
  assert.equal(locationDir(StoreLocation.CURRENT_USER_GROUP_POLICY, { env }), '/home/u/.cfg/certbound/stores/current-user-group-policy');
  assert.equal(locationDir(StoreLocation.LOCAL_MACHINE, { env }), '/etc/certbound/stores/local-machine');
  assert.equal(locationDir(StoreLocation.SERVICES, { env }), '/etc/certbound/stores/services');
  assert.equal(locationDir(StoreLocation.LOCAL_MACHINE, { env: { ...env, CERTBOUND_STORE_ROOT: '/srv/s' } }), '/srv/s/local-machine');
});

test('store names: null, 255 and 256 characters, unsafe paths', () => {
  const table: [string | null | undefined, number][] = [
    [null, HResult.RPC_X_NULL_REF_POINTER], [undefined, HResult.RPC_X_NULL_REF_POINTER],
    ['MY', 0], ['x'.repeat(255), 0], ['x'.repeat(256), HResult.BG_E_STRING_TOO_LONG], ['x'.repeat(1000), HResult.BG_E_STRING_TOO_LONG],
    ['', HResult.E_INVALIDARG], ['..', HResult.E_INVALIDARG], ['a/b', HResult.E_INVALIDARG], ['svc\\MY', 0], ['svc\\..', HResult.E_INVALIDARG],
  ];
  for (const [name, hr] of table) assert.equal(checkStoreName(name), hr, String(name).slice(0, 20));
});

test('thumbprints: 20 bytes as bytes or hex, anything else is RPC_X_BAD_STUB_DATA', () => {
  assert.equal(checkThumbprint(null).hr, HResult.RPC_X_NULL_REF_POINTER);
  assert.equal(checkThumbprint(undefined).hr, HResult.RPC_X_NULL_REF_POINTER);
  assert.equal(checkThumbprint(Buffer.alloc(20)).hr, 0);
  assert.equal(checkThumbprint(new Uint8Array(19)).hr, HResult.RPC_X_BAD_STUB_DATA);
  assert.equal(checkThumbprint(Buffer.alloc(21)).hr, HResult.RPC_X_BAD_STUB_DATA);
  assert.equal(checkThumbprint(Buffer.alloc(32)).hr, HResult.RPC_X_BAD_STUB_DATA, 'a SHA-256 is not a thumbprint');
  assert.equal(checkThumbprint(HASH).hr, 0);
  assert.deepEqual(checkThumbprint(HASH.toUpperCase().replace(/(..)(?!$)/g, '$1:')).bytes, Buffer.from(HASH, 'hex'));
  assert.equal(checkThumbprint('zz'.repeat(20)).hr, HResult.RPC_X_BAD_STUB_DATA);
});

test('SetClientCertificateByID argument checks: every error of the seed, in order', () => {
  const table: [unknown, string | null, Uint8Array | string | null, number][] = [
    [0, null, HASH, HResult.RPC_X_NULL_REF_POINTER],
    [0, 'MY', null, HResult.RPC_X_NULL_REF_POINTER],
    [0, 'MY', Buffer.alloc(16), HResult.RPC_X_BAD_STUB_DATA],
    [8, 'MY', HASH, HResult.E_NOTIMPL],
    [-1, 'MY', HASH, HResult.E_NOTIMPL],
    [1.5, 'MY', HASH, HResult.E_NOTIMPL],
    ['0', 'MY', HASH, HResult.E_NOTIMPL],
    [0, 'M'.repeat(256), HASH, HResult.BG_E_STRING_TOO_LONG],
    [0, 'M'.repeat(255), HASH, 0],
    [7, 'MY', HASH, 0],
  ];
  for (const [loc, name, hash, hr] of table) assert.equal(hresultName(checkByIdArguments(loc, name, hash)), hresultName(hr), `${String(loc)} ${String(name).slice(0, 8)}`);
  assert.equal(checkByNameArguments(0, 'MY', null), HResult.RPC_X_NULL_REF_POINTER);
  assert.equal(checkByNameArguments(0, 'MY', ''), HResult.E_INVALIDARG);
  assert.equal(checkByNameArguments(0, 'MY', 'n'.repeat(256)), HResult.BG_E_STRING_TOO_LONG);
  assert.equal(checkByNameArguments(9, 'MY', 'dev'), HResult.E_NOTIMPL);
});

test('simple subject names are in DER order and match by substring', async () => {
  const pki = await devPki();
  const { readFileSync } = await import('node:fs');
  const der = Buffer.from((/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END/.exec(readFileSync(pki.client, 'utf8'))?.[1] ?? '').replace(/\s+/g, ''), 'base64');
  const attrs = subjectAttributes(der);
  assert.equal(simpleSubjectName(attrs), 'certbound dev, users, dev-client');
  assert.equal(displaySubjectName(attrs), 'CN=dev-client, OU=users, O=certbound dev');
  for (const [q, hit] of [['dev-client', true], ['users,dev-client', true], ['USERS, DEV-CLIENT', true], ['certbound dev, users, dev-client', true], ['dev-client, users', false], ['', false], ['nobody', false]] as const) {
    assert.equal(subjectMatches(simpleSubjectName(attrs), q), hit, q);
  }
});

test('stores on disk: PEM and PKCS#12 entries, selection by thumbprint from each location', async () => {
  const pki = await devPki();
  const root = await makeStoreRoot(tempDir('cb-stores-'), pki);
  const thumb = thumbprintOf(pki.client);
  for (let loc = 0; loc < LOCATION_DIRS.length; loc++) {
    const found = await findCertificateById(loc, 'MY', thumb, { root });
    assert.equal(found.hr, 0, `location ${loc}`);
    assert.equal(found.entry?.thumbprint.toString('hex'), thumb);
    assert.ok(found.entry?.privateKey, 'the key comes with the certificate');
    assert.equal(found.entry?.chain.length, 1, 'the client CA follows the leaf');
  }
  // SERVICES and USERS name a service's or user's store with a backslash prefix.
  mkdirSync(join(root, 'services', 'backup-svc', 'MY'), { recursive: true });
  copyFileSync(pki.client, join(root, 'services', 'backup-svc', 'MY', 'c.pem'));
  copyFileSync(pki.clientKey, join(root, 'services', 'backup-svc', 'MY', 'c.key'));
  assert.equal((await findCertificateById(StoreLocation.SERVICES, 'backup-svc\\MY', thumb, { root })).hr, 0);
  assert.equal((await findCertificateById(StoreLocation.SERVICES, 'other-svc\\MY', thumb, { root })).hr, HResult.E_FILE_NOT_FOUND);
  // Store names are case-insensitive, as on Windows.
  assert.equal((await findCertificateById(0, 'my', Buffer.from(thumb, 'hex'), { root })).hr, 0);
  // LOCAL_MACHINE\MY has the same certificate twice: PEM and PKCS#12.
  const lm = await openStore(StoreLocation.LOCAL_MACHINE, 'MY', { root });
  assert.equal(lm.hr, 0);
  assert.deepEqual(lm.entries?.map((e) => e.format).sort(), ['pem', 'pkcs12']);
  assert.ok(lm.entries?.every((e) => e.thumbprint.toString('hex') === thumb && e.privateKey));
  // The seed's errors from a real store.
  assert.equal((await findCertificateById(0, 'MY', HASH, { root })).hr, HResult.CRYPT_E_NOT_FOUND);
  assert.equal((await findCertificateById(0, 'NOSUCH', thumb, { root })).hr, HResult.E_FILE_NOT_FOUND);
  assert.equal((await findCertificateById(0, 'MY', thumb, { root: join(root, 'absent') })).hr, HResult.E_FILE_NOT_FOUND);
  assert.equal((await findCertificateById(12, 'MY', thumb, { root })).hr, HResult.E_NOTIMPL);
  assert.equal((await findCertificateById(0, 'MY', thumb.slice(2), { root })).hr, HResult.RPC_X_BAD_STUB_DATA);
  // A certificate without its key is found but cannot authenticate.
  assert.equal((await findCertificateById(0, 'ROOT', thumbprintOf(pki.rootCa), { root })).hr, NTE_NO_KEY);
  // By name: the first client-authentication certificate whose simple name contains the query.
  const byName = await findCertificateByName(0, 'MY', 'users, dev-client', { root });
  assert.equal(byName.hr, 0);
  assert.equal(byName.entry?.thumbprint.toString('hex'), thumb);
  assert.equal((await findCertificateByName(0, 'MY', 'someone else', { root })).hr, HResult.CRYPT_E_NOT_FOUND);
  assert.equal((await findCertificateByName(0, 'ROOT', 'root CA', { root })).hr, HResult.CRYPT_E_NOT_FOUND, 'no key: not selectable');
});

test('by name skips certificates without clientAuth usage', async () => {
  const pki = await devPki();
  const dir = tempDir('cb-eku-');
  mkdirSync(join(dir, 'current-user', 'APP'), { recursive: true });
  copyFileSync(pki.clientWrongUsage, join(dir, 'current-user', 'APP', 'a.pem'));
  copyFileSync(pki.clientWrongUsageKey, join(dir, 'current-user', 'APP', 'a.key'));
  assert.equal((await findCertificateByName(0, 'APP', 'dev-client-wrong-usage', { root: dir })).hr, HResult.CRYPT_E_NOT_FOUND);
  assert.equal((await findCertificateById(0, 'APP', thumbprintOf(pki.clientWrongUsage), { root: dir })).hr, 0, 'by ID the caller chose it');
});

test('PKCS#12: wrong password, legacy encryption and garbage are reported per file', async () => {
  const pki = await devPki();
  const dir = tempDir('cb-p12-');
  const store = join(dir, 'current-user', 'P12');
  mkdirSync(store, { recursive: true });
  const mk = async (name: string, extra: string[], pass: string) => {
    const r = await run('openssl', ['pkcs12', '-export', ...extra, '-in', pki.client, '-inkey', pki.clientKey, '-passout', `pass:${pass}`, '-out', join(store, name)]);
    return r.code === 0;
  };
  assert.ok(await mk('good.p12', [], P12_PASSWORD));
  writeFileSync(join(store, 'good.p12.password'), P12_PASSWORD);
  assert.ok(await mk('wrong.pfx', [], 'other'));
  writeFileSync(join(store, 'wrong.pfx.password'), P12_PASSWORD);
  assert.ok(await mk('empty.p12', [], ''));
  const legacy = await mk('legacy.p12', ['-legacy'], P12_PASSWORD);
  if (legacy) writeFileSync(join(store, 'legacy.p12.password'), P12_PASSWORD);
  writeFileSync(join(store, 'garbage.p12'), 'not a pfx');
  const opened = await openStore(0, 'P12', { root: dir });
  assert.equal(opened.hr, 0);
  assert.deepEqual(opened.entries?.map((e) => e.file.split('/').pop()).sort(), ['empty.p12', 'good.p12']);
  const problem = (n: string) => opened.problems?.find((p) => p.file.endsWith(n));
  assert.equal(problem('wrong.pfx')?.hr, E_INVALID_PASSWORD);
  assert.ok(problem('garbage.p12'), 'garbage is reported');
  if (legacy) {
    assert.equal(problem('legacy.p12')?.hr, NTE_BAD_ALGID);
    assert.match(problem('legacy.p12')?.message ?? '', /legacy PKCS#12 PBE/);
  }
});

/** Runs a store look-up in a child process as `nobody`, so that permissions apply even when the tests run as root. */
function lookupAsNobody(root: string, thumb: string): Promise<string> {
  const script = `import { findCertificateById } from ${JSON.stringify(new URL('../src/client/selection.ts', import.meta.url).pathname)};
const r = await findCertificateById(0, 'MY', ${JSON.stringify(thumb)}, { root: ${JSON.stringify(root)} });
process.stdout.write(String(r.hr));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { uid: 65534, gid: 65534, cwd: new URL('..', import.meta.url).pathname, env: { ...process.env, HOME: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('close', () => (out ? resolve(out) : reject(new Error(err))));
  });
}

test('a store location the user may not read is E_ACCESSDENIED', async (t) => {
  const pki = await devPki();
  const dir = tempDir('cb-eacces-');
  chmodSync(dir, 0o755);
  await makeStoreRoot(dir, pki);
  const thumb = thumbprintOf(pki.client);
  chmodSync(join(dir, 'current-user'), 0o700);
  chmodSync(join(dir, 'local-machine', 'MY'), 0o700);
  if (process.getuid?.() === 0) {
    // root reads everything: look up as nobody. The tsx loader must be readable by nobody.
    let hr: string;
    try {
      hr = await lookupAsNobody(dir, thumb);
    } catch (err) {
      return t.skip(`cannot run as nobody here: ${(err as Error).message.slice(0, 120)}`);
    }
    assert.equal(Number(hr), HResult.E_ACCESSDENIED);
  } else {
    chmodSync(join(dir, 'current-user'), 0o000);
    assert.equal(storeDir(0, 'MY', { root: dir }).hr, HResult.E_ACCESSDENIED);
    chmodSync(join(dir, 'current-user'), 0o700);
  }
});
