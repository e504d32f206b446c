// Reloading a running server's TLS material (every server certificate, client CAs, CRLs) without a
// restart: the new material is checked as at start-up and more (a certificate must be valid
// now), and refused as a whole with CB_ERR_RELOAD, the old material staying in place, when any
// part is wrong. createServer's reload() puts checked material on every listener
// (src/server/listeners.ts ListenerList) and into certbound's own trust state.
import { channel } from 'node:diagnostics_channel';
import { CertboundError, isCertboundError } from '../errors.js';
import { parseCertificates } from '../tls/pem.js';
import { crlsOf } from '../tls/secure-context.js';
import type { ServerCertificate, ServerCertificateOptions } from '../tls/server-material.js';
import type { ClientAuthMode } from '../tls/client-auth.js';
import { rootCertificates, type Server as TlsServer } from 'node:tls';
import { anchorsFromPem } from '../tls/peer-chain.js';
import { trustMaterial } from '../tls/trust-material.js';
import type { ConnectionRegistry } from './registry.js';
import { contextOf, sharedContextOf } from './listeners.js';

type Pem = string | Buffer;

/** What `CertboundServer.reload()` takes: the same shapes as createServer's options. */
export interface ReloadInput {
  /** Server certificate PEM, leaf first, optionally followed by its chain (with `key`; served to clients without SNI). */
  cert?: Pem;
  /** Private key PEM of `cert` (decrypted with createServer's `tls.passphrase`, if one was given). */
  key?: Pem;
  /**
   * Every other server certificate (as createServer's `certificates`). A reload replaces ALL
   * server certificates: one left out is no longer served. At least `cert` + `key` or one entry.
   */
  certificates?: ServerCertificateOptions[];
  /** Trusted client CAs and intermediates. Left out: the ones in force stay. Empty: Node's bundled roots, as at start without `ca`. */
  ca?: Pem | Pem[];
  /** CRLs for the TLS layer. Left out: the ones in force stay. Empty: none. */
  crl?: Pem | Pem[];
  /**
   * CRLs for the revocation checker (createServer's `revocation.crls`), when the server built
   * its checker from options. Left out: the checker keeps its CRLs.
   */
  revocationCrls?: Pem[];
}

/** One server certificate a reload put in place. */
export interface ReloadedCertificate {
  readonly subject: string;
  /** SHA-256 fingerprint of the leaf, lowercase hex. */
  readonly sha256: string;
  readonly validTo: string;
  /** SNI names it answers. */
  readonly names: readonly string[];
}

/** What a reload put in place. */
export interface ReloadResult {
  /** The first server certificate (the leaf; the one clients without SNI get). */
  readonly subject: string;
  /** SHA-256 fingerprint of the first leaf, lowercase hex. */
  readonly sha256: string;
  readonly validTo: string;
  /** Every server certificate now served, in order. */
  readonly certificates: readonly ReloadedCertificate[];
  /** TLS listeners that now serve them (2 with onDemandHosts: main and TLS 1.2 twin). */
  readonly listeners: number;
  /** CA certificates and CRLs in force. */
  readonly caCertificates: number;
  readonly crls: number;
  /** When the swap happened (ISO 8601). */
  readonly reloadedAt: string;
}

/** Published on the diagnostics channel and handed to onReload listeners. */
export type ReloadEvent =
  | { readonly ok: true; readonly result: ReloadResult; readonly certs: readonly string[]; readonly ca: readonly Pem[]; readonly crl: readonly string[] }
  | { readonly ok: false; readonly error: CertboundError };

/** Diagnostics channel of every reload, good or refused (src/server/reload.ts ReloadEvent). */
export const RELOAD_CHANNEL = 'certbound:server:reload';
export const reloadChannel = channel(RELOAD_CHANNEL);

/** Material that passed every check, in the shapes the listeners take. */
export interface CheckedMaterial {
  readonly certificates: readonly ServerCertificate[];
  readonly ca: Pem[];
  readonly crl: string[];
}

