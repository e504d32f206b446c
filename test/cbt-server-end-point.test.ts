// tls-server-end-point on live connections, checked against `openssl x509 -outform DER |
// openssl dgst -<hash>` for certificates that openssl itself signs with each algorithm.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { channelBindings } from '../src/cbt/channel-bindings.js';
import { serverEndPoint } from '../src/cbt/server-end-point.js';
import type { ChannelBindings } from '../src/cbt/binding.js';
import { run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

const dir = tempDir('certbound-cbt-sep-');

interface Case { name: string; keyArgs: string[]; expectHash: string | undefined; reason?: string }
const CASES: Case[] = [
  { name: 'ECDSA-SHA256', keyArgs: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256'], expectHash: 'sha256' },
  { name: 'ECDSA-SHA384', keyArgs: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384'], expectHash: 'sha384' },
  { name: 'RSA-SHA1 (to SHA-256)', keyArgs: ['-newkey', 'rsa:2048', '-sha1'], expectHash: 'sha256' },
  { name: 'RSA-MD5 (to SHA-256)', keyArgs: ['-newkey', 'rsa:2048', '-md5'], expectHash: 'sha256' },
  { name: 'RSA-SHA512', keyArgs: ['-newkey', 'rsa:2048', '-sha512'], expectHash: 'sha512' },
  { name: 'RSA-PSS-SHA384', keyArgs: ['-newkey', 'rsa:2048', '-sha384', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:digest'], expectHash: 'sha384' },
  { name: 'RSA-PSS-SHA384 with MGF1-SHA256', keyArgs: ['-newkey', 'rsa:2048', '-sha384', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_mgf1_md:sha256'], expectHash: undefined, reason: 'no-single-hash' },
  { name: 'Ed25519', keyArgs: ['-newkey', 'ed25519'], expectHash: undefined, reason: 'no-single-hash' },
];

async function openssl(args: string[]): Promise<string> {
  const r = await run('openssl', args, { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `openssl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** Makes a self-signed certificate with openssl; self-signed so OpenSSL 3's security level accepts SHA-1/MD5 as the server's own certificate. */
async function makeCert(c: Case, i: number): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `c${i}.pem`);
  const key = join(dir, `k${i}.pem`);
  await openssl(['req', '-x509', ...c.keyArgs, '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-days', '2']);
  return { cert, key };
}

/** One connection to a node:tls server with this certificate; both sides' bindings. */
async function bothSides(cert: string, key: string, maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<{ server: ChannelBindings; client: ChannelBindings }> {
  let server: Server | undefined;
  try {
    return await new Promise((resolve, reject) => {
      let serverSide: ChannelBindings | undefined;
      let clientSide: ChannelBindings | undefined;
      const done = () => { if (serverSide && clientSide) resolve({ server: serverSide, client: clientSide }); };
      server = createServer({ cert: readFileSync(cert), key: readFileSync(key), maxVersion }, (s: TLSSocket) => {
        serverSide = channelBindings(s, { side: 'server' });
        s.end();
        done();
      });
      server.on('tlsClientError', reject);
      server.listen(0, '127.0.0.1', () => {
        const port = (server!.address() as { port: number }).port;
        const c = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' }, () => {
          clientSide = channelBindings(c, { side: 'client' });
          c.end();
          done();
        });
        c.on('error', reject);
        c.resume();
      });
    });
  } finally {
    const srv = server as Server | undefined;
    await new Promise<void>((r) => (srv ? srv.close(() => r()) : r()));
  }
}

describe('tls-server-end-point against openssl dgst', () => {
  const made = new Map<string, { cert: string; key: string }>();
  before(async () => {
    await Promise.all(CASES.map(async (c, i) => made.set(c.name, await makeCert(c, i))));
  });

  for (const c of CASES) {
    it(`${c.name}: ${c.expectHash ?? 'undefined'}`, async () => {
      const m = made.get(c.name)!;
      for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
        const { server, client } = await bothSides(m.cert, m.key, version);
        if (c.expectHash) {
          const piped = await run('sh', ['-c', `openssl x509 -in '${m.cert}' -outform DER | openssl dgst -${c.expectHash} -r`]);
          const expected = piped.stdout.split(' ')[0];
          assert.match(expected ?? '', /^[0-9a-f]{64,128}$/);
          assert.equal(server['tls-server-end-point'].value?.toString('hex'), expected, `${version} server side`);
          assert.equal(client['tls-server-end-point'].value?.toString('hex'), expected, `${version} client side`);
        } else {
          assert.equal(server['tls-server-end-point'].value, undefined);
          assert.equal(server['tls-server-end-point'].reason, c.reason);
          assert.equal(client['tls-server-end-point'].reason, c.reason);
        }
      }
    });
  }

  it('a garbage certificate is reported as malformed, never hashed', () => {
    const r = serverEndPoint(Buffer.from('3003020101', 'hex'));
    assert.equal(r.value, undefined);
    assert.equal(r.reason, 'malformed-certificate');
  });

  after(() => made.clear());
});
