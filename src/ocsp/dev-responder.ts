// The dev OCSP responder for the embedded dev PKI: signs for the dev root CA with a
// delegated responder certificate kept next to it (ocsp-responder.pem/.key, issued on first
// use), on 127.0.0.1:8889 (the AIA URL of the dev server certificate). Used by
// `certbound serve` without --cert and by `certbound ocsp-responder`.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadIssuer } from '../tls/cert-builder.js';
import { DEV_OCSP_PORT, devPkiPaths, ensureDevPki } from '../tls/dev-pki.js';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import { issueResponderCertificate, startDevOcspResponder, type DevOcspResponder } from './responder.js';
import type { OcspSettings } from './schedule.js';

/** Files of the delegated responder inside the dev PKI directory. */
export const DEV_OCSP_RESPONDER_FILES = Object.freeze({ cert: 'ocsp-responder.pem', key: 'ocsp-responder.key' });

/** Default validity of the dev responder's answers (minutes): DEFAULTS.devOcspValidityMinutes. */
export const DEV_OCSP_VALIDITY_MINUTES = DEFAULTS.devOcspValidityMinutes;

/** Environment variable that sets the validity (minutes) for `certbound serve`'s responder. */
export const DEV_OCSP_VALIDITY_ENV = 'CERTBOUND_DEV_OCSP_VALIDITY_MINUTES';

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

/** Starts the dev responder for the dev PKI in `dir`; rejects when the port is taken. */
export async function startDevPkiResponder(dir: string, options: DevPkiResponderOptions = {}): Promise<DevOcspResponder> {
  const paths = devPkiPaths(dir);
  const root = await loadIssuer(readFileSync(paths.rootCa, 'utf8'), readFileSync(paths.rootCaKey, 'utf8'));
  const certPath = join(dir, DEV_OCSP_RESPONDER_FILES.cert);
  const keyPath = join(dir, DEV_OCSP_RESPONDER_FILES.key);
  let responder;
  const usable = existsSync(certPath) && existsSync(keyPath) && (() => {
    try {
      const c = new X509Certificate(readFileSync(certPath));
      return new Date(c.validTo).getTime() > Date.now() + 86400_000 && c.checkIssued(new X509Certificate(root.der));
    } catch {
      return false;
    }
  })();
  if (usable) {
    responder = await loadIssuer(readFileSync(certPath, 'utf8'), readFileSync(keyPath, 'utf8'));
  } else {
    responder = await issueResponderCertificate(root);
    writeFileSync(certPath, responder.pem, { mode: 0o644 });
    writeFileSync(keyPath, responder.keyPem, { mode: 0o600 });
  }
  return startDevOcspResponder({
    issuer: root,
    responder,
    port: options.port ?? DEV_OCSP_PORT,
    host: options.host ?? DEFAULTS.devOcspHost,
    validityMinutes: options.validityMinutes ?? DEV_OCSP_VALIDITY_MINUTES,
    ...(options.revoked ? { revoked: options.revoked } : {}),
  });
}

/** Validity (minutes) from CERTBOUND_DEV_OCSP_VALIDITY_MINUTES, else the default. */
export function validityFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[DEV_OCSP_VALIDITY_ENV];
  if (raw === undefined || raw === '') return DEV_OCSP_VALIDITY_MINUTES;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new CertboundError('CB_ERR_INVALID_OPTION', [DEV_OCSP_VALIDITY_ENV, `expected minutes > 0, got ${JSON.stringify(raw)}`]);
  return n;
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
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['(command line)', (err as Error).message]);
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
  }).catch((err: NodeJS.ErrnoException) => {
    throw new CertboundError('CB_ERR_LISTEN', [values.host ?? DEFAULTS.devOcspHost, port ?? DEV_OCSP_PORT, err.code ?? err.message], { cause: err });
  });
  console.log(`certbound: dev OCSP responder for ${paths.rootCa} on ${responder.url} (answers valid ${validityMinutes ?? DEV_OCSP_VALIDITY_MINUTES} min)`);
  return responder;
}

/**
 * Stapler settings for the dev responder's validity. The defaults (600 s minimum validity,
 * 120 s / 60 s around NextUpdate) assume responses valid for days; for a responder set to a
 * few minutes (to watch the schedule) they are scaled down so that a staple is served and
 * refreshed before it lapses. At 30 minutes and more the defaults apply unchanged.
 */
export function devStaplingSettings(validityMinutes: number): Partial<OcspSettings> {
  const v = validityMinutes * 60;
  if (v >= 30 * 60) return {};
  return {
    SrvOcspRespMinValiditySeconds: Math.max(1, Math.floor(v / 6)),
    SrvOcspRespMaxBeforeNextUpdateSeconds: Math.max(1, Math.floor(v / 2)),
    SrvOcspRespMinBeforeNextUpdateSeconds: Math.max(1, Math.floor(v / 12)),
    SrvOcspRespMinAfterNextUpdateSeconds: Math.max(1, Math.floor(v / 24)),
  };
}
