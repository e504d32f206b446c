// The dev OCSP responder for the embedded dev PKI: signs for the dev root CA with a
// delegated responder certificate kept next to it (ocsp-responder.pem/.key, issued on first
// use), on 127.0.0.1:8889 (the AIA URL of the dev server certificate). Used by
// `certbound serve` without --cert and by `certbound ocsp-responder`.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadIssuer, type IssuedCertificate } from '../tls/cert-builder.js';
import { DEV_OCSP_PORT, DEV_OCSP_RESPONDER_FILES, devPkiError, devPkiPaths, ensureDevPki } from '../tls/dev-pki.js';
import { tightenSecretFile, writeFileExact, writeSecretFile } from '../secret-file.js';
import { DEFAULTS } from '../defaults.js';
import { parseArgsReason, usageError } from '../cli-exit.js';
import { CertboundError } from '../errors.js';
import { issueResponderCertificate, startDevOcspResponder, type DevOcspResponder } from './responder.js';

import { DEV_OCSP_VALIDITY_ENV, DEV_OCSP_VALIDITY_MINUTES, devStaplingSettings, validityFromEnv } from './dev-stapling.js';

export { DEV_OCSP_VALIDITY_ENV, DEV_OCSP_VALIDITY_MINUTES, devStaplingSettings, validityFromEnv };

/** Files of the delegated responder inside the dev PKI directory. */
export { DEV_OCSP_RESPONDER_FILES } from '../tls/dev-pki.js';


export interface DevPkiResponderOptions {
  /** Default: 8889 (DEV_OCSP_PORT, the port in the dev server certificate's AIA). */
  port?: number;
  /** Default: '127.0.0.1'. */
  host?: string;
  /** nextUpdate − thisUpdate of the answers, in minutes. Default: 60. */
  validityMinutes?: number;
  /** Revoked serial numbers (hex). */
  revoked?: string[];
}

/**
 * The root CA and the delegated responder of the dev PKI in `dir`: the responder's certificate
 * is issued on first use (or when it is about to expire), its key written 0600; a kept key
 * file that group or others could read is tightened to 0600. Throws CB_ERR_DEV_PKI.
 */
async function responderMaterial(dir: string): Promise<{ root: IssuedCertificate; responder: IssuedCertificate }> {
  const paths = devPkiPaths(dir);
  const certPath = join(dir, DEV_OCSP_RESPONDER_FILES.cert);
  const keyPath = join(dir, DEV_OCSP_RESPONDER_FILES.key);
  try {
    const root = await loadIssuer(readFileSync(paths.rootCa, 'utf8'), readFileSync(paths.rootCaKey, 'utf8'));
    const usable = existsSync(certPath) && existsSync(keyPath) && (() => {
      try {
        const c = new X509Certificate(readFileSync(certPath));
        return new Date(c.validTo).getTime() > Date.now() + 86400_000 && c.checkIssued(new X509Certificate(root.der));
      } catch {
        return false;
      }
    })();
    if (usable) {
      tightenSecretFile(keyPath);
      return { root, responder: await loadIssuer(readFileSync(certPath, 'utf8'), readFileSync(keyPath, 'utf8')) };
    }
    const responder = await issueResponderCertificate(root);
    writeFileExact(certPath, responder.pem, 0o644);
    writeSecretFile(keyPath, responder.keyPem);
    return { root, responder };
  } catch (err) {
    throw devPkiError(dir, err);
  }
}

/**
 * Starts the dev responder for the dev PKI in `dir`. Rejects with CB_ERR_DEV_PKI when the dev
 * PKI's files cannot be read or written, CB_ERR_LISTEN when the port cannot be bound.
 */
export async function startDevPkiResponder(dir: string, options: DevPkiResponderOptions = {}): Promise<DevOcspResponder> {
  const { root, responder } = await responderMaterial(dir);
  const host = options.host ?? DEFAULTS.devOcspHost;
  const port = options.port ?? DEV_OCSP_PORT;
  try {
    return await startDevOcspResponder({
      issuer: root,
      responder,
      port,
      host,
      validityMinutes: options.validityMinutes ?? DEV_OCSP_VALIDITY_MINUTES,
      ...(options.revoked ? { revoked: options.revoked } : {}),
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CertboundError('CB_ERR_LISTEN', [host, port, e.code ?? e.message], { cause: err });
  }
}

/**
 * The port of the dev responder named by the AIA OCSP URL of the dev server certificate in
 * `dir` when that URL is on DEFAULTS.devOcspHost (a dev PKI made with another `ocspUrl`),
 * else DEV_OCSP_PORT: `serve` starts its responder where its certificate sends clients.
 */
export function devResponderPort(dir: string): number {
  try {
    const aia = new X509Certificate(readFileSync(devPkiPaths(dir).server)).infoAccess ?? '';
    const url = new URL(/OCSP - URI:(\S+)/.exec(aia)?.[1] ?? '');
    if (url.protocol === 'http:' && url.hostname === DEFAULTS.devOcspHost && url.port !== '') return Number(url.port);
  } catch {
    // No certificate or no usable URL: the default.
  }
  return DEV_OCSP_PORT;
}


/**
 * `certbound ocsp-responder [--dev-pki-dir DIR] [--port N] [--host H] [--validity-minutes M] [--revoke SERIAL]...`:
 * runs the dev responder until SIGINT/SIGTERM. Resolves with the running responder.
 */
export async function runOcspResponderCli(args: string[]): Promise<DevOcspResponder> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        'dev-pki-dir': { type: 'string' }, port: { type: 'string' }, host: { type: 'string' },
        'validity-minutes': { type: 'string' }, revoke: { type: 'string', multiple: true },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw usageError('(command line)', parseArgsReason(err), 'certbound ocsp-responder --help');
  }
  const num = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new CertboundError('CB_ERR_INVALID_OPTION', [`--${name}`, `expected a number >= ${min}, got ${JSON.stringify(v)}`]);
    return n;
  };
  // Arguments first: a bad one must not leave a dev PKI behind.
  const port = num('port', values.port, 0);
  const validityMinutes = num('validity-minutes', values['validity-minutes'], 0.01);
  const { paths } = await ensureDevPki(resolve(values['dev-pki-dir'] ?? '.certbound'));
  const responder = await startDevPkiResponder(paths.dir, {
    ...(port !== undefined ? { port } : {}),
    ...(values.host ? { host: values.host } : {}),
    ...(validityMinutes !== undefined ? { validityMinutes } : {}),
    ...(values.revoke ? { revoked: values.revoke } : {}),
  });
  console.log(`certbound: dev OCSP responder for ${paths.rootCa} on ${responder.url} (answers valid ${validityMinutes ?? DEV_OCSP_VALIDITY_MINUTES} min)`);
  return responder;
}

