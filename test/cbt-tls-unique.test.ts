// tls-unique on live connections against python3's ssl.get_channel_binding('tls-unique'):
// full handshakes, session-id and ticket resumptions, and server-initiated renegotiations
// (full and resumed). TLS 1.3 and handshakes without extended master secret must report
// undefined (python still returns a value on TLS 1.3: it is no oracle there).
import assert from 'node:assert/strict';
import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { createServer, type Server, type TlsOptions, type TLSSocket } from 'node:tls';
import { channelBindings } from '../src/cbt/channel-bindings.js';
import type { BindingResult } from '../src/cbt/binding.js';
import { run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

// OpenSSL 3's SSL_OP_NO_EXTENDED_MASTER_SECRET (Node has no constant for it).
const SSL_OP_NO_EXTENDED_MASTER_SECRET = 0x1;

const PYTHON_CLIENT = `
import socket, ssl, sys
port, mode, ver = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
v = ssl.TLSVersion.TLSv1_3 if ver == '1.3' else ssl.TLSVersion.TLSv1_2
ctx.minimum_version = v
ctx.maximum_version = v
def one(session=None):
    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10), server_hostname='localhost', session=session)
    f = s.makefile('rb')
    server = f.readline().decode().strip()
    print('conn reused=%d client=%s server=%s' % (s.session_reused, s.get_channel_binding('tls-unique').hex(), server), flush=True)
    if mode == 'reneg':
        s.sendall(b'reneg\\n')
        server = f.readline().decode().strip()
        print('reneg reused=%d client=%s server=%s' % (s.session_reused, s.get_channel_binding('tls-unique').hex(), server), flush=True)
    sess = s.session
    f.close()
    s.close()
    return sess
sess = one()
if mode == 'resume':
    one(sess)
`;

function show(b: BindingResult): string {
  return b.value ? b.value.toString('hex') : `none:${b.reason}`;
}

interface Observed { kind: 'conn' | 'reneg'; reused: boolean; client: string; server: string }

let cert = '';
let key = '';

/** Runs the python client against a node:tls server that reports its own tls-unique on each handshake. */
async function exchange(mode: 'once' | 'resume' | 'reneg', version: '1.2' | '1.3', tls: Partial<TlsOptions> = {}, configure?: (server: Server) => void): Promise<{ observed: Observed[]; serverSide: BindingResult[] }> {
  const serverSide: BindingResult[] = [];
  const server = createServer({ cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.2', ...tls }, (s: TLSSocket) => {
    const report = () => {
      const b = channelBindings(s, { side: 'server' })['tls-unique'];
      serverSide.push(b);
      s.write(show(b) + '\n');
    };
    report();
    s.on('data', (d: Buffer) => {
      if (!d.toString().startsWith('reneg')) return;
      s.renegotiate({ rejectUnauthorized: false }, (err) => {
        if (err) s.destroy(err);
        else report();
      });
    });
    s.on('error', () => {});
  });
  configure?.(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const r = await run('python3', ['-c', PYTHON_CLIENT, String(port), mode, version], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, `python3 failed: ${r.stderr}`);
    const observed = r.stdout.trim().split('\n').map((line) => {
      const m = /^(conn|reneg) reused=(\d) client=([0-9a-f]*) server=(\S+)$/.exec(line);
      assert.ok(m, `unexpected python output: ${line}`);
      return { kind: m[1] as 'conn' | 'reneg', reused: m[2] === '1', client: m[3]!, server: m[4]! };
    });
    return { observed, serverSide };
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('tls-unique against python3 ssl', () => {
  before(async () => {
    const dir = tempDir('certbound-cbt-unique-');
    cert = join(dir, 'cert.pem');
    key = join(dir, 'key.pem');
    const r = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-days', '2']);
    assert.equal(r.code, 0, r.stderr);
  });

  it('full handshake on TLS 1.2: the client Finished, equal to python', async () => {
    const { observed } = await exchange('once', '1.2');
    assert.equal(observed.length, 1);
    const [o] = observed;
    assert.equal(o!.reused, false);
    assert.match(o!.client, /^[0-9a-f]{24}$/);
    assert.equal(o!.server, o!.client);
  });

  it('ticket resumption: the server Finished, equal to python, and a new value', async () => {
    const { observed } = await exchange('resume', '1.2');
    assert.deepEqual(observed.map((o) => o.reused), [false, true]);
    for (const o of observed) assert.equal(o.server, o.client);
    assert.notEqual(observed[0]!.server, observed[1]!.server);
  });

  it('session-id resumption (tickets off, server session cache): equal to python', async () => {
    const sessions = new Map<string, Buffer>();
    const { observed } = await exchange('resume', '1.2', { secureOptions: constants.SSL_OP_NO_TICKET }, (server) => {
      server.on('newSession', (id: Buffer, data: Buffer, cb: () => void) => { sessions.set(id.toString('hex'), data); cb(); });
      server.on('resumeSession', (id: Buffer, cb: (err: Error | null, data: Buffer | null) => void) => cb(null, sessions.get(id.toString('hex')) ?? null));
    });
    assert.ok(sessions.size >= 1, 'the server cached a session id');
    assert.deepEqual(observed.map((o) => o.reused), [false, true]);
    for (const o of observed) assert.equal(o.server, o.client);
  });

  it('server renegotiation with a full handshake: the value changes, equal to python', async () => {
    const { observed, serverSide } = await exchange('reneg', '1.2', { secureOptions: constants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION });
    assert.deepEqual(observed.map((o) => o.kind), ['conn', 'reneg']);
    for (const o of observed) assert.equal(o.server, o.client);
    assert.notEqual(observed[0]!.server, observed[1]!.server);
    assert.equal(serverSide.length, 2);
  });

  it('server renegotiation that resumes: the server Finished of the new handshake, equal to python', async () => {
    const { observed } = await exchange('reneg', '1.2');
    assert.deepEqual(observed.map((o) => [o.kind, o.reused]), [['conn', false], ['reneg', true]]);
    for (const o of observed) assert.equal(o.server, o.client);
    assert.notEqual(observed[0]!.server, observed[1]!.server);
  });

  it('TLS 1.3: undefined (tls13), although python returns a value', async () => {
    const { observed } = await exchange('once', '1.3');
    assert.equal(observed[0]!.server, 'none:tls13');
    assert.match(observed[0]!.client, /^[0-9a-f]+$/);
  });

  it('TLS 1.2 without extended master secret: undefined (no-extended-master-secret)', async () => {
    const { observed } = await exchange('resume', '1.2', { secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET });
    assert.deepEqual(observed.map((o) => o.server), ['none:no-extended-master-secret', 'none:no-extended-master-secret']);
    // python still computes a value: the binding exists on the wire, it is just not unique.
    assert.match(observed[0]!.client, /^[0-9a-f]{24}$/);
  });
});
