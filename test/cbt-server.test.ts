// Channel bindings in the certbound server: GET /connection's channelBindings,
// request.channelBinding(type), and receiveClientCertificate with
// HTTP_RECEIVE_SECURE_CHANNEL_TOKEN (0x1), checked against openssl and python3 peers.
import assert from 'node:assert/strict';
import { constants } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { receiveClientCertificate, receiveClientCertificateAsync } from '../src/server/receive.js';
import { createServer, type CreateServerOptions } from '../src/server/server.js';
import { Win32 } from '../src/status.js';
import { issueCertificate, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { run } from './helpers/exec.js';
import { devPki, tempDir } from './helpers/pki.js';

let serverCert: IssuedCertificate;
let certFile = '';
let endPointSha384 = '';

async function start(t: TestContext, extra: Partial<CreateServerOptions> = {}): Promise<number> {
  const s = createServer({ cert: serverCert.pem, key: serverCert.keyPem, clientAuth: 'none', logger: false, underPressure: false, referenceRoutes: true, ...extra });
  s.app.get('/binding/:type', async (request) => {
    const b = request.channelBinding((request.params as { type: string }).type as 'tls-unique');
    return b.value ? { hex: b.value.toString('hex') } : { reason: b.reason };
  });
  s.app.get('/cbt', async (request) => {
    const sizes = [0, 23, 24, 24 + 52, 24 + 53, 4096];
    const sync = sizes.map((size) => {
      const r = receiveClientCertificate(request.server.certbound.queue, request.connectionId ?? 0n, 0x1, size);
      return { size, status: r.status, bytesReceived: r.bytesReceived, tokenSize: r.channelBindStatus?.channelTokenSize ?? null, token: r.channelBindStatus?.channelToken?.toString('latin1') ?? null };
    });
    const overlapped = await receiveClientCertificateAsync(request.server.certbound.queue, request.connectionId ?? 0n, 0x1, 4096);
    const badFlags = receiveClientCertificate(request.server.certbound.queue, request.connectionId ?? 0n, 0x3, 4096).status;
    return { sync, overlapped: { status: overlapped.status, bytesReceived: overlapped.bytesReceived }, badFlags };
  });
  const addr = await s.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => s.close());
  return addr.port;
}

