// The dev PKI: a root CA, a client-issuing intermediate, a server certificate for localhost
// and 127.0.0.1, and client certificates for each verdict (valid, expired, untrusted CA,
// no clientAuth usage). Made with pkijs; used by `certbound dev-pki` and `npm start`.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import { issueCertificate, OID, type IssuedCertificate } from './cert-builder.js';

/** Default port of the dev OCSP responder named in the server certificate's AIA: DEFAULTS.devOcspPort. */
export const DEV_OCSP_PORT = DEFAULTS.devOcspPort;

/** File names inside a dev PKI directory. */
export const DEV_PKI_FILES = Object.freeze({
  rootCa: 'root-ca.pem',
  rootCaKey: 'root-ca.key',
  clientCa: 'client-ca.pem',
  clientCaKey: 'client-ca.key',
  /** Trusted client CAs: root and intermediate, what `--ca` takes. */
  caBundle: 'ca-bundle.pem',
  server: 'server.pem',
  serverKey: 'server.key',
  client: 'client.pem',
  clientKey: 'client.key',
  clientExpired: 'client-expired.pem',
  clientExpiredKey: 'client-expired.key',
  clientUntrusted: 'client-untrusted.pem',
  clientUntrustedKey: 'client-untrusted.key',
  clientWrongUsage: 'client-wrong-usage.pem',
  clientWrongUsageKey: 'client-wrong-usage.key',
  untrustedCa: 'untrusted-ca.pem',
  untrustedCaKey: 'untrusted-ca.key',
});

export type DevPkiPaths = { readonly [K in keyof typeof DEV_PKI_FILES]: string } & { readonly dir: string };

export interface DevPkiOptions {
  /** OCSP URL put in the server certificate's AIA. Default: http://127.0.0.1:8889/ */
  ocspUrl?: string;
  /** Extra subjectAltNames for the server certificate (localhost and 127.0.0.1 are always there). */
  serverNames?: string[];
}

export function devPkiPaths(dir: string): DevPkiPaths {
  const out: Record<string, string> = { dir };
  for (const [k, f] of Object.entries(DEV_PKI_FILES)) out[k] = join(dir, f);
  return out as DevPkiPaths;
}

/** Writes a fresh dev PKI into `dir` (created if needed) and returns the file paths. */
export async function createDevPki(dir: string, options: DevPkiOptions = {}): Promise<DevPkiPaths> {
  const paths = devPkiPaths(dir);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CertboundError('CB_ERR_DEV_PKI', [dir, (err as Error).message]);
  }
  const org = 'certbound dev';
  const day = 24 * 60 * 60 * 1000;
  const root = await issueCertificate({ subject: { commonName: 'certbound dev root CA', organization: org }, ca: true, notAfter: new Date(Date.now() + 3650 * day) });
  const clientCa = await issueCertificate({ subject: { commonName: 'certbound dev client CA', organization: org }, issuer: root, ca: true, pathLength: 0, notAfter: new Date(Date.now() + 3650 * day) });
  const server = await issueCertificate({
    subject: { commonName: 'localhost', organization: org },
    issuer: root,
    extKeyUsage: [OID.serverAuth],
    altNames: ['localhost', '127.0.0.1', '::1', ...(options.serverNames ?? [])],
    ocspUrl: options.ocspUrl ?? `http://${DEFAULTS.devOcspHost}:${DEV_OCSP_PORT}/`,
  });
  const client = await issueCertificate({ subject: { commonName: 'dev-client', organization: org, organizationalUnit: 'users' }, issuer: clientCa, extKeyUsage: [OID.clientAuth] });
  const expired = await issueCertificate({
    subject: { commonName: 'dev-client-expired', organization: org, organizationalUnit: 'users' },
    issuer: clientCa,
    extKeyUsage: [OID.clientAuth],
    notBefore: new Date(Date.now() - 30 * day),
    notAfter: new Date(Date.now() - day),
  });
  const wrongUsage = await issueCertificate({ subject: { commonName: 'dev-client-wrong-usage', organization: org }, issuer: clientCa, extKeyUsage: [OID.serverAuth] });
  const untrustedCa = await issueCertificate({ subject: { commonName: 'certbound untrusted CA', organization: 'elsewhere' }, ca: true });
  const untrusted = await issueCertificate({ subject: { commonName: 'dev-client-untrusted', organization: 'elsewhere' }, issuer: untrustedCa, extKeyUsage: [OID.clientAuth] });

  const write = (path: string, text: string, secret = false) => writeFileSync(path, text, { mode: secret ? 0o600 : 0o644 });
  const pair = (cert: string, key: string, c: IssuedCertificate, chain: IssuedCertificate[] = []) => {
    write(cert, c.pem + chain.map((x) => x.pem).join(''));
    write(key, c.keyPem, true);
  };
  pair(paths.rootCa, paths.rootCaKey, root);
  pair(paths.clientCa, paths.clientCaKey, clientCa);
  write(paths.caBundle, root.pem + clientCa.pem);
  pair(paths.server, paths.serverKey, server);
  pair(paths.client, paths.clientKey, client, [clientCa]);
  pair(paths.clientExpired, paths.clientExpiredKey, expired, [clientCa]);
  pair(paths.clientWrongUsage, paths.clientWrongUsageKey, wrongUsage, [clientCa]);
  pair(paths.untrustedCa, paths.untrustedCaKey, untrustedCa);
  pair(paths.clientUntrusted, paths.clientUntrustedKey, untrusted);
  return paths;
}

/** True when `dir` holds a complete dev PKI whose server and client certificates are still valid. */
export function devPkiUsable(dir: string): boolean {
  const paths = devPkiPaths(dir);
  if (!Object.keys(DEV_PKI_FILES).every((k) => existsSync(paths[k as keyof typeof DEV_PKI_FILES]))) return false;
  try {
    const now = Date.now() + 24 * 60 * 60 * 1000;
    return [paths.server, paths.client].every((p) => new Date(new X509Certificate(readFileSync(p)).validTo).getTime() > now);
  } catch {
    return false;
  }
}

/** The dev PKI in `dir`, created on first use (or when it is incomplete or about to expire). */
export async function ensureDevPki(dir: string, options: DevPkiOptions = {}): Promise<{ paths: DevPkiPaths; created: boolean }> {
  if (devPkiUsable(dir)) return { paths: devPkiPaths(dir), created: false };
  return { paths: await createDevPki(dir, options), created: true };
}
