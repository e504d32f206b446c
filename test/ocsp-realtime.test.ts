// The schedule in real time with real timers: the dev responder issues 6-second responses,
// the settings are scaled down to seconds, and the stapler must refresh before each
// response lapses, so a client asking at any moment gets a staple.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { issueCertificate, OID } from '../src/tls/cert-builder.js';
import { issueResponderCertificate, startDevOcspResponder } from '../src/ocsp/responder.js';
import { createStapler } from '../src/ocsp/stapler.js';
import type { OcspUpdate } from '../src/ocsp/handle.js';
import { verifyOcspResponse } from '../src/ocsp/validate.js';
import { parseCertificate } from '../src/ocsp/request.js';

test('short-lived responses are refreshed on schedule; a staple is served throughout', async (t) => {
  const ca = await issueCertificate({ subject: { commonName: 'realtime CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, responder: await issueResponderCertificate(ca), validityMinutes: 0.1 }); // 6 s
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });

  const stapler = createStapler({
    settings: {
      SrvOcspRespMinValiditySeconds: 1,
      SrvOcspRespMaxBeforeNextUpdateSeconds: 3,
      SrvOcspRespMinBeforeNextUpdateSeconds: 1,
      SrvOcspRespMinAfterNextUpdateSeconds: 1,
      SrvOcspRespUrlRetrievalTimeoutMilliseconds: 1000,
    },
    retry: { initialMs: 500, maxMs: 2000, floorMs: 250 },
  });
  t.after(() => stapler.close());
  const updates: OcspUpdate[] = [];
  stapler.on('update', (u) => updates.push(u));
  await stapler.add([leaf.der, ca.der]);

  const server = tls.createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem }, (s) => s.end());
  stapler.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;

  // A Node client asks for the staple (requestOCSP) every 700 ms for 8.5 s: more than one lifetime.
  const seen: Array<{ at: number; thisUpdate: number; nextUpdate: number }> = [];
  const started = Date.now();
  while (Date.now() - started < 8500) {
    const staple = await new Promise<Buffer | undefined>((resolve, reject) => {
      let got: Buffer | undefined;
      // requestOCSP is a TLSSocket option that tls.connect passes through (missing from @types/node 20).
      const options: tls.ConnectionOptions & { requestOCSP: boolean } = { port, host: '127.0.0.1', servername: 'localhost', ca: ca.pem, requestOCSP: true };
      const s = tls.connect(options);
      s.on('OCSPResponse', (r: Buffer) => { got = r; });
      s.on('secureConnect', () => { s.end(); resolve(got); });
      s.on('error', reject);
    });
    assert.ok(staple, `a staple at +${Date.now() - started} ms`);
    const v = await verifyOcspResponse(staple, { cert: parseCertificate(leaf.der), issuer: parseCertificate(ca.der), now: Date.now() });
    assert.ok(v.ok, 'the staple verifies and is not expired');
    seen.push({ at: Date.now(), thisUpdate: v.response.thisUpdate.getTime(), nextUpdate: v.response.nextUpdate.getTime() });
    await new Promise((r) => setTimeout(r, 700));
  }
  const distinct = new Set(seen.map((s) => s.thisUpdate));
  assert.ok(distinct.size >= 3, `refreshed at least twice in 8.5 s, saw ${distinct.size} responses`);
  const stapled = updates.filter((u) => u.outcome === 'stapled');
  assert.ok(stapled.length >= 3);
  // Each refresh came after the previous response's half-life (3 s), never in a loop.
  for (let i = 1; i < stapled.length; i++) {
    const gap = Date.parse(stapled[i]?.thisUpdate ?? '') - Date.parse(stapled[i - 1]?.thisUpdate ?? '');
    assert.ok(gap >= 2900 && gap < 5000, `refresh gap ${gap} ms`);
  }
  assert.ok(responder.requests <= stapled.length + 1, 'no extra retrievals');
});
