// The rules of on-demand negotiation (tables) and the IIS-shaped negotiateClientCertificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { maxServerRenegotiations, renegotiationRefusal, type NegotiationStatus } from '../src/tls/renegotiate.js';
import { negotiateClientCertificate, negotiationHResult, negotiationWin32Override } from '../src/server/negotiate.js';
import { HResult, Win32 } from '../src/status.js';
import { devPki } from './helpers/pki.js';
import { startServer } from './helpers/server.js';

test('renegotiationRefusal: h2, TLS 1.3, closed and the per-connection limit', () => {
  const table: [string | null, string | null, number, NegotiationStatus | null][] = [
    ['TLSv1.2', 'http/1.1', 0, null],
    ['TLSv1.2', null, 0, null],
    ['TLSv1.2', 'http/1.1', 1, 'limit'],
    ['TLSv1.3', 'http/1.1', 0, 'tls13'],
    ['TLSv1.2', 'h2', 0, 'http2'],
    ['TLSv1.3', 'h2', 0, 'http2'],
    [null, null, 0, 'closed'],
  ];
  for (const [protocol, alpnProtocol, renegotiations, want] of table) {
    assert.equal(renegotiationRefusal({ protocol, alpnProtocol, renegotiations }), want, `${protocol} ${alpnProtocol} ${renegotiations}`);
  }
});

test('maxServerRenegotiations follows tls.CLIENT_RENEG_LIMIT (each one counts twice)', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 7].map((l) => maxServerRenegotiations(l)), [0, 0, 1, 1, 2, 3]);
  assert.equal(maxServerRenegotiations(), 1, 'with Node\'s default limit of 3');
});

test('HRESULTs and Win32 completions of each outcome', () => {
  const table: [NegotiationStatus, number, number | null][] = [
    ['certificate', HResult.S_OK, null],
    ['no-certificate', HResult.S_OK, null],
    ['tls13', 0x80070032, Win32.ERROR_NOT_SUPPORTED],
    ['http2', 0x80070032, Win32.ERROR_NOT_SUPPORTED],
    ['timeout', 0x800705b4, Win32.ERROR_TIMEOUT],
    ['closed', 0x800703e3, Win32.ERROR_OPERATION_ABORTED],
    ['error', 0x80004005, Win32.ERROR_OPERATION_ABORTED],
    ['limit', 0x80004005, null],
  ];
  for (const [status, hr, w] of table) {
    assert.equal(negotiationHResult(status), hr, status);
    assert.equal(negotiationWin32Override(status), w, status);
  }
});

test('negotiateClientCertificate: the synchronous form resolves when done; the async form reports completionPending', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle) }, ({ app }) => {
    app.get('/sync', async (request) => {
      const done = await negotiateClientCertificate(request, false);
      return { hr: done.hr, status: done.result.status, sha1: request.clientCertificate()?.sha1 ?? null };
    });
    app.get('/async', async (request) => {
      const answer = negotiateClientCertificate(request, true);
      const done = await answer.completion;
      const again = negotiateClientCertificate(request, true);
      return { hr: answer.hr, pending: answer.completionPending, status: done.result.status, againPending: again.completionPending, againHr: (await again.completion).hr };
    });
  });
  const ask = (path: string, withCert: boolean) => new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', maxVersion: 'TLSv1.2', rejectUnauthorized: false, ...(withCert ? { cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) } : {}) }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { data += d; });
    s.on('error', () => {});
    s.on('close', () => resolve(data));
  });
  const sync = await ask('/sync', true);
  assert.match(sync, /"hr":0,"status":"certificate","sha1":"[0-9a-f]{40}"/);
  const none = await ask('/sync', false);
  assert.match(none, /"hr":0,"status":"no-certificate","sha1":null/, 'IIS: S_OK, and no certificate');
  const asyncForm = await ask('/async', true);
  assert.match(asyncForm, /"hr":0,"pending":true,"status":"certificate","againPending":false,"againHr":0/);
});
