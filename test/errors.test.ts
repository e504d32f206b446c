// Option and argument checks outside the Windows-shaped APIs throw CertboundError with a stable
// code (src/errors.ts), never a bare TypeError: a caller matches on `code`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CertboundError, ERRORS } from '../src/errors.js';
import { limitConcurrency, fetchOcsp } from '../src/ocsp/fetch.js';
import { parseCertificate } from '../src/ocsp/request.js';
import { FileStapleStorage } from '../src/ocsp/storage.js';
import { createStapler } from '../src/ocsp/stapler.js';
import { loadIssuer } from '../src/tls/cert-builder.js';
import { tempDir } from './helpers/pki.js';

const is = (code: keyof typeof ERRORS, name: string) => (err: unknown) => {
  assert.ok(err instanceof CertboundError, `a CertboundError, not ${String(err)}`);
  assert.equal(err.code, code);
  assert.equal(err.statusCode, ERRORS[code].statusCode);
  assert.ok(err.message.startsWith(`${ERRORS[code].message.split('%s')[0]}${name}: `), err.message);
  return true;
};

test('bad options: CB_ERR_INVALID_OPTION naming the option', () => {
  for (const max of [0, 1.5, Number.NaN]) assert.throws(() => limitConcurrency(fetchOcsp, max), is('CB_ERR_INVALID_OPTION', 'maxConcurrentRetrievals'));
  assert.throws(() => createStapler({ maxConcurrentRetrievals: 0 }), is('CB_ERR_INVALID_OPTION', 'maxConcurrentRetrievals'));
});

test('bad arguments: CB_ERR_INVALID_ARGUMENT naming the argument', async () => {
  assert.throws(() => parseCertificate(Buffer.from('not a certificate')), is('CB_ERR_INVALID_ARGUMENT', 'der'));
  const storage = new FileStapleStorage(tempDir());
  await assert.rejects(storage.delete('../etc/passwd'), is('CB_ERR_INVALID_ARGUMENT', 'key'));
  assert.equal(await storage.load('../etc/passwd'), undefined, 'load answers "nothing stored" for any unusable key');
  await assert.rejects(storage.store('ABC', Buffer.alloc(1)), is('CB_ERR_INVALID_ARGUMENT', 'key'));
  await assert.rejects(loadIssuer('no PEM here', 'no key either'), is('CB_ERR_INVALID_ARGUMENT', 'certPem'));
});