/** One HTTP/1.1 GET through openssl s_client, with its keying material. */
async function sclientGet(port: number, path: string, version: '-tls1_3' | '-tls1_2'): Promise<{ body: unknown; keymat: string }> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', version, '-ign_eof', '-keymatexport', 'EXPORTER-Channel-Binding', '-keymatexportlen', '32'], {
    input: `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    timeoutMs: 20_000,
  });
  const km = /Keying material:\s*([0-9A-Fa-f]+)/.exec(r.stdout);
  // s_client prints '---' (TLS 1.3 session ticket) or 'closed' right after the body, without a newline.
  const json = /^(\{.*\})(?:---|closed)?$/m.exec(r.stdout);
  assert.ok(km && json, `unexpected s_client output:\n${r.stdout}\n${r.stderr}`);
  return { body: JSON.parse(json[1]!), keymat: km[1]!.toLowerCase() };
}

const PYTHON_GET = `
import socket, ssl, sys, json
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10), server_hostname='localhost')
s.sendall(('GET %s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' % sys.argv[2]).encode())
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(json.dumps({'tlsUnique': s.get_channel_binding('tls-unique').hex(), 'body': json.loads(data.split(b'\\r\\n\\r\\n', 1)[1])}))
`;

describe('channel bindings in the server', () => {
  before(async () => {
    serverCert = await issueCertificate({ subject: { commonName: 'localhost' }, keyAlgorithm: 'ecdsa-p384', hash: 'SHA-384', altNames: ['localhost', '127.0.0.1'] });
    certFile = join(tempDir('certbound-cbt-server-'), 'server.pem');
    writeFileSync(certFile, serverCert.pem);
    const r = await run('sh', ['-c', `openssl x509 -in '${certFile}' -outform DER | openssl dgst -sha384 -r`]);
    endPointSha384 = r.stdout.split(' ')[0] ?? '';
    assert.match(endPointSha384, /^[0-9a-f]{96}$/);
  });

  it('GET /connection on TLS 1.3: tls-exporter equals s_client, end-point equals openssl dgst, tls-unique null', async (t) => {
    const port = await start(t);
    const { body, keymat } = await sclientGet(port, '/connection', '-tls1_3');
    assert.deepEqual((body as { channelBindings: unknown }).channelBindings, { 'tls-unique': null, 'tls-server-end-point': endPointSha384, 'tls-exporter': keymat });
  });

  it('GET /connection on TLS 1.2: tls-unique equals python, tls-exporter null (renegotiation possible)', async (t) => {
    const port = await start(t);
    const r = await run('python3', ['-c', PYTHON_GET, String(port), '/connection'], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { tlsUnique: string; body: { protocol: string; channelBindings: Record<string, string | null> } };
    assert.equal(out.body.protocol, 'TLSv1.2');
    assert.deepEqual(out.body.channelBindings, { 'tls-unique': out.tlsUnique, 'tls-server-end-point': endPointSha384, 'tls-exporter': null });
  });

  it('GET /connection on TLS 1.2 with renegotiation disabled: tls-exporter offered (context "none" equals s_client)', async (t) => {
    const port = await start(t, {
      channelBinding: { renegotiationDisabled: true, tls12ExporterContext: 'none' },
      tls: { secureOptions: constants.SSL_OP_NO_RENEGOTIATION },
    });
    const { body, keymat } = await sclientGet(port, '/connection', '-tls1_2');
    const cb = (body as { protocol: string; channelBindings: Record<string, string | null> });
    assert.equal(cb.protocol, 'TLSv1.2');
    assert.equal(cb.channelBindings['tls-exporter'], keymat);
    assert.match(cb.channelBindings['tls-unique'] ?? '', /^[0-9a-f]{24}$/);
    assert.equal(cb.channelBindings['tls-server-end-point'], endPointSha384);
  });

  it('request.channelBinding(type) on TLS 1.3, with reasons, and an unknown type refused', async (t) => {
    const port = await start(t);
    const exporter = await sclientGet(port, '/binding/tls-exporter', '-tls1_3');
    assert.deepEqual(exporter.body, { hex: exporter.keymat });
    assert.deepEqual((await sclientGet(port, '/binding/tls-unique', '-tls1_3')).body, { reason: 'tls13' });
    const bad = (await sclientGet(port, '/binding/tls-bogus', '-tls1_3')).body as { code?: string; statusCode?: number };
    assert.equal(bad.statusCode, 500);
    assert.equal(bad.code, 'CB_ERR_INVALID_OPTION');
  });

  it('receiveClientCertificate 0x1: every status, tls-server-end-point in application-data form by default', async (t) => {
    const port = await start(t);
    const { body } = await sclientGet(port, '/cbt', '-tls1_3');
    const { sync, overlapped, badFlags } = body as { sync: { size: number; status: number; bytesReceived: number; tokenSize: number | null; token: string | null }[]; overlapped: { status: number; bytesReceived: number }; badFlags: number };
    const token = 'tls-server-end-point:' + Buffer.from(endPointSha384, 'hex').toString('latin1');
    assert.equal(token.length, 21 + 48);
    const need = 24 + token.length;
    // The route asked for 24+52 and 24+53 bytes: both are short of 24+69.
    assert.deepEqual(sync.map((s) => [s.size, s.status, s.bytesReceived, s.tokenSize]), [
      [0, Win32.ERROR_INSUFFICIENT_BUFFER, 0, null],
      [23, Win32.ERROR_INSUFFICIENT_BUFFER, 0, null],
      [24, Win32.ERROR_MORE_DATA, 24, token.length],
      [76, Win32.ERROR_MORE_DATA, 24, token.length],
      [77, Win32.ERROR_MORE_DATA, 24, token.length],
      [4096, Win32.NO_ERROR, need, token.length],
    ]);
    assert.equal(sync[5]!.token, token);
    assert.equal(sync[2]!.token, null);
    assert.deepEqual(overlapped, { status: Win32.NO_ERROR, bytesReceived: need });
    assert.equal(badFlags, Win32.ERROR_INVALID_PARAMETER);
  });

  it('receiveClientCertificate 0x1 with type tls-exporter (raw): the s_client value; with tls-unique on TLS 1.3: ERROR_NOT_FOUND', async (t) => {
    const exporterPort = await start(t, { channelBinding: { type: 'tls-exporter', form: 'raw' } });
    const { body, keymat } = await sclientGet(exporterPort, '/cbt', '-tls1_3');
    const last = (body as { sync: { status: number; bytesReceived: number; token: string | null }[] }).sync[5]!;
    assert.equal(last.status, Win32.NO_ERROR);
    assert.equal(last.bytesReceived, 24 + 32);
    assert.equal(Buffer.from(last.token ?? '', 'latin1').toString('hex'), keymat);

    const uniquePort = await start(t, { channelBinding: { type: 'tls-unique' } });
    const unique = (await sclientGet(uniquePort, '/cbt', '-tls1_3')).body as { sync: { status: number }[]; overlapped: { status: number } };
    assert.deepEqual(unique.sync.map((s) => s.status), [122, 122, 1168, 1168, 1168, 1168]);
    assert.equal(unique.overlapped.status, Win32.ERROR_NOT_FOUND);
  });
});

const PYTHON_ON_DEMAND = `
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
conn = http.client.HTTPSConnection('127.0.0.1', int(sys.argv[1]), context=ctx, timeout=10)
out = []
for path in ('/plain', '/demand'):
    conn.request('GET', path)
    body = json.loads(conn.getresponse().read())
    out.append({'path': path, 'server': body, 'python': conn.sock.get_channel_binding('tls-unique').hex()})
print(json.dumps(out))
`;

describe('tls-unique across an on-demand renegotiation (certbound on-demand route, python3 client)', () => {
  it('changes with the renegotiation and equals python before and after', async (t) => {
    const pki = await devPki();
    const s = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'none', logger: false, underPressure: false });
    const handler = async (request: { channelBinding: (type: 'tls-unique') => { value?: Buffer; reason?: string }; connection?: { handshake: { sequence: number } } }) => ({
      unique: request.channelBinding('tls-unique').value?.toString('hex') ?? null,
      handshakes: request.connection?.handshake.sequence ?? 0,
    });
    s.app.get('/plain', handler);
    s.app.get('/demand', { config: { clientCertificate: 'on-demand' } }, handler);
    const { port } = await s.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => s.close());
    const r = await run('python3', ['-c', PYTHON_ON_DEMAND, String(port), pki.rootCa, pki.client, pki.clientKey], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    const [before, after] = JSON.parse(r.stdout) as { path: string; server: { unique: string | null; handshakes: number }; python: string }[];
    assert.equal(before!.server.handshakes, 1);
    assert.equal(after!.server.handshakes, 2, 'the on-demand route renegotiated');
    assert.match(before!.python, /^[0-9a-f]{24}$/);
    assert.equal(before!.server.unique, before!.python);
    assert.equal(after!.server.unique, after!.python);
    assert.notEqual(after!.server.unique, before!.server.unique);
  });
});
