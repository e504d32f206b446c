// Bad input at the protocol edges (issue 12): bodies an on-demand route must read before it
// renegotiates, whatever the method. Real TLS on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { devPki } from './helpers/pki.js';
import { startServer } from './helpers/server.js';

/** TLS 1.2 client: sends the head, then `bodyBytes` of body in chunks while reading; resolves with what came back and when. */
function send(port: number, head: string, bodyBytes: number, cert: string, key: string): Promise<{ data: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', maxVersion: 'TLSv1.2', rejectUnauthorized: false, cert: readFileSync(cert), key: readFileSync(key) }, () => {
      s.write(head);
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = bodyBytes;
      const pump = () => {
        while (left > 0 && !s.destroyed) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!s.write(chunk.subarray(0, n))) return void s.once('drain', pump);
        }
      };
      pump();
    });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { data += d; });
    s.on('error', () => {});
    const timer = setTimeout(() => s.destroy(), 15_000);
    s.on('close', () => { clearTimeout(timer); resolve({ data, ms: Date.now() - t0 }); });
  });
}

test('an on-demand route reads a GET body before renegotiating: under the body limit it negotiates, over it 413 at once (not a cut at the negotiation timeout)', async (t) => {
  const pki = await devPki();
  const { port } = await startServer(t, 'none', { ca: readFileSync(pki.caBundle), negotiationTimeout: 10_000 }, ({ app }) => {
    app.get('/od', { config: { clientCertificate: 'on-demand' } }, async (request) => ({ sha1: request.clientCertificate()?.sha1 }));
  });
  const sha1 = new X509Certificate(readFileSync(pki.client)).fingerprint.replace(/:/g, '').toLowerCase();
  const small = 300_000;
  const ok = await send(port, `GET /od HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${small}\r\nConnection: close\r\n\r\n`, small, pki.client, pki.clientKey);
  assert.match(ok.data, /^HTTP\/1\.1 200/, ok.data.slice(0, 300));
  assert.ok(ok.data.includes(`"sha1":"${sha1}"`), 'negotiated after the body');
  const big = 20 * 1024 * 1024;
  const refused = await send(port, `GET /od HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${big}\r\n\r\n`, big, pki.client, pki.clientKey);
  assert.match(refused.data, /^HTTP\/1\.1 413/, refused.data.slice(0, 300));
  assert.match(refused.data, /"code":"CB_ERR_BODY_TOO_LARGE"/);
  assert.ok(refused.ms < 8000, `answered in ${refused.ms} ms, before the 10 s negotiation timeout`);
  // A declared length over the limit is refused without waiting for the bytes.
  const declared = await send(port, `GET /od HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${big}\r\n\r\n`, 0, pki.client, pki.clientKey);
  assert.match(declared.data, /^HTTP\/1\.1 413/, declared.data.slice(0, 300));
  assert.ok(declared.ms < 3000, `answered in ${declared.ms} ms without the body`);
  // A chunked GET body too.
  const chunked = await send(port, 'GET /od HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 0, pki.client, pki.clientKey);
  assert.match(chunked.data, /^HTTP\/1\.1 200/, chunked.data.slice(0, 300));
});