const asList = (v: Pem | Pem[] | undefined): Pem[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** `err` as CB_ERR_RELOAD, keeping the code that says why in the message and as `cause`. */
export function reloadError(err: unknown): CertboundError {
  if (isCertboundError(err, 'CB_ERR_RELOAD')) return err;
  const why = isCertboundError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  return new CertboundError('CB_ERR_RELOAD', [why], { cause: err });
}

/** The one `reload failed` line (pino and fastify loggers fit): code CB_ERR_RELOAD, and the code of the cause. */
export function logReloadFailure(logger: { error(obj: object, msg: string): void }, err: unknown): CertboundError {
  const error = reloadError(err);
  logger.error({ event: 'reload', code: error.code, cause: (error.cause as { code?: string } | undefined)?.code ?? null }, `reload failed: ${error.message}`);
  return error;
}

/**
 * The checks a reload adds to those of start-up (the certificates come checked from
 * src/tls/server-material.ts, as at start): every certificate must be valid at `now` (a server
 * must not swap a working certificate for an expired one), the CAs and CRLs parse, and
 * `clientAuth` gets the CAs it needs. Throws CB_ERR_RELOAD with the cause's code.
 */
export function checkReloadMaterial(certificates: readonly ServerCertificate[], trust: { ca?: Pem | Pem[]; crl?: Pem | Pem[] }, now: number, clientAuth?: ClientAuthMode): CheckedMaterial {
  try {
    if (certificates.length === 0) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['reload()', 'needs { cert, key } or certificates']);
    for (const { leaf, where } of certificates) {
      const who = `${leaf.subject.replace(/\n/g, ', ')} (${where})`;
      if (Date.parse(leaf.validTo) < now) throw new CertboundError('CB_ERR_RELOAD', [`the new certificate ${who} expired on ${new Date(leaf.validTo).toISOString()}`]);
      if (Date.parse(leaf.validFrom) > now) throw new CertboundError('CB_ERR_RELOAD', [`the new certificate ${who} is not valid before ${new Date(leaf.validFrom).toISOString()}`]);
    }
    const ca = asList(trust.ca);
    if (clientAuth !== undefined && clientAuth !== 'none' && clientAuth !== 'accept-untrusted' && ca.length === 0) {
      throw new CertboundError('CB_ERR_INVALID_OPTION', ['ca', `client-auth ${clientAuth} needs the trusted client CAs`]);
    }
    ca.forEach((pem, i) => parseCertificates(pem.toString(), 'CA', ca.length > 1 ? `(reload ca, entry ${i})` : '(reload ca)'));
    const crls = asList(trust.crl);
    const crl = crls.flatMap((pem, i) => crlsOf(pem, crls.length > 1 ? `(reload crl, entry ${i})` : '(reload crl)'));
    return { certificates, ca, crl };
  } catch (err) {
    throw reloadError(err);
  }
}

/** What ReloadResult says of each certificate. */
export function describeCertificate(c: ServerCertificate): ReloadedCertificate {
  return Object.freeze({
    subject: c.leaf.subject.replace(/\n/g, ', '),
    sha256: c.leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
    validTo: new Date(c.leaf.validTo).toISOString(),
    names: c.names,
  });
}

/**
 * For the plugin on a TLS server certbound did not build: after you gave the server new
 * material with `server.setSecureContext({ …, ca, crl })`, tell certbound's registry
 * (`app.certbound.registry`) the same CAs and CRLs, so that chains are captured against them
 * and a later handshake on a connection opened before (an on-demand renegotiation) is judged
 * against them too (docs/deployment.md#reload-without-a-restart). Call it right after
 * setSecureContext. Throws CB_ERR_RELOAD when a CA or CRL does not parse (nothing changes then).
 */
export async function reloadTrust(registry: ConnectionRegistry, server: TlsServer, trust: { ca?: Pem | Pem[]; crl?: Pem | Pem[] }): Promise<void> {
  let ca: Pem[];
  let crl: string[];
  try {
    ca = asList(trust.ca);
    ca.forEach((pem, i) => parseCertificates(pem.toString(), 'CA', ca.length > 1 ? `(reload ca, entry ${i})` : '(reload ca)'));
    const crls = asList(trust.crl);
    crl = crls.flatMap((pem, i) => crlsOf(pem, crls.length > 1 ? `(reload crl, entry ${i})` : '(reload crl)'));
  } catch (err) {
    throw reloadError(err);
  }
  const anchors = anchorsFromPem(ca.length > 0 ? ca : rootCertificates);
  const material = await trustMaterial(anchors, crl);
  const current = sharedContextOf(server);
  registry.replacePolicy({
    anchors,
    // The material resumed sessions are judged by (src/tls/session-chains.ts): without it they
    // kept the CAs and CRLs of start-up, and a revoked client resumed as authorized.
    material,
    reloaded: {
      material,
      isCurrent: (socket) => current !== undefined && contextOf(socket) === current,
    },
  });
}
