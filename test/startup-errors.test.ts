// Every way `certbound serve` (and dev-pki, ocsp-responder) can fail to start ends as one line
// `certbound: CB_ERR_X: message` and exit code 1, with nothing left running: what Node's TLS
// layer refuses (a CRL, a CA block, an X25519 key, an encrypted key, the `tls` options),
// file-system errors of every file serve reads or writes, listen errors, and start-ups that
// fail after the dev OCSP responder started (it used to keep the process alive). The table
// format is test/helpers/provoke.ts's; test/error-walk.test.ts has one row per code.
import { test } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ErrorCode } from '../src/errors.js';
import { createServer } from '../src/server/server.js';
import { createRevocationChecker } from '../src/ocsp/revocation.js';
import { call, cli, provokeAll, type Row } from './helpers/provoke.js';

/** A mapper the config schema takes and the mapper compiler refuses (the key is named). */
const BAD_MAPPER = JSON.stringify({ mapper: { oneToOne: [{ thumbprint: 'zz', identity: 'x' }] } });
const BROKEN_CRL = '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n';
const BROKEN_CERT = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';

const ROWS: readonly (readonly [ErrorCode, Row])[] = [
  // What Node's TLS layer refuses when it builds the context (tls.createSecureContext).
  ['CB_ERR_PEM_INVALID', cli('a --crl file with a certificate instead of a CRL', (fx) => ['serve', ...fx.tlsFlags, '--crl', fx.pki.rootCa], /CRL file \S*root-ca\.pem holds no valid PEM CRL/)],
  ['CB_ERR_PEM_INVALID', cli('a --crl file whose CRL block does not parse', (fx) => ['serve', ...fx.tlsFlags, '--crl', fx.file('broken.crl', BROKEN_CRL)], /broken\.crl holds no valid X\.509 CRL \(Failed to parse CRL/)],
  ['CB_ERR_PEM_INVALID', cli('a --ca file whose certificate block does not parse', (fx) => ['serve', ...fx.tlsFlags, '--ca', fx.file('broken-ca.pem', BROKEN_CERT)], /CA file \S*broken-ca\.pem holds no valid X\.509 certificate/)],
  ['CB_ERR_PEM_INVALID', cli('a --cert file of garbage', (fx) => ['serve', '--cert', fx.file('garbage.pem', 'garbage\n'), '--key', fx.pki.serverKey], /certificate file \S*garbage\.pem/)],
  ['CB_ERR_PEM_INVALID', cli('an encrypted --key (serve takes no passphrase)', (fx) => ['serve', '--cert', fx.pki.server, '--key', fx.file('encrypted.key', fx.encryptedKey())], /encrypted\.key holds no valid private key it can use \(the key is encrypted and no passphrase was given\)/)],
  ['CB_ERR_PEM_INVALID', call('createServer with a crl that is not a CRL', (fx) => createServer(fx.serverOptions({ crl: 'garbage' })), /CRL file \(crl option\)/)],
  ['CB_ERR_PEM_INVALID', call('createServer with a second crl whose block does not parse', (fx) => createServer(fx.serverOptions({ crl: [BROKEN_CRL, BROKEN_CRL] })), /\(crl option, entry 0\) holds no valid X\.509 CRL/)],
  ['CB_ERR_PEM_INVALID', call('createServer with a ca that holds no certificate (Node skips it without a word)', (fx) => createServer(fx.serverOptions({ ca: ['garbage'] })), /CA file \(ca option\) holds no valid PEM certificate/)],
  ['CB_ERR_PEM_INVALID', call('createServer with a ca block that does not parse', (fx) => createServer(fx.serverOptions({ ca: BROKEN_CERT })), /\(ca option\) holds no valid X\.509 certificate/)],
  ['CB_ERR_PEM_INVALID', call('createServer with a cert chain block that does not parse', (fx) => createServer(fx.serverOptions({ cert: Buffer.concat([fx.serverOptions().cert as Buffer, Buffer.from(BROKEN_CERT)]) })), /\(cert option\) holds no valid X\.509 certificate/)],
  ['CB_ERR_PEM_INVALID', call('createServer with an encrypted key and no tls.passphrase', (fx) => createServer(fx.serverOptions({ key: fx.encryptedKey() })), /encrypted and no passphrase/)],
  ['CB_ERR_PEM_INVALID', call('createServer with an encrypted key and a wrong tls.passphrase', (fx) => createServer(fx.serverOptions({ key: fx.encryptedKey(), tls: { passphrase: 'wrong' } })), /passphrase does not decrypt/)],
  ['CB_ERR_PEM_INVALID', call('a revocation checker with a CRL entry that is no CRL', () => createRevocationChecker({ crls: ['garbage'] }), /\(revocation\.crls option\)/)],
  ['CB_ERR_TLS_CONTEXT', cli('an X25519 certificate and key', async (fx) => {
    const x = await fx.x25519();
    return ['serve', '--cert', x.cert, '--key', x.key, '--ca', fx.pki.caBundle, '--port', '0'];
  }, /refused the certificate and key \(\S*x25519\.pem, \S*x25519\.key\): .*unknown certificate type/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer with tls.minVersion that is no TLS version', (fx) => createServer(fx.serverOptions({ tls: { minVersion: 'TLSv9' as never } })), /the tls options: .*TLSv9/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer with tls.ecdhCurve that is no curve', (fx) => createServer(fx.serverOptions({ tls: { ecdhCurve: 'nope' } })), /Failed to set ECDH curve/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer with tls.sigalgs that name no algorithm', (fx) => createServer(fx.serverOptions({ tls: { sigalgs: 'nope' } })), /the tls options/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer with tls.secureProtocol that is no method', (fx) => createServer(fx.serverOptions({ tls: { secureProtocol: 'Bogus' } })), /secureProtocol "Bogus"/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer with tls.ticketKeys of the wrong length', (fx) => createServer(fx.serverOptions({ tls: { ticketKeys: Buffer.alloc(3) } })), /48 bytes/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer over HTTP/2 with tls.ciphers that match no cipher', (fx) => createServer(fx.serverOptions({ http2: true, tls: { ciphers: 'NOPE' } })), /no cipher match/)],
  ['CB_ERR_TLS_CONTEXT', call('createServer with an X25519 certificate and key', async (fx) => {
    const x = await fx.x25519();
    return createServer(fx.serverOptions({ cert: readFileSync(x.cert), key: readFileSync(x.key) }));
  }, /the certificate and key \(cert and key options\)/)],

  // File-system errors of every file serve reads or writes.
  ['CB_ERR_PEM_MISSING', cli('a --key file the user may not read', (fx) => ['serve', '--cert', fx.file('readable.pem', readFileSync(fx.pki.server)), '--key', fx.unreadable('secret.key', readFileSync(fx.pki.serverKey))], /key file \S*secret\.key: EACCES/, { unprivileged: true })],
  ['CB_ERR_PEM_MISSING', cli('a --ca path that is a directory', (fx) => ['serve', ...fx.tlsFlags, '--ca', fx.dir], /CA file \S+: not a regular file/)],
  ['CB_ERR_PEM_MISSING', cli('a missing --crl file', (fx) => ['serve', ...fx.tlsFlags, '--crl', join(fx.dir, 'nope.crl')], /CRL file \S*nope\.crl: ENOENT/)],
  ['CB_ERR_CONFIG_FILE', cli('a config file that is a directory', (fx) => ['serve', '--config', fx.dir], /: not a regular file/)],
  ['CB_ERR_CONFIG_FILE', cli('a config file the user may not read', (fx) => ['serve', '--config', fx.unreadable('secret.json', '{}')], /secret\.json: EACCES/, { unprivileged: true })],
  ['CB_ERR_DEV_PKI', cli('dev-pki under a regular file', (fx) => ['dev-pki', join(fx.file('plain-file', 'x'), 'pki')], /plain-file\/pki: .*(ENOTDIR|EEXIST)/)],
  ['CB_ERR_DEV_PKI', cli('serve with a --dev-pki-dir under a regular file', (fx) => ['serve', '--dev-pki-dir', join(fx.file('plain-file-2', 'x'), 'pki')], /(ENOTDIR|EEXIST)/)],
  ['CB_ERR_DEV_PKI', cli('serve with a dev PKI directory it may not write', (fx) => ['serve', '--dev-pki-dir', fx.readOnlyDir('read-only-serve'), '--port', '0'], /read-only-serve: .*\(EACCES\)/, { unprivileged: true })],
  ['CB_ERR_DEV_PKI', cli('ocsp-responder with a dev PKI directory it may not write', (fx) => ['ocsp-responder', '--dev-pki-dir', fx.readOnlyDir('read-only-responder'), '--port', '0'], /read-only-responder: .*\(EACCES\)/, { unprivileged: true })],
  ['CB_ERR_OCSP_CACHE', cli('serve with the dev PKI whose ocsp-cache is a file (its responder closed again)', async (fx) => {
    const pki = await fx.ownDevPki('cache');
    writeFileSync(join(pki.dir, 'ocsp-cache'), 'x');
    return ['serve', '--dev-pki-dir', pki.dir, '--port', '0'];
  }, /ocsp-cache: a file that is not a directory is in the way \(EEXIST\)/)],

  // Listen errors.
  ['CB_ERR_LISTEN', cli('an address that is not local', (fx) => ['serve', ...fx.tlsFlags, '--host', '192.0.2.1'], /192\.0\.2\.1:0: EADDRNOTAVAIL/)],
  ['CB_ERR_LISTEN', cli('ocsp-responder on a port in use', async (fx) => ['ocsp-responder', '--dev-pki-dir', fx.pki.dir, '--port', String(await fx.busyPort())], /EADDRINUSE/)],

  // Start-ups that fail after the dev OCSP responder started: it is closed, the process exits.
  ['CB_ERR_INVALID_OPTION', cli('a mapper with a bad thumbprint, serving the dev PKI', async (fx) => ['serve', '--dev-pki-dir', (await fx.ownDevPki('mapper')).dir, '--config', fx.file('bad-mapper.json', BAD_MAPPER), '--port', '0'], /mapper\.oneToOne\[0\]\.thumbprint/)],
  ['CB_ERR_LISTEN', cli('a port in use, serving the dev PKI', async (fx) => ['serve', '--dev-pki-dir', (await fx.ownDevPki('listen')).dir, '--port', String(await fx.busyPort())], /EADDRINUSE/)],
  ['CB_ERR_INVALID_OPTION', cli('a mapper with a bad thumbprint, --workers 2 (one line, from the primary)', async (fx) => ['serve', ...fx.tlsFlags, '--workers', '2', '--config', fx.file('bad-mapper-2.json', BAD_MAPPER)], /mapper\.oneToOne\[0\]\.thumbprint/)],
];

test('start-up errors: each is one line with its code, exit code 1, nothing left running', { concurrency: true }, async (t) => {
  await provokeAll(t, ROWS, 4);
});
