// The dev PKI: a root CA, a client-issuing intermediate, a server certificate for localhost
// and 127.0.0.1, and client certificates for each verdict (valid, expired, untrusted CA,
// no clientAuth usage). Made with pkijs; used by `certbound dev-pki` and `npm start`.
// Its private keys are 0600 in a 0700 directory, whatever the umask or what was there.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { DEFAULTS } from '../defaults.js';
import { CertboundError, isCertboundError } from '../errors.js';
import { issueCertificate, OID, type IssuedCertificate } from './cert-builder.js';
import { writePkcs12 } from '../client/pkcs12.js';
import { pemBlocks } from './pem.js';
import { DEV_CLIENT_P12_PASSWORD, DEV_OCSP_CACHE_DIR } from './dev-pki-names.js';
import { ensurePrivateDir, tightenSecretFile, writeFileExact, writeSecretFile } from '../secret-file.js';

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
  /** The client certificate, its chain and its key as PKCS#12, for browsers (password DEV_CLIENT_P12_PASSWORD). */
  clientP12: 'client.p12',
  clientExpired: 'client-expired.pem',
  clientExpiredKey: 'client-expired.key',
  clientUntrusted: 'client-untrusted.pem',
  clientUntrustedKey: 'client-untrusted.key',
  clientWrongUsage: 'client-wrong-usage.pem',
  clientWrongUsageKey: 'client-wrong-usage.key',
  untrustedCa: 'untrusted-ca.pem',
  untrustedCaKey: 'untrusted-ca.key',
});

/** The dev OCSP responder's delegated certificate, issued on first use (src/ocsp/dev-responder.ts). */
export const DEV_OCSP_RESPONDER_FILES = Object.freeze({ cert: 'ocsp-responder.pem', key: 'ocsp-responder.key' });

export { DEV_CLIENT_P12_PASSWORD, DEV_OCSP_CACHE_DIR };

/** Every private-key file a dev PKI directory may hold. */
const KEY_FILES: readonly string[] = [...Object.values(DEV_PKI_FILES).filter((f) => f.endsWith('.key') || f.endsWith('.p12')), DEV_OCSP_RESPONDER_FILES.key];

const DEV_PKI_ENTRIES: ReadonlySet<string> = new Set([...Object.values(DEV_PKI_FILES), ...Object.values(DEV_OCSP_RESPONDER_FILES), DEV_OCSP_CACHE_DIR]);

/** What a dev PKI directory may hold: its files, the responder's, the OCSP cache, and temporary files of an interrupted write. */
function isDevPkiEntry(name: string): boolean {
  return DEV_PKI_ENTRIES.has(name) || /\.(pem|key|p12)\.\d+\.[0-9a-f]+\.tmp$/.test(name);
}

/** A failure in the dev PKI directory `dir` (reading, writing, a key that does not load) as CB_ERR_DEV_PKI. */
export function devPkiError(dir: string, err: unknown): CertboundError {
  if (isCertboundError(err, 'CB_ERR_DEV_PKI')) return err;
  // A private-directory or secret-file refusal: its reason, said for the dev PKI directory.
  const detail = (err as { detail?: unknown }).detail;
  if ((isCertboundError(err, 'CB_ERR_PRIVATE_DIR') || isCertboundError(err, 'CB_ERR_SECRET_FILE')) && typeof detail === 'string') return new CertboundError('CB_ERR_DEV_PKI', [dir, detail], { cause: err });
  return new CertboundError('CB_ERR_DEV_PKI', [dir, (err as Error)?.message ?? String(err)], { cause: err });
}

function inDevPkiDir<T>(dir: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    throw devPkiError(dir, err);
  }
}

/**
 * Makes the dev PKI directory private (created 0700; an existing one narrowed to 0700 when it
 * holds only dev PKI files, refused with CB_ERR_DEV_PKI when it is shared with other files).
 */
