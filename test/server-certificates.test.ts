// Several server certificates in one createServer: an RSA and an ECDSA certificate for
// localhost (the RSA one from a PKCS#12 bundle, the ECDSA key encrypted) and another name.
// openssl s_client picks them by SNI, cipher suite (TLS 1.2) and signature algorithm (TLS 1.3);
// the served certificate is checked by its exact SHA-256 and its staple by its exact serial;
// tls-server-end-point is the hash of the certificate python3's ssl received; a client
// certificate is verified the same under every certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import { request } from 'node:https';
import { createServer } from '../src/server/server.js';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { chooseCertificate } from '../src/tls/server-material.js';
import { startDevOcspResponder } from '../src/ocsp/responder.js';
import { isCertboundError } from '../src/errors.js';
import { devPki, tempDir } from './helpers/pki.js';
import { freePort, run } from './helpers/exec.js';

const BIN = join(resolve(fileURLToPath(new URL('..', import.meta.url))), 'bin', 'certbound.js');

const sha256 = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();

async function sClient(port: number, args: string[]): Promise<{ served: string; stapleSerial: string | null; status: string | null }> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-status', ...args], { timeoutMs: 10_000 });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
  assert.ok(pem, `a certificate was served for ${args.join(' ')}: ${r.stdout.slice(0, 400)}${r.stderr.slice(0, 400)}`);
  return { served: sha256(pem), stapleSerial: /Serial Number: ([0-9A-F]+)/.exec(r.stdout)?.[1]?.toLowerCase() ?? null, status: /Cert Status: (\w+)/.exec(r.stdout)?.[1] ?? null };
}

