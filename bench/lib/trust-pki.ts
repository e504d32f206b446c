// The PKI of the stapling and revocation benches: the dev PKI's shape (root CA, client CA,
// server and client certificates, ECDSA P-256, the same file names, so bench-server.ts reads
// it like the dev PKI), plus what revocation needs: the server certificate and the client
// leaf carry AIA OCSP URLs of two dev responders run by the bench (loopback), and a CRL of
// the client CA (listing another serial) is written beside them. A temp dir per run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCertificate, issueCrl, OID } from '../../src/tls/cert-builder.js';
import { devPkiPaths, type DevPkiPaths } from '../../src/tls/dev-pki.js';
import { startDevOcspResponder, type DevOcspResponder } from '../../src/ocsp/responder.js';

/** The client CA's CRL, beside the dev-PKI files. */
export const TRUST_PKI_CRL = 'client-ca.crl';

export interface TrustPki {
  readonly paths: DevPkiPaths;
  /** Answers for the root CA (the server certificate's staple). */
  readonly serverResponder: DevOcspResponder;
  /** Answers for the client CA (the client leaf's revocation check). */
  readonly clientResponder: DevOcspResponder;
  close(): Promise<void>;
}

export async function createTrustPki(): Promise<TrustPki> {
  const dir = mkdtempSync(join(tmpdir(), 'certbound-trust-pki-'));
  const paths = devPkiPaths(dir);
  const root = await issueCertificate({ subject: { commonName: 'bench root CA' }, ca: true });
  const clientCa = await issueCertificate({ subject: { commonName: 'bench client CA' }, issuer: root, ca: true, pathLength: 0 });
  const serverResponder = await startDevOcspResponder({ issuer: root, validityMinutes: 60 });
  const clientResponder = await startDevOcspResponder({ issuer: clientCa, validityMinutes: 60 });
  const server = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: root, extKeyUsage: [OID.serverAuth], altNames: ['localhost', '127.0.0.1'], ocspUrl: serverResponder.url });
  const client = await issueCertificate({ subject: { commonName: 'bench-client' }, issuer: clientCa, extKeyUsage: [OID.clientAuth], ocspUrl: clientResponder.url });
  // A CRL that lists some other certificate of the client CA: the client is checked and found good.
  const other = await issueCertificate({ subject: { commonName: 'bench-revoked' }, issuer: clientCa, extKeyUsage: [OID.clientAuth] });
  writeFileSync(paths.rootCa, root.pem);
  writeFileSync(paths.caBundle, root.pem + clientCa.pem);
  writeFileSync(paths.server, server.pem);
  writeFileSync(paths.serverKey, server.keyPem, { mode: 0o600 });
  writeFileSync(paths.client, client.pem + clientCa.pem);
  writeFileSync(paths.clientKey, client.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, TRUST_PKI_CRL), await issueCrl({ issuer: clientCa, revoked: [other] }));
  return {
    paths,
    serverResponder,
    clientResponder,
    async close() {
      await Promise.all([serverResponder.close(), clientResponder.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