function ensureDevPkiDir(dir: string): void {
  inDevPkiDir(dir, () => ensurePrivateDir(dir, { ownEntry: isDevPkiEntry }));
}

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
  ensureDevPkiDir(dir);
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
  const clientP12 = await writePkcs12({
    certificates: [client.der, clientCa.der],
    privateKey: pemBlocks(client.keyPem, 'PRIVATE KEY')[0] as Buffer,
    password: DEV_CLIENT_P12_PASSWORD,
    friendlyName: 'certbound dev client',
  });

  // Every file is a new one renamed into place: a key file that was there (0644, say) does not lend it its mode.
  const pair = (cert: string, key: string, c: IssuedCertificate, chain: IssuedCertificate[] = []) => {
    writeFileExact(cert, c.pem + chain.map((x) => x.pem).join(''), 0o644);
    writeSecretFile(key, c.keyPem);
  };
  inDevPkiDir(dir, () => {
    pair(paths.rootCa, paths.rootCaKey, root);
    pair(paths.clientCa, paths.clientCaKey, clientCa);
    writeFileExact(paths.caBundle, root.pem + clientCa.pem, 0o644);
    pair(paths.server, paths.serverKey, server);
    pair(paths.client, paths.clientKey, client, [clientCa]);
    writeSecretFile(paths.clientP12, clientP12);
    pair(paths.clientExpired, paths.clientExpiredKey, expired, [clientCa]);
    pair(paths.clientWrongUsage, paths.clientWrongUsageKey, wrongUsage, [clientCa]);
    pair(paths.untrustedCa, paths.untrustedCaKey, untrustedCa);
    pair(paths.clientUntrusted, paths.clientUntrustedKey, untrusted);
  });
  return paths;
}

/**
 * The private-key files of the dev PKI in `dir` that group or others could read, brought to
 * 0600 (and the directory to 0700). Returns their names. Throws CB_ERR_DEV_PKI when it cannot.
 */
function tightenDevPki(dir: string): string[] {
  ensureDevPkiDir(dir);
  return inDevPkiDir(dir, () => KEY_FILES.filter((f) => existsSync(join(dir, f)) && tightenSecretFile(join(dir, f))));
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

/** Writes client.p12 from client.pem, client.key and client-ca.pem when all three are there and valid. */
async function addClientP12(dir: string): Promise<void> {
  const paths = devPkiPaths(dir);
  if (![paths.client, paths.clientKey, paths.clientCa].every((p) => existsSync(p))) return;
  const client = new X509Certificate(readFileSync(paths.client));
  const clientCa = new X509Certificate(readFileSync(paths.clientCa));
  const keyPem = readFileSync(paths.clientKey, 'utf8');
  // The key must be the certificate's, and the certificate the CA's: else the PKI is recreated whole.
  if (!client.checkPrivateKey(createPrivateKey(keyPem)) || !client.checkIssued(clientCa)) return;
  const p12 = await writePkcs12({
    certificates: [client.raw, clientCa.raw],
    privateKey: pemBlocks(keyPem, 'PRIVATE KEY')[0] as Buffer,
    password: DEV_CLIENT_P12_PASSWORD,
    friendlyName: 'certbound dev client',
  });
  writeSecretFile(paths.clientP12, p12);
}

/**
 * The dev PKI in `dir`, created on first use (or when it is incomplete or about to expire).
 * A dev PKI that is reused has its key files tightened to 0600 and its directory to 0700:
 * `tightened` names the key files that group or others could read until then.
 */
export async function ensureDevPki(dir: string, options: DevPkiOptions = {}): Promise<{ paths: DevPkiPaths; created: boolean; tightened: string[] }> {
  // A dev PKI from before client.p12 existed: the bundle is added from its own client files, so
  // a root CA a browser or a system already trusts stays the same.
  if (!existsSync(devPkiPaths(dir).clientP12)) await addClientP12(dir).catch(() => undefined);
  if (devPkiUsable(dir)) return { paths: devPkiPaths(dir), created: false, tightened: tightenDevPki(dir) };
  return { paths: await createDevPki(dir, options), created: true, tightened: [] };
}