test('several server certificates: SNI, RSA and ECDSA for one name, each stapled; PKCS#12 and an encrypted key; bindings and client trust per certificate', async (t) => {
  const dir = tempDir('certbound-server-certs-');
  const pki = await devPki();
  const ca = await issueCertificate({ subject: { commonName: 'multi-cert CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, port: 0 });
  t.after(() => responder.close());
  const leaf = (keyAlgorithm: 'rsa-2048' | 'ecdsa-p256', name: string): Promise<IssuedCertificate> =>
    issueCertificate({ subject: { commonName: name }, issuer: ca, keyAlgorithm, extKeyUsage: [OID.serverAuth], altNames: [name], ocspUrl: responder.url });
  const [rsa, ec, other] = await Promise.all([leaf('rsa-2048', 'localhost'), leaf('ecdsa-p256', 'localhost'), leaf('ecdsa-p256', 'other.test')]);
  // The RSA certificate as a PKCS#12 bundle (openssl's own export), the ECDSA key encrypted.
  writeFileSync(join(dir, 'rsa.pem'), rsa.pem + ca.pem);
  writeFileSync(join(dir, 'rsa.key'), rsa.keyPem);
  const p12 = await run('openssl', ['pkcs12', '-export', '-in', join(dir, 'rsa.pem'), '-inkey', join(dir, 'rsa.key'), '-out', join(dir, 'rsa.p12'), '-passout', 'pass:p12-secret']);
  assert.equal(p12.code, 0, p12.stderr);
  const pfx = readFileSync(join(dir, 'rsa.p12'));
  const ecKey = createPrivateKey(ec.keyPem).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'key-secret' }) as string;

  const certificates = [
    { pfx, passphrase: 'p12-secret' },
    { cert: ec.pem + ca.pem, key: ecKey, passphrase: 'key-secret' },
    { cert: other.pem + ca.pem, key: other.keyPem },
  ];
  // Wrong passphrases stop createServer with a code.
  assert.throws(() => createServer({ certificates: [{ pfx, passphrase: 'wrong' }], clientAuth: 'none', logger: false }), (err: unknown) => isCertboundError(err, 'CB_ERR_PFX_INVALID') && /mac verify failure/.test(err.message));
  assert.throws(() => createServer({ certificates: [{ cert: ec.pem, key: ecKey, passphrase: 'wrong' }], clientAuth: 'none', logger: false }), (err: unknown) => isCertboundError(err, 'CB_ERR_PEM_INVALID') && /passphrase does not decrypt/.test(err.message));

  // other.test goes through the TLS 1.2 twin listener (onDemandHosts): the same certificates there.
  const server = createServer({ certificates, ca: readFileSync(pki.caBundle), clientAuth: 'optional', logger: false, referenceRoutes: true, ocsp: true, onDemandHosts: ['other.test'] });
  t.after(() => server.close());
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  assert.deepEqual(server.ocsp?.states().map((s) => [s.fingerprint, s.stapled]).sort(), [[sha256(rsa.pem), true], [sha256(ec.pem), true], [sha256(other.pem), true]].sort());

  const serial = (c: IssuedCertificate) => new X509Certificate(c.pem).serialNumber.toLowerCase();
  const cases: [string[], IssuedCertificate][] = [
    [['-servername', 'localhost', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], rsa],
    [['-servername', 'localhost', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], ec],
    [['-servername', 'localhost', '-tls1_3', '-sigalgs', 'rsa_pss_rsae_sha256'], rsa],
    [['-servername', 'localhost', '-tls1_3', '-sigalgs', 'ecdsa_secp256r1_sha256'], ec],
    // The client's first suite decides (s_client lists ECDHE-ECDSA first).
    [['-servername', 'localhost', '-tls1_2'], ec],
    [['-servername', 'other.test'], other],
    // A client that prefers RSA suites still gets other.test's (ECDSA) certificate, never the
    // RSA certificate of localhost that serves clients without SNI.
    [['-servername', 'other.test', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256'], other],
    // A name no certificate has: the first certificate's name group, by key type.
    [['-servername', 'unknown.test', '-tls1_3', '-sigalgs', 'ecdsa_secp256r1_sha256'], ec],
    // No SNI: the first certificate.
    [['-noservername'], rsa],
  ];
  const seen = await Promise.all(cases.map(([args]) => sClient(port, args)));
  seen.forEach((got, i) => {
    const [args, want] = cases[i] as [string[], IssuedCertificate];
    assert.deepEqual(got, { served: sha256(want.pem), stapleSerial: serial(want), status: 'good' }, args.join(' '));
  });

  // tls-server-end-point as python3's ssl sees the certificate it got, for RSA and ECDSA (TLS 1.2).
  const py = `
import json, socket, ssl, hashlib, sys
for cipher in ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES128-GCM-SHA256']:
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    with socket.create_connection(('127.0.0.1', int(sys.argv[1]))) as raw:
        with ctx.wrap_socket(raw, server_hostname='localhost') as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(b'GET /connection HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n')
            data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
    body = json.loads(data.split(b'\\r\\n\\r\\n', 1)[1])
    print(json.dumps([hashlib.sha256(der).hexdigest(), body['channelBindings']['tls-server-end-point'], body['clientCertificate']['authorized']]))
`;
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  const r = await run('python3', ['-c', py, String(port), join(dir, 'ca.pem'), pki.client, pki.clientKey], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  // Both certificates are signed with SHA-256: the binding is SHA-256 of the DER served.
  assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown), [
    [sha256(rsa.pem), sha256(rsa.pem), true],
    [sha256(ec.pem), sha256(ec.pem), true],
  ]);

  // A client certificate under the other name's context: verified against the same CAs.
  const info = await new Promise<Record<string, unknown>>((ok, fail) => {
    request({ host: '127.0.0.1', port, path: '/connection', servername: 'other.test', ca: ca.pem, cert: readFileSync(pki.client), key: readFileSync(pki.clientKey), agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => ok(JSON.parse(body) as Record<string, unknown>));
    }).on('error', fail).end();
  });
  const cc = info.clientCertificate as Record<string, unknown>;
  assert.deepEqual([cc.certFlags, cc.authorized], [0, true]);
  assert.equal((info.ocsp as Record<string, unknown>).fingerprint, sha256(other.pem), '/connection shows the staple of the certificate served');
});

test('chooseCertificate: the certificate OpenSSL would pick among an RSA and an ECDSA one', () => {
  const rsa = { keyType: 'rsa', curve: undefined, id: 'rsa' };
  const p256 = { keyType: 'ec', curve: 'prime256v1', id: 'p256' };
  const both = [rsa, p256];
  const rows: [string, readonly string[], readonly number[] | undefined, string][] = [
    ['TLSv1.3', ['ECDSA+SHA256', 'RSA-PSS+SHA256'], undefined, 'p256'],
    ['TLSv1.3', ['RSA-PSS+SHA256', 'ECDSA+SHA256'], undefined, 'rsa'],
    // TLS 1.3 ties ECDSA+SHA384 to P-384: a P-256 key cannot use it.
    ['TLSv1.3', ['ECDSA+SHA384', 'RSA-PSS+SHA256'], undefined, 'rsa'],
    // TLS 1.3 forbids RSA PKCS#1 v1.5 in CertificateVerify.
    ['TLSv1.3', ['RSA+SHA256', 'ECDSA+SHA256'], undefined, 'p256'],
    ['TLSv1.2', ['ECDSA+SHA256', 'RSA+SHA256'], [0xc02f, 0xc02b], 'rsa'],
    ['TLSv1.2', ['RSA+SHA256', 'ECDSA+SHA256'], [0xc02b, 0xc02f], 'p256'],
    ['TLSv1.2', ['ECDSA+SHA384', 'RSA+SHA256'], [0xcca9, 0xc030], 'p256'],
    // An ECDSA suite first, but no ECDSA signature algorithm: the RSA suite is the one that works.
    ['TLSv1.2', ['RSA+SHA256'], [0xc02b, 0xc02f], 'rsa'],
    // No signature_algorithms extension (TLS 1.2 allows it): the suites decide.
    ['TLSv1.2', [], [0xc02b], 'p256'],
    // Cipher suites unknown: the first certificate the client can verify.
    ['TLSv1.2', ['ECDSA+SHA256'], undefined, 'p256'],
  ];
  for (const [protocol, sharedSigalgs, cipherSuites, want] of rows) {
    assert.equal(chooseCertificate(both, { protocol, sharedSigalgs, cipherSuites })?.id, want, `${protocol} ${sharedSigalgs.join(',')} ${cipherSuites?.map((c) => c.toString(16)).join(',')}`);
  }
  assert.equal(chooseCertificate([p256], { protocol: 'TLSv1.3', sharedSigalgs: ['RSA-PSS+SHA256'], cipherSuites: undefined })?.id, 'p256', 'one candidate: that one');
});

test('serve --workers 2 --pfx with a passphrase file and a config-file certificates list: each certificate served, stapled and persisted, /connection per certificate', async (t) => {
  const dir = tempDir('certbound-serve-certs-');
  const ca = await issueCertificate({ subject: { commonName: 'serve multi-cert CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, port: 0 });
  t.after(() => responder.close());
  const leaf = (keyAlgorithm: 'rsa-2048' | 'ecdsa-p256'): Promise<IssuedCertificate> =>
    issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, keyAlgorithm, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });
  const [rsa, ec] = await Promise.all([leaf('rsa-2048'), leaf('ecdsa-p256')]);
  const file = (name: string, data: string | Buffer) => { writeFileSync(join(dir, name), data, { mode: 0o600 }); return join(dir, name); };
  file('rsa.pem', rsa.pem + ca.pem);
  file('rsa.key', rsa.keyPem);
  assert.equal((await run('openssl', ['pkcs12', '-export', '-in', join(dir, 'rsa.pem'), '-inkey', join(dir, 'rsa.key'), '-out', join(dir, 'rsa.p12'), '-passout', 'pass:p12 secret'])).code, 0);
  const ecKey = file('ec.key', createPrivateKey(ec.keyPem).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'ec secret' }) as string);
  const config = file('certbound.json', JSON.stringify({ certificates: [{ cert: file('ec.pem', ec.pem + ca.pem), key: ecKey, passphraseFile: file('ec.pass', 'ec secret\n') }] }));
  const port = await freePort();
  const state = join(dir, 'state');
  const child = spawn(process.execPath, [BIN, 'serve', '--workers', '2', '--port', String(port), '--client-auth', 'none', '--pfx', join(dir, 'rsa.p12'),
    '--key-passphrase-file', file('p12.pass', 'p12 secret\n'), '--config', config, '--state-dir', state, '--log-level', 'warn'], { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.after(async () => { try { process.kill(-(child.pid as number), 'SIGTERM'); } catch { /* gone */ } await exited; });
  for (const until = Date.now() + 30_000; Date.now() < until && !/2 worker processes/.test(out) && child.exitCode === null;) await sleep(25);
  assert.match(out, /2 worker processes/, out);

  const serial = (c: IssuedCertificate) => new X509Certificate(c.pem).serialNumber.toLowerCase();
  const [gotRsa, gotEc] = await Promise.all([
    sClient(port, ['-servername', 'localhost', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']),
    sClient(port, ['-servername', 'localhost', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']),
  ]);
  assert.deepEqual(gotRsa, { served: sha256(rsa.pem), stapleSerial: serial(rsa), status: 'good' });
  assert.deepEqual(gotEc, { served: sha256(ec.pem), stapleSerial: serial(ec), status: 'good' });
  // A worker's /connection shows the staple of the certificate that connection got.
  for (const [ciphers, want] of [['ECDHE-ECDSA-AES128-GCM-SHA256', ec], ['ECDHE-RSA-AES128-GCM-SHA256', rsa]] as const) {
    const info = await new Promise<Record<string, unknown>>((ok, fail) => {
      request({ host: '127.0.0.1', port, path: '/connection', servername: 'localhost', ca: ca.pem, ciphers, maxVersion: 'TLSv1.2', agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => ok(JSON.parse(body) as Record<string, unknown>));
      }).on('error', fail).end();
    });
    const ocsp = info.ocsp as Record<string, unknown>;
    assert.deepEqual([ocsp.state, ocsp.fingerprint, ocsp.serial], ['stapled', sha256(want.pem), serial(want)], ciphers);
  }
  assert.deepEqual(readdirSync(join(state, 'ocsp')).sort(), [`${sha256(rsa.pem)}.ocsp`, `${sha256(ec.pem)}.ocsp`].sort());
});

// The ClientHello reader fails closed (docs/changes.md 0.3): a connection whose ClientHello it
// cannot establish — an empty handshake record first, a ClientHello completed after the
// handshake timeout, one over 70,000 bytes — is closed before any certificate is sent, instead
// of starting from the first certificate's context (where OpenSSL served a.test's RSA
// certificate to a client naming b.test). Raw TCP: the bytes a real Node TLS client sends, and
// the Certificate message the server answers with (TLS 1.2 sends it in the clear).
test('several certificates: an unreadable ClientHello is closed before any certificate; 1-byte records still select by SNI and suites', async (t) => {
  const { createConnection, createServer: createNetServer } = await import('node:net');
  const { connect } = await import('node:tls');
  const { parseClientHello } = await import('../src/tls/client-hello.js');
  const ca = await issueCertificate({ subject: { commonName: 'hello CA' }, ca: true });
  const [rsa, ec] = await Promise.all([
    issueCertificate({ subject: { commonName: 'a.test' }, issuer: ca, keyAlgorithm: 'rsa-2048', extKeyUsage: [OID.serverAuth], altNames: ['a.test'] }),
    issueCertificate({ subject: { commonName: 'b.test' }, issuer: ca, keyAlgorithm: 'ecdsa-p256', extKeyUsage: [OID.serverAuth], altNames: ['b.test'] }),
  ]);
  const lines: Record<string, unknown>[] = [];
  const { pino } = await import('pino');
  const { Writable } = await import('node:stream');
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  const server = createServer({ certificates: [{ cert: rsa.pem, key: rsa.keyPem }, { cert: ec.pem, key: ec.keyPem }], clientAuth: 'none', logger: pino({ level: 'debug' }, sink), handshakeTimeout: 400, metrics: { defaultMetrics: false } });
  t.after(() => server.close());
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });

  // What a real client sends: TLS 1.2, RSA suites first, naming host.
  const capture = (servername: string) => new Promise<Buffer>((ok, fail) => {
    const srv = createNetServer((s) => {
      let got = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (parseClientHello(got).status === 'ok') { ok(got); s.destroy(); srv.close(); }
      });
    }).listen(0, '127.0.0.1', () => {
      const c = connect({ host: '127.0.0.1', port: (srv.address() as { port: number }).port, servername, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256' });
      c.on('error', () => undefined);
    });
    srv.on('error', fail);
  });
  const [helloA, helloB] = await Promise.all([capture('a.test'), capture('b.test')]);
  const body = (hello: Buffer) => hello.subarray(5, 5 + hello.readUInt16BE(3));
  const record = (frag: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, frag.length >> 8, frag.length & 0xff]), frag]);
  // The ClientHello with a padding extension (21) of `pad` bytes, in 16 KiB records.
  const padded = (hello: Buffer, pad: number): Buffer => {
    const hs = body(hello).subarray(4);
    let o = 2 + 32;
    o += 1 + (hs[o] as number);
    o += 2 + hs.readUInt16BE(o);
    o += 1 + (hs[o] as number);
    const exts = Buffer.concat([hs.subarray(o + 2, o + 2 + hs.readUInt16BE(o)), Buffer.from([0, 21, pad >> 8, pad & 0xff]), Buffer.alloc(pad)]);
    const inner = Buffer.concat([hs.subarray(0, o), Buffer.from([exts.length >> 8, exts.length & 0xff]), exts]);
    const msg = Buffer.concat([Buffer.from([1, inner.length >> 16, (inner.length >> 8) & 0xff, inner.length & 0xff]), inner]);
    const out: Buffer[] = [];
    for (let i = 0; i < msg.length; i += 16_384) out.push(record(msg.subarray(i, i + 16_384)));
    return Buffer.concat(out);
  };
  // Sends `parts` (with a pause before each after the first), returns the SHA-256 of the first
  // certificate the server sent, 'closed' when it closed without sending one.
  const served = (parts: Buffer[], pauseMs = 0) => new Promise<string>((ok, fail) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); fail(new Error(`no answer, ${got.length} bytes`)); }, 5_000);
    const done = (v: string) => { clearTimeout(timer); s.destroy(); ok(v); };
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      let hs = Buffer.alloc(0);
      for (let i = 0; i + 5 <= got.length;) {
        const len = got.readUInt16BE(i + 3);
        if (got[i] === 22) hs = Buffer.concat([hs, got.subarray(i + 5, i + 5 + len)]);
        i += 5 + len;
      }
      for (let j = 0; j + 4 <= hs.length;) {
        const len = hs.readUIntBE(j + 1, 3);
        if (hs[j] === 11 && j + 4 + len <= hs.length) {
          const first = hs.readUIntBE(j + 7, 3);
          done(new X509Certificate(hs.subarray(j + 10, j + 10 + first)).fingerprint256.replace(/:/g, '').toLowerCase());
          return;
        }
        j += 4 + len;
      }
    });
    s.on('close', () => done(got.length === 0 ? 'closed' : `closed after ${got.length} bytes without a certificate`));
    s.on('error', () => undefined);
    void (async () => {
      for (const [i, p] of parts.entries()) {
        if (i > 0 && pauseMs > 0) await sleep(pauseMs);
        if (!s.destroyed) s.write(p);
      }
    })();
  });

  const oneByteRecords = (hello: Buffer) => Buffer.concat([...body(hello)].map((b) => record(Buffer.from([b]))));
  const [a, b, bFragmented, bPadded, emptyFirst, slow, huge] = await Promise.all([
    served([helloA]),
    served([helloB]),
    served([oneByteRecords(helloB)]),
    // A padded ClientHello within the bound is read (and served) normally.
    served([padded(helloB, 20_000)]),
    served([Buffer.from([22, 3, 1, 0, 0]), helloB]),
    // The rest comes 1.6 s after the handshake timeout (400 ms): a loaded machine still runs the timer first.
    served([helloB.subarray(0, 10), helloB.subarray(10)], 2000),
    served([padded(helloB, 70_000)]),
  ]);
  assert.deepEqual({ a, b, bFragmented, bPadded }, { a: sha256(rsa.pem), b: sha256(ec.pem), bFragmented: sha256(ec.pem), bPadded: sha256(ec.pem) }, 'normal selection: exact certificates');
  assert.deepEqual({ emptyFirst, slow, huge }, { emptyFirst: 'closed', slow: 'closed', huge: 'closed' }, 'an unreadable ClientHello gets no certificate at all');
  const refused = lines.filter((l) => l.msg === 'TLS handshake refused: ClientHello not readable').map((l) => l.reason).sort();
  assert.deepEqual(refused, ['client-hello-invalid', 'client-hello-timeout', 'client-hello-too-long']);
  // Counted as failed handshakes: the 3 refused ones plus the 4 served ones this raw client
  // aborted after the Certificate (OpenSSL's own failures, logged 'TLS handshake failed').
  const failed = async () => /^certbound_tls_handshakes_total\{protocol="other",resumed="false",result="failed"\} (\d+)$/m.exec(await server.metrics?.registry.metrics() ?? '')?.[1];
  for (let i = 0; i < 40 && await failed() !== '7'; i += 1) await sleep(50);
  assert.equal(await failed(), '7');
  assert.equal(lines.filter((l) => l.msg === 'TLS handshake failed').length, 4);
});

