// tls-server-end-point is read from the certificate each connection was served: it must follow SNI contexts and
// setSecureContext, and agree with openssl dgst over the certificate each connection got.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, createSecureContext, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { channelBindings } from '../src/cbt/channel-bindings.js';
import { devPki } from './helpers/pki.js';
import { run } from './helpers/exec.js';

async function dgst(pemPath: string): Promise<string> {
  const r = await run('sh', ['-c', `openssl x509 -in '${pemPath}' -outform DER | openssl dgst -sha256 -r`]);
  return r.stdout.split(' ')[0] ?? '';
}

test('tls-server-end-point follows SNI contexts and setSecureContext', async (t) => {
  const pki = await devPki();
  const main = { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey) };
  const other = { cert: readFileSync(pki.untrustedCa), key: readFileSync(pki.untrustedCaKey) };
  const seen: string[] = [];
  const server = createServer(main, (s: TLSSocket) => {
    // Twice per connection: the second read comes from the per-connection cache.
    channelBindings(s, { side: 'server' });
    seen.push(channelBindings(s, { side: 'server' })['tls-server-end-point'].value?.toString('hex') ?? 'undefined');
    s.end();
  });
  server.addContext('other.test', createSecureContext(other));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const hello = (servername?: string) => new Promise<void>((resolve) => {
    const c = connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...(servername ? { servername } : {}) });
    c.on('close', () => resolve());
    c.on('error', () => {});
    c.resume();
  });
  const mainHash = await dgst(pki.server);
  const otherHash = await dgst(pki.untrustedCa);
  for (const name of ['localhost', 'other.test', undefined, 'other.test', 'localhost']) await hello(name);
  assert.deepEqual(seen, [mainHash, otherHash, mainHash, otherHash, mainHash]);

  server.setSecureContext(other);
  seen.length = 0;
  await hello('localhost');
  await hello(undefined);
  assert.deepEqual(seen, [otherHash, otherHash], 'a replaced context is a new cache key');
});
