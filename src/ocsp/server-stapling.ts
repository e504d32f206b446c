// Stapling for createServer: finds the issuer of the server certificate (in the cert chain,
// the `issuer` option or the CAs), keeps its staple with a stapler attached to the server's
// TLS listeners, and reports the staple state for GET /connection. A certificate without an
// OCSP URL, or whose issuer is not at hand, is logged once and served without a staple.
import { X509Certificate } from 'node:crypto';
import { access, mkdir, stat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { CertboundError } from '../errors.js';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { pemBlocks } from '../tls/pem.js';
import { createStapler, type OcspStapler, type StaplerOptions } from './stapler.js';

type Pem = string | Buffer;

/** The `ocsp` option of createServer. */
export interface ServerOcspOptions extends Omit<StaplerOptions, 'logger'> {
  /** PEM of the server certificate's issuer, when neither `cert` nor `ca` holds it. */
  issuer?: Pem;
}

/** What GET /connection shows under `ocsp`. */
export interface OcspStapleSummary {
  /** A response is stapled to handshakes that ask for one (status_request) right now. */
  stapled: boolean;
  /** Status in the last verified response: 'good', 'revoked', 'unknown', or null before any. */
  certStatus: 'good' | 'revoked' | 'unknown' | null;
  thisUpdate: string | null;
  nextUpdate: string | null;
  /** When the next retrieval is planned. */
  nextRefresh: string | null;
  /** The responder URL from the certificate's AIA. */
  url: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The server certificate's staple state, or null when stapling is off or has nothing to do. */
    ocspStaple(): OcspStapleSummary | null;
  }
}

export interface ServerStapling {
  readonly stapler: OcspStapler;
  attach(server: TlsServer): void;
  /**
   * Opens the handle (first retrieval done, or persisted response reloaded). Rejects only with
   * CB_ERR_OCSP_CACHE, when `cacheDir` cannot be created or written; an OCSP failure is logged.
   */
  start(): Promise<void>;
  summary(): OcspStapleSummary | null;
  /**
   * Moves stapling to a new server certificate (a reload): keeps a staple for it (first
   * retrieval done, as at start), then stops keeping the old one. Staples are looked up by the
   * certificate each handshake serves, so the old staple is never served for the new one.
   * Call `retire()` with the old certificate once the listeners serve the new one.
   */
  moveTo(cert: Pem, ca: Pem[]): Promise<void>;
  /** Stops keeping a staple for `cert` (PEM, leaf first) unless it is the current one. */
  retire(cert: Pem): void;
  close(): Promise<void>;
}

function issuerChain(cert: Pem, extra: Pem[]): Buffer[] | undefined {
  const ders = pemBlocks(cert.toString(), 'CERTIFICATE');
  const leafDer = ders[0];
  if (!leafDer) return undefined;
  const leaf = new X509Certificate(leafDer);
  const candidates = [...ders.slice(1), ...extra.flatMap((p) => pemBlocks(p.toString(), 'CERTIFICATE'))];
  for (const der of candidates) {
    try {
      const c = new X509Certificate(der);
      if (leaf.checkIssued(c) && leaf.verify(c.publicKey)) return [leafDer, der];
    } catch {
      // Not a certificate we can use as issuer: keep looking.
    }
  }
  return undefined;
}

/**
 * Creates the OCSP cache directory, or checks the one there can be written: a cache that
 * cannot be written would only show up in a warning at the first response, and as a restart
 * that staples nothing while the responder is down.
 */
async function prepareCacheDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (!(await stat(dir)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    await access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EEXIST' || e.code === 'ENOTDIR' ? `a file that is not a directory is in the way (${e.code})` : e.code ?? e.message;
    throw new CertboundError('CB_ERR_OCSP_CACHE', [dir, why], { cause: err });
  }
}

/** Stapling for one server certificate. */
export function createServerStapling(input: { cert: Pem; ca: Pem[]; options: ServerOcspOptions; logger: Logger }): ServerStapling {
  const { issuer, ...staplerOptions } = input.options;
  const stapler = createStapler({ ...staplerOptions, logger: input.logger });
  const log = input.logger.child({ component: 'ocsp' });
  let started: Promise<void> | undefined;
  let current = { cert: input.cert, ca: input.ca };
  const keep = async (cert: Pem, ca: Pem[]) => {
    const chain = issuerChain(cert, [...(issuer ? [issuer] : []), ...ca]);
    if (!chain) {
      log.warn({ event: 'ocsp-skip', reason: 'no-issuer' }, 'OCSP stapling off: the issuer of the server certificate is not in cert, ocsp.issuer or ca');
      return;
    }
    const state = await stapler.add(chain).catch((err: unknown) => {
      log.warn({ event: 'ocsp-skip', reason: 'bad-chain', err: (err as Error).message }, 'OCSP stapling off');
      return undefined;
    });
    if (state === undefined) log.info({ event: 'ocsp-skip', reason: 'no-ocsp-url' }, 'the server certificate has no OCSP URL: nothing to staple');
  };
  const leafOf = (cert: Pem) => pemBlocks(cert.toString(), 'CERTIFICATE')[0];
  return {
    stapler,
    attach: (server) => { stapler.attach(server); },
    start() {
      started ??= (async () => {
        if (staplerOptions.cacheDir !== undefined && staplerOptions.storage === undefined) await prepareCacheDir(staplerOptions.cacheDir);
        await keep(current.cert, current.ca);
      })();
      return started;
    },
    async moveTo(cert, ca) {
      await started;
      current = { cert, ca };
      await keep(cert, ca);
    },
    retire(cert) {
      const old = leafOf(cert);
      const now = leafOf(current.cert);
      if (old && !(now && old.equals(now))) stapler.remove(old);
    },
    summary() {
      const leaf = leafOf(current.cert);
      const s = leaf ? stapler.handleFor(leaf)?.state() : undefined;
      return s ? { stapled: s.stapled, certStatus: s.certStatus, thisUpdate: s.thisUpdate, nextUpdate: s.nextUpdate, nextRefresh: s.nextRefresh, url: s.url } : null;
    },
    close: () => stapler.close(),
  };
}
