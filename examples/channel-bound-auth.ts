// Channel-bound authentication, end to end: a client proves a shared secret *and* the TLS
// channel it is on, so a proof stolen from one connection is worthless on another.
//
//   node --import tsx examples/channel-bound-auth.ts
//
// The client computes tls-exporter (RFC 9266, TLS 1.3) on its side of the connection and
// sends HMAC-SHA256(key, "tls-exporter:" + binding) in an Authorization header. The server
// computes the same binding on its side and accepts the proof only if it matches. Then the
// same proof is replayed on a second connection (rejected), and tls-server-end-point is shown
// for what it is: a binding to the server's certificate, which stops a relay through an
// interceptor but not a replay to the same server. Exits 0 when every step behaves so.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { request } from 'node:http';
import { connect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { applicationData, channelBindings, createServer, issueCertificate, type ChannelBindingType } from 'certbound';

const SCHEME = 'ChannelBound';
/** The secret the client and the server share (in real life: per user, from a key store). */
const KEYS = new Map([['alice', Buffer.from('a shared secret of at least 32 bytes, for the demo')]]);

function proofOf(key: Buffer, type: ChannelBindingType, binding: Buffer): string {
  return createHmac('sha256', key).update(applicationData(type, binding)).digest('base64url');
}

function parseAuthorization(header: string | undefined): { user: string; type: string; proof: string } | undefined {
  if (!header?.startsWith(`${SCHEME} `)) return undefined;
  const params = Object.fromEntries([...header.slice(SCHEME.length + 1).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const { user, type, proof } = params;
  return user && type && proof ? { user, type, proof } : undefined;
}

interface Answer { status: number; body: string }

/** Opens a TLS 1.3 connection, lets `authorize` build the header from the client's bindings, sends one GET. */
async function call(port: number, ca: string | undefined, authorize: (socket: TLSSocket) => string | undefined): Promise<Answer & { socket: TLSSocket; authorization: string | undefined }> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', minVersion: 'TLSv1.3', ...(ca ? { ca } : { rejectUnauthorized: false }) });
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject); });
  const authorization = authorize(socket);
  return new Promise((resolve, reject) => {
    const req = request({ host: 'localhost', port, path: '/account', method: 'GET', headers: authorization ? { authorization } : {}, createConnection: () => socket }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => { socket.end(); resolve({ status: res.statusCode ?? 0, body, socket, authorization }); });
    });
    req.on('error', reject);
    req.end();
  });
}

function header(user: string, type: ChannelBindingType, proof: string): string {
  return `${SCHEME} user="${user}", type="${type}", proof="${proof}"`;
}

/** The client's proof for its side of `socket`, or undefined with the reason printed. */
function clientProof(socket: TLSSocket, type: ChannelBindingType): string | undefined {
  const binding = channelBindings(socket, { side: 'client' })[type];
  if (binding.value === undefined) {
    console.log(`  client: no ${type} binding (${binding.reason}: ${binding.message})`);
    return undefined;
  }
  console.log(`  client: ${type} = ${binding.value.toString('hex').slice(0, 32)}…`);
  return header('alice', type, proofOf(KEYS.get('alice')!, type, binding.value));
}

async function main(): Promise<number> {
  const serverCert = await issueCertificate({ subject: { commonName: 'localhost' }, keyAlgorithm: 'ecdsa-p256', altNames: ['localhost', '127.0.0.1'], extKeyUsage: ['1.3.6.1.5.5.7.3.1'] });
  const server = createServer({ cert: serverCert.pem, key: serverCert.keyPem, clientAuth: 'none', logger: false, underPressure: false });
  server.app.get('/account', async (req, reply) => {
    const auth = parseAuthorization(req.headers.authorization);
    const key = auth && KEYS.get(auth.user);
    if (!auth || !key) return reply.code(401).header('www-authenticate', SCHEME).send({ error: 'no credentials' });
    if (auth.type !== 'tls-exporter' && auth.type !== 'tls-server-end-point') return reply.code(401).send({ error: `binding type ${auth.type} not accepted` });
    // The server's view of this very connection.
    const binding = req.channelBinding(auth.type);
    if (binding.value === undefined) return reply.code(401).send({ error: `this connection has no ${auth.type} binding: ${binding.reason}` });
    const expected = Buffer.from(proofOf(key, auth.type, binding.value));
    const given = Buffer.from(auth.proof);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      return reply.code(401).send({ error: 'proof does not match this connection' });
    }
    return { hello: auth.user, boundTo: auth.type, connectionId: req.connectionId?.toString() };
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });

  // An interceptor with its own certificate, which a careless client accepts.
  const rogueCert = await issueCertificate({ subject: { commonName: 'localhost' }, keyAlgorithm: 'ecdsa-p256', altNames: ['localhost', '127.0.0.1'] });
  const interceptor = createTlsServer({ cert: rogueCert.pem, key: rogueCert.keyPem }, (s) => s.end());
  await new Promise<void>((r) => interceptor.listen(0, '127.0.0.1', r));
  const interceptorPort = (interceptor.address() as AddressInfo).port;

  const checks: [string, boolean][] = [];
  const expect = (what: string, ok: boolean) => {
    checks.push([what, ok]);
    console.log(`  ${ok ? 'OK  ' : 'FAIL'} ${what}`);
  };
  try {
    console.log('1. alice proves tls-exporter on connection A');
    const a = await call(port, serverCert.pem, (s) => clientProof(s, 'tls-exporter'));
    console.log(`  server: ${a.status} ${a.body}`);
    expect('the server accepts the proof on the connection it was made for', a.status === 200);

    console.log('2. an eavesdropper replays the same Authorization header on connection B');
    const b = await call(port, serverCert.pem, () => a.authorization);
    console.log(`  server: ${b.status} ${b.body}`);
    expect('the replayed proof is rejected on another connection', b.status === 401);

    console.log('3. alice proves tls-exporter on connection B herself');
    const b2 = await call(port, serverCert.pem, (s) => clientProof(s, 'tls-exporter'));
    console.log(`  server: ${b2.status} ${b2.body}`);
    expect('a fresh proof on the new connection is accepted', b2.status === 200);

    console.log('4. tls-server-end-point binds the server certificate, not the connection');
    const c = await call(port, serverCert.pem, (s) => clientProof(s, 'tls-server-end-point'));
    const c2 = await call(port, serverCert.pem, () => c.authorization);
    console.log(`  server: ${c.status} on its connection, ${c2.status} when replayed to the same server`);
    expect('an end-point proof is accepted', c.status === 200);
    expect('and (as RFC 5929 says) a replay to the same server is accepted too', c2.status === 200);

    console.log('5. alice talks to an interceptor with another certificate, which relays her proof');
    let relayed: string | undefined;
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: interceptorPort, servername: 'localhost', rejectUnauthorized: false }, () => {
        relayed = clientProof(s, 'tls-server-end-point');
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
    const d = await call(port, serverCert.pem, () => relayed);
    console.log(`  server: ${d.status} ${d.body}`);
    expect('the relayed end-point proof is rejected (it names the interceptor)', d.status === 401);
  } finally {
    await new Promise<void>((r) => interceptor.close(() => r()));
    await server.close();
  }
  const failed = checks.filter(([, ok]) => !ok).length;
  console.log(failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks failed`);
  return failed === 0 ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => { console.error(err); process.exitCode = 2; });
