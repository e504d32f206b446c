// OCSP stapling against a real `openssl ocsp` responder: the server fetches and checks the
// response before it listens, so the very first handshake carries the staple.
//
//   node --import tsx examples/ocsp-stapling.ts
//
// 1. makes a CA, a delegated OCSP signer (id-kp-OCSPSigning) and a server certificate whose
//    AIA points at the responder; 2. starts `openssl ocsp` with an index that says "good";
// 3. starts certbound with `ocsp: true`; 4. asks `openssl s_client -status` what it got.
import { spawn, execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, issueCertificate } from 'certbound';

const dir = mkdtempSync(join(tmpdir(), 'certbound-ocsp-example-'));
const port = await new Promise<number>((resolve) => {
  const probe = createNetServer().listen(0, '127.0.0.1', () => {
    const p = (probe.address() as { port: number }).port;
    probe.close(() => resolve(p));
  });
});
const url = `http://127.0.0.1:${port}/`;

const ca = await issueCertificate({ subject: { commonName: 'Example OCSP CA' }, ca: true });
const signer = await issueCertificate({ subject: { commonName: 'Example OCSP signer' }, issuer: ca, extKeyUsage: ['1.3.6.1.5.5.7.3.9'] });
const server = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: ['1.3.6.1.5.5.7.3.1'], altNames: ['localhost', '127.0.0.1'], ocspUrl: url });
const file = (name: string, text: string) => { writeFileSync(join(dir, name), text); return join(dir, name); };
const caPem = file('ca.pem', ca.pem);
const serverPem = file('server.pem', server.pem);
// openssl's index: status, expiry (YYMMDDHHMMSSZ), revocation date, serial, file, subject.
const expiry = server.certificate.notAfter.value.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
const serial = Buffer.from(server.certificate.serialNumber.valueBlock.valueHexView).toString('hex').toUpperCase();
file('index.txt', `V\t${expiry}\t\t${serial}\tunknown\t/CN=localhost\n`);
file('index.txt.attr', 'unique_subject = no\n');

const responder = spawn('openssl', ['ocsp', '-index', join(dir, 'index.txt'), '-port', String(port), '-rsigner', file('signer.pem', signer.pem), '-rkey', file('signer.key', signer.keyPem), '-CA', caPem, '-nmin', '60'], { stdio: 'ignore' });
// Wait with real OCSP requests: openssl ocsp wedges on a bare TCP probe.
for (let i = 0; i < 50; i++) {
  try {
    execFileSync('openssl', ['ocsp', '-issuer', caPem, '-cert', serverPem, '-url', url, '-CAfile', caPem, '-timeout', '2'], { stdio: 'pipe' });
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 100));
  }
}

const app = createServer({ cert: server.pem, key: server.keyPem, ca: [ca.pem], clientAuth: 'none', logger: { level: 'warn' }, referenceRoutes: true, ocsp: { cacheDir: join(dir, 'staples') } });
const { port: httpsPort } = await app.listen({ host: '127.0.0.1', port: 0 });
console.log('staple state:', JSON.stringify(app.app.ocspStaple()));

// Asynchronously: the server runs in this process and must keep answering.
const run = promisify(execFile);
const sClientRun = run('openssl', ['s_client', '-connect', `127.0.0.1:${httpsPort}`, '-servername', 'localhost', '-CAfile', caPem, '-status'], { timeout: 15_000 });
sClientRun.child.stdin?.end();
const sClient = (await sClientRun).stdout;
const status = /OCSP Response Status: (\w+)/.exec(sClient)?.[1] ?? 'none';
const certStatus = /Cert Status: (\w+)/.exec(sClient)?.[1] ?? 'none';
console.log(`openssl s_client -status on the first handshake: response ${status}, cert ${certStatus}`);

await app.close();
responder.kill();
rmSync(dir, { recursive: true, force: true });
process.exitCode = status === 'successful' && certStatus === 'good' ? 0 : 1;