// GET /connection reports the staple state of the certificate the connection was actually
// served: after a reload replaced it, a connection from before is not shown the new one's.
test('/connection ocsp is the served certificate\'s, also for a connection from before a reload', async (t) => {
  const { Agent } = await import('node:https');
  const ca = await issueCertificate({ subject: { commonName: 'reload CA' }, ca: true });
  const [one, two] = await Promise.all([1, 2].map(() => issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, keyAlgorithm: 'ecdsa-p256', extKeyUsage: [OID.serverAuth], altNames: ['localhost'] })));
  if (!one || !two) throw new Error('certificates');
  const server = createServer({ cert: one.pem + ca.pem, key: one.keyPem, clientAuth: 'none', logger: false, referenceRoutes: true, ocsp: true });
  t.after(() => server.close());
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const get = (a: typeof agent | false) => new Promise<{ ocsp: Record<string, unknown>; connectionId: string }>((ok, fail) => {
    request({ host: '127.0.0.1', port, path: '/connection', servername: 'localhost', ca: ca.pem, agent: a }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => ok(JSON.parse(body) as never));
    }).on('error', fail).end();
  });
  const before = await get(agent);
  assert.deepEqual([before.ocsp.fingerprint, before.ocsp.reason], [sha256(one.pem), 'no-ocsp-url']);
  await server.reload({ cert: two.pem + ca.pem, key: two.keyPem });
  const old = await get(agent);
  assert.equal(old.connectionId, before.connectionId, 'the same connection');
  assert.deepEqual([old.ocsp.state, old.ocsp.fingerprint, old.ocsp.serial, old.ocsp.reason], ['not-stapled', sha256(one.pem), new X509Certificate(one.pem).serialNumber.toLowerCase(), 'not-a-stapled-certificate']);
  const fresh = await get(false);
  assert.deepEqual([fresh.ocsp.fingerprint, fresh.ocsp.reason], [sha256(two.pem), 'no-ocsp-url']);
});
