// A download through mutual TLS with the client certificate picked by thumbprint, as BITS's
// SetClientCertificateByID does:
//
//   node --import tsx examples/client-download.ts
//
// 1. makes a dev PKI and a temporary certificate store (current-user\MY holds the dev client
//    certificate and its key; current-user\ROOT the dev root CA, which the job trusts);
// 2. starts certbound's server with client-auth `require` and a file to download;
// 3. creates a transfer job, adds the file, picks the certificate by its SHA-1 thumbprint,
//    resumes the job and prints its progress and result;
// 4. completes the job (the file moves into place) and checks it byte for byte.
// A second job without a certificate shows what the server's demand turns into:
// ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED (0x80072f0c). Exits 0 when both behave so.
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BitsHResult, hresultName, JobManager, JobState, openStore, StoreLocation } from '../src/client/index.js';
import { createServer } from '../src/server/server.js';
import { createDevPki } from '../src/tls/dev-pki.js';

const work = mkdtempSync(join(tmpdir(), 'certbound-client-example-'));
const hr = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, '0')} ${hresultName(v) ?? ''}`;

async function main(): Promise<number> {
  const pki = await createDevPki(join(work, 'pki'));

  // The store: <root>/current-user/MY and <root>/current-user/ROOT.
  const storeRoot = join(work, 'stores');
  mkdirSync(join(storeRoot, 'current-user', 'MY'), { recursive: true });
  mkdirSync(join(storeRoot, 'current-user', 'ROOT'), { recursive: true });
  copyFileSync(pki.client, join(storeRoot, 'current-user', 'MY', 'dev-client.pem'));
  copyFileSync(pki.clientKey, join(storeRoot, 'current-user', 'MY', 'dev-client.key'));
  copyFileSync(pki.rootCa, join(storeRoot, 'current-user', 'ROOT', 'root-ca.pem'));
  const my = await openStore(StoreLocation.CURRENT_USER, 'MY', { root: storeRoot });
  const entry = my.entries?.[0];
  if (!entry) throw new Error(`store MY: ${hr(my.hr)}`);
  const thumbprint = entry.thumbprint.toString('hex');
  console.log(`store current-user\\MY: ${thumbprint}  ${entry.subject}`);

  // The server: certbound, client certificates required at the handshake.
  const body = randomBytes(1024 * 1024);
  const server = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'require', logger: false, underPressure: false });
  server.app.get('/payload.bin', async (req, reply) => {
    const cert = req.clientCertificate();
    req.log.info({ thumbprint: cert?.sha1 }, 'download');
    return reply.header('content-type', 'application/octet-stream').header('etag', '"v1"').send(body);
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  const url = `https://127.0.0.1:${port}/payload.bin`;
  console.log(`server: ${url} (client-auth require)`);

  const manager = await JobManager.open({ dir: join(work, 'jobs'), store: { root: storeRoot } });
  try {
    // The job with the certificate picked by thumbprint.
    const { job } = manager.createJob('example download');
    if (!job) throw new Error('createJob failed');
    const dest = join(work, 'payload.bin');
    job.addFile(url, dest);
    const set = await job.setClientCertificateByID(StoreLocation.CURRENT_USER, 'MY', Buffer.from(thumbprint, 'hex'));
    console.log(`SetClientCertificateByID(CURRENT_USER, "MY", ${thumbprint}) = ${hr(set)}`);
    manager.on('state', (s) => { if (s.id === job.id) console.log(`  ${s.stateName} ${s.progress.bytesTransferred}/${s.progress.bytesTotal} bytes`); });
    job.resume();
    const state = await job.waitFor([JobState.TRANSFERRED, JobState.ERROR]);
    if (state !== JobState.TRANSFERRED) throw new Error(`job ended in ${state}: ${job.error ? hr(job.error.hr) : ''} ${job.error?.message ?? ''}`);
    const completed = job.complete();
    const same = createHash('sha256').update(readFileSync(dest)).digest('hex') === createHash('sha256').update(body).digest('hex');
    console.log(`Complete() = ${hr(completed)}; ${dest}: ${same ? 'identical to what the server sent' : 'DIFFERENT'}`);

    // The same download without a certificate.
    const anon = manager.createJob('no certificate').job;
    if (!anon) throw new Error('createJob failed');
    anon.addFile(url, join(work, 'anonymous.bin'));
    anon.resume();
    await anon.waitFor([JobState.TRANSFERRED, JobState.ERROR]);
    const anonHr = anon.error?.hr ?? 0;
    console.log(`without a certificate: ${anon.snapshot().stateName} ${hr(anonHr)}`);
    anon.cancel();
    return same && completed === BitsHResult.S_OK && anonHr === BitsHResult.ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED ? 0 : 1;
  } finally {
    await manager.close();
    await server.close();
  }
}

main().then(
  (code) => {
    rmSync(work, { recursive: true, force: true });
    console.log(code === 0 ? 'ok' : 'FAILED');
    process.exitCode = code;
  },
  (err: unknown) => {
    rmSync(work, { recursive: true, force: true });
    console.error(err);
    process.exitCode = 1;
  },
);
