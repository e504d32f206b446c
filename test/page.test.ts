// The reference server's page (GET /) as a person sees it: rendered by headless Chromium
// (Debian's chromium, installed by .ci/run), without JavaScript, with a live OCSP staple.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createDevPki } from '../src/tls/dev-pki.js';
import { startDevPkiResponder } from '../src/ocsp/dev-responder.js';
import { createServer } from '../src/server/server.js';
import { tempDir } from './helpers/pki.js';
import { freePort, run } from './helpers/exec.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

function chromiumArgs(profile: string): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--ignore-certificate-errors', `--user-data-dir=${profile}`];
}

function visibleText(html: string): string {
  return html.replace(/<style[\s\S]*?<\/style>/g, '').replace(/<[^>]+>/g, ' ').replace(/&amp;/g, '&').replace(/\s+/g, ' ');
}

test('GET / renders in Chromium with the connection, bindings, client certificate state and OCSP staple', { timeout: 90_000 }, async (t) => {
  const dir = tempDir('certbound-page-');
  const ocspPort = await freePort();
  const pki = await createDevPki(join(dir, 'pki'), { ocspUrl: `http://127.0.0.1:${ocspPort}/` });
  const responder = await startDevPkiResponder(pki.dir, { port: ocspPort });
  t.after(() => responder.close());
  const server = createServer({
    cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle),
    clientAuth: 'optional', logger: false, referenceRoutes: true, ocsp: { cacheDir: join(dir, 'ocsp') },
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => server.close());

  const url = `https://127.0.0.1:${port}/`;
  const dom = await run(CHROMIUM, [...chromiumArgs(join(dir, 'profile-1')), '--dump-dom', url], { timeoutMs: 60_000 });
  assert.equal(dom.code, 0, dom.stderr.slice(-2000));
  const text = visibleText(dom.stdout);
  assert.match(text, /certbound: your connection/);
  assert.match(text, /Protocol TLSv1\.3/);
  assert.match(text, /Cipher TLS_AES_\w+/);
  assert.match(text, /Resumed no/);
  assert.match(text, /tls-exporter [0-9a-f]{64}/, 'the tls-exporter binding of this connection');
  assert.match(text, /tls-unique undefined/, 'tls-unique is undefined on TLS 1.3');
  assert.match(text, /No client certificate was presented/);
  assert.match(text, /Stapled yes \(good\)/);
  assert.match(text, /Next refresh \d{4}-\d\d-\d\dT/);
  assert.match(dom.stdout, /<a href="\/whoami">/);
  // It needs no JavaScript: the page as served has no script at all.
  assert.doesNotMatch(dom.stdout, /<script/i);

  const png = join(dir, 'page.png');
  const shot = await run(CHROMIUM, [...chromiumArgs(join(dir, 'profile-2')), '--window-size=1000,1400', `--screenshot=${png}`, url], { timeoutMs: 60_000 });
  assert.equal(shot.code, 0, shot.stderr.slice(-2000));
  const bytes = readFileSync(png);
  assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
  assert.equal(bytes.readUInt32BE(16), 1000, 'width');
  assert.ok(statSync(png).size > 20_000, 'the page has visible content, not a blank screen');
});
