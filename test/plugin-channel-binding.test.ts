// Route option config.channelBinding: a route served only to a client that proves this
// connection's channel binding. The client side is openssl s_client, which exports the
// tls-exporter value on its own (-keymatexport) and then sends it on the same connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:tls';
import { devPki } from './helpers/pki.js';
import { startServer } from './helpers/server.js';

/** s_client over TLS 1.3: reads its exported keying material, then sends a request built from it. */
function sClientWithBinding(port: number, build: (exporterHex: string) => string): Promise<{ exporter: string; response: string }> {
  return devPki().then((pki) => new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', pki.rootCa, '-tls1_3', '-keymatexport', 'EXPORTER-Channel-Binding', '-keymatexportlen', '32', '-ign_eof']);
    let out = '';
    let exporter = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Keying material:\s*([0-9A-F]{64})/.exec(out);
      if (m && !exporter) {
        exporter = (m[1] ?? '').toLowerCase();
        child.stdin.write(build(exporter));
      }
    });
    child.stderr.on('data', () => {});
    child.on('error', reject);
    child.on('close', () => { clearTimeout(timer); resolve({ exporter, response: out.slice(out.indexOf('HTTP/1.1')) }); });
  }));
}

const request = (header: string) => `GET /bound HTTP/1.1\r\nHost: localhost\r\n${header}Connection: close\r\n\r\n`;

test('a route with config.channelBinding admits the proof made on this connection only', async (t) => {
  const { port } = await startServer(t, 'none', {}, ({ app }) => {
    app.get('/bound', { config: { channelBinding: true } }, async (req) => ({ ok: true, exporter: req.channelBinding('tls-exporter').value?.toString('hex') }));
  });
  const good = await sClientWithBinding(port, (hex) => request(`Channel-Binding: tls-exporter=${Buffer.from(hex, 'hex').toString('base64')}\r\n`));
  assert.match(good.response, /^HTTP\/1\.1 200/, good.response);
  assert.match(good.response, new RegExp(`"exporter":"${good.exporter}"`), 'the server computed the value openssl exported');

  // The same proof replayed on another connection.
  const stolen = Buffer.from(good.exporter, 'hex').toString('base64');
  const replay = await sClientWithBinding(port, () => request(`Channel-Binding: tls-exporter=${stolen}\r\n`));
  assert.match(replay.response, /^HTTP\/1\.1 403/);
  assert.match(replay.response, /"code":"CB_ERR_CHANNEL_BINDING".*"reason":"EP_CBT_MISMATCH"/);

  const none = await sClientWithBinding(port, () => request(''));
  assert.match(none.response, /"reason":"EP_CBT_MISSING"/);
  const garbage = await sClientWithBinding(port, () => request('Channel-Binding: tls-exporter=%%%\r\n'));
  assert.match(garbage.response, /"reason":"EP_CBT_MISSING"/, 'a malformed header supplies nothing');
  const endpoint = await sClientWithBinding(port, () => request(`Channel-Binding: tls-server-end-point=${Buffer.alloc(32).toString('base64')}\r\n`));
  assert.match(endpoint.response, /"reason":"EP_CBT_TYPE"/, 'tls-server-end-point does not bind a connection: not accepted by default');
});

test('TLS 1.2: tls-unique is accepted, tls-exporter is unavailable there', async (t) => {
  const { port } = await startServer(t, 'none', {}, ({ app }) => {
    app.get('/bound', { config: { channelBinding: true } }, async () => ({ ok: true }));
  });
  const ask = (make: (finished: Buffer) => string) => new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', maxVersion: 'TLSv1.2', rejectUnauthorized: false }, () => {
      // tls-unique on a full handshake is the client's Finished (RFC 5929 3.1).
      s.write(make(s.getFinished() ?? Buffer.alloc(0)));
    });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { data += d; });
    s.on('close', () => resolve(data));
    s.on('error', () => {});
  });
  const ok = await ask((fin) => request(`Channel-Binding: tls-unique=${fin.toString('base64')}\r\n`));
  assert.match(ok, /^HTTP\/1\.1 200/, ok);
  const exporter = await ask(() => request(`Channel-Binding: tls-exporter=${Buffer.alloc(32, 1).toString('base64')}\r\n`));
  assert.match(exporter, /"reason":"EP_CBT_UNAVAILABLE"/);
});
