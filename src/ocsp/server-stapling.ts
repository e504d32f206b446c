// Stapling for createServer, the plugin's `ocsp` option and `certbound serve`: finds the issuer
// of each server certificate (in its chain, the `issuer` option or the CAs), keeps its staple
// with a stapler attached to the server's TLS listeners, and reports per certificate whether a
// staple is served and, when not, why (a stable reason code: GET /connection, the page, the log).
import { X509Certificate } from 'node:crypto';
import { access, lstat, mkdir, stat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { CertboundError } from '../errors.js';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { pemBlocks } from '../tls/pem.js';
import { StapleCache } from './staple-cache.js';
import type { StapleReason } from './handle.js';
import { checkOcspUrl } from './ocsp-url.js';
import { createStapler, type OcspStapler, type StaplerOptions } from './stapler.js';

type Pem = string | Buffer;

/** The `ocsp` option of createServer and of the plugin. */
export interface ServerOcspOptions extends Omit<StaplerOptions, 'logger'> {
  /** PEM of the server certificate's issuer, when neither `cert` nor `ca` holds it. */
  issuer?: Pem;
}

/**
 * Why no staple is served for a certificate (stable codes, docs/ocsp.md):
 * `off` (stapling turned off), `no-ocsp-url` (no OCSP URL in the AIA and no override),
 * `no-issuer` (the issuer is not in the chain, `ocsp.issuer` or `ca`), `pending` (no retrieval
 * finished yet), or the reason of the last refused or failed update (`fetch-refused`,
 * `fetch-timeout`, `shorter-than-min-validity`, `cert-revoked`, `cert-unknown`, …), or
 * `not-a-stapled-certificate` (GET /connection: the certificate this connection was served is not
 * one the stapler holds, e.g. it predates a reload — never another certificate's summary).
 */
export type StapleSummaryReason = StapleReason | 'off' | 'no-ocsp-url' | 'no-issuer' | 'not-a-stapled-certificate';

/** What GET /connection shows under `ocsp`, and `app.ocspStaple()` returns. */
export interface OcspStapleSummary {
  /** 'stapled': a response is handed to handshakes that ask (status_request); 'not-stapled': see `reason`; 'off': stapling is turned off. */
  state: 'stapled' | 'not-stapled' | 'off';
  /** A response is stapled right now (state 'stapled'). */
  stapled: boolean;
  /** Why nothing is stapled, or null while a response is stapled. */
  reason: StapleSummaryReason | null;
  /** Status in the last verified response: 'good', 'revoked', 'unknown', or null before any. */
  certStatus: 'good' | 'revoked' | 'unknown' | null;
  thisUpdate: string | null;
  nextUpdate: string | null;
  /** When the next retrieval is planned. */
  nextRefresh: string | null;
  /** The responder URL (the certificate's AIA, or the `url` override); null when there is none or stapling is off. */
  url: string | null;
  /** SHA-256 (hex) of the certificate's DER; null when stapling is off. */
  fingerprint: string | null;
  /** Serial number (hex) of the certificate; null when stapling is off. */
  serial: string | null;
}

/** The summary when stapling is off (`--ocsp off`, `ocsp: false`). */
export const OCSP_OFF_SUMMARY: OcspStapleSummary = Object.freeze({
  state: 'off', stapled: false, reason: 'off', certStatus: null, thisUpdate: null, nextUpdate: null, nextRefresh: null, url: null, fingerprint: null, serial: null,
});

export interface ServerStapling {
  readonly stapler: OcspStapler;
  attach(server: TlsServer): void;
  /**
   * Opens a handle per certificate (first retrieval done, or persisted response reloaded) and
   * logs one summary line per certificate. Rejects only with CB_ERR_OCSP_CACHE, when `cacheDir`
   * cannot be created or written; an OCSP failure is logged and shows in the summary.
   */
  start(): Promise<void>;
  /** The summary of the certificate with this SHA-256 fingerprint (hex), or of the first certificate. */
  summary(fingerprint?: string): OcspStapleSummary;
  /** One summary per certificate, in the order given. */
  summaries(): OcspStapleSummary[];
  /**
   * Moves stapling to a new set of server certificates (a reload): opens a handle for each new
   * one (first retrieval done, as at start; one kept already is not fetched again), then the
   * summaries describe the new set. Staples are looked up by the certificate each handshake
   * serves, so a staple for an old certificate is never served for a new one. The old handles
   * stay (a cluster worker that failed the reload still serves them) until retire().
   */
  moveTo(certs: readonly Pem[], ca: Pem[]): Promise<void>;
  /** Stops keeping a staple for every certificate not in the current set. */
  retire(): void;
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
    // A symbolic link is not followed (a planted link would have staples written where it points).
    if ((await lstat(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err; }))?.isSymbolicLink()) {
      throw Object.assign(new Error('it is a symbolic link, which is not followed: remove it or give the directory it names'), { code: 'ELOOP-LINK' });
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (!(await stat(dir)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    await access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EEXIST' || e.code === 'ENOTDIR' ? `a file that is not a directory is in the way (${e.code})` : e.code === 'ELOOP-LINK' ? e.message : e.code ?? e.message;
    throw new CertboundError('CB_ERR_OCSP_CACHE', [dir, why], { cause: err });
  }
}

interface CertSlot {
  readonly fingerprint: string;
  readonly serial: string;
  readonly leafDer: Buffer;
  /** Set when start() found no handle to open for it. */
  skipped?: 'no-ocsp-url' | 'no-issuer';
}

/** Stapling for the server certificates `certs` (each PEM: leaf first, then optionally its chain). */
export function createServerStapling(input: { certs: readonly Pem[]; ca: Pem[]; options: ServerOcspOptions; logger: Logger }): ServerStapling {
  const { issuer, ...staplerOptions } = input.options;
  if (staplerOptions.url !== undefined) checkOcspUrl(staplerOptions.url, 'ocsp.url');
  const stapler = createStapler({ ...staplerOptions, logger: input.logger });
  const log = input.logger.child({ component: 'ocsp' });
  const slotsOf = (certs: readonly Pem[]): (CertSlot & { readonly pem: Pem })[] => certs.flatMap((pem) => {
    const der = pemBlocks(pem.toString(), 'CERTIFICATE')[0];
    if (!der) return [];
    return [{ fingerprint: StapleCache.fingerprint(der), serial: new X509Certificate(der).serialNumber.toLowerCase(), leafDer: der, pem }];
  });
  // The certificates served now (a reload replaces them) and every leaf a handle was opened for.
  let slots = slotsOf(input.certs);
  let ca = input.ca;
  const kept = new Map<string, Buffer>();
  const keep = async (slot: CertSlot & { readonly pem: Pem }) => {
    const chain = issuerChain(slot.pem, [...(issuer ? [issuer] : []), ...ca]);
    if (!chain) { slot.skipped = 'no-issuer'; return; }
    kept.set(slot.fingerprint, slot.leafDer);
    const state = await stapler.add(chain).catch((err: unknown) => {
      log.warn({ event: 'ocsp-skip', reason: 'no-issuer', fingerprint: slot.fingerprint, err: (err as Error).message }, 'OCSP stapling off for a certificate: its chain is not leaf + issuer');
      slot.skipped = 'no-issuer';
      return null;
    });
    if (state === undefined) slot.skipped = 'no-ocsp-url';
  };
  const logSummaries = (list: readonly CertSlot[]) => {
    for (const s of list.map(slotSummary)) {
      const line = { event: 'ocsp-summary', state: s.state, reason: s.reason, fingerprint: s.fingerprint, serial: s.serial, url: s.url, certStatus: s.certStatus, nextUpdate: s.nextUpdate };
      if (s.stapled) log.info(line, `OCSP staple served until ${s.nextUpdate ?? '?'}`);
      else if (s.reason === 'no-ocsp-url') log.info(line, 'OCSP: nothing to staple (the certificate has no OCSP URL; --ocsp-url overrides)');
      else log.warn(line, `OCSP: nothing stapled (${s.reason ?? 'unknown'})`);
    }
  };
  const slotSummary = (slot: CertSlot): OcspStapleSummary => {
    const s = stapler.handleFor(slot.leafDer)?.state();
    if (!s) {
      return { state: 'not-stapled', stapled: false, reason: slot.skipped ?? 'pending', certStatus: null, thisUpdate: null, nextUpdate: null, nextRefresh: null, url: null, fingerprint: slot.fingerprint, serial: slot.serial };
    }
    return {
      state: s.stapled ? 'stapled' : 'not-stapled', stapled: s.stapled, reason: s.reason,
      certStatus: s.certStatus, thisUpdate: s.thisUpdate, nextUpdate: s.nextUpdate, nextRefresh: s.nextRefresh, url: s.url, fingerprint: s.fingerprint, serial: slot.serial,
    };
  };
  let started: Promise<void> | undefined;
  return {
    stapler,
    attach: (server) => { stapler.attach(server); },
    start() {
      started ??= (async () => {
        if (staplerOptions.cacheDir !== undefined && staplerOptions.storage === undefined) await prepareCacheDir(staplerOptions.cacheDir);
        await Promise.all(slots.map(keep));
        // One line per certificate at start-up: what is stapled, or why not.
        logSummaries(slots);
      })();
      return started;
    },
    summary(fingerprint) {
      const slot = (fingerprint ? slots.find((s) => s.fingerprint === fingerprint) : undefined) ?? slots[0];
      return slot ? slotSummary(slot) : { ...OCSP_OFF_SUMMARY, state: 'not-stapled', reason: 'no-issuer' };
    },
    summaries: () => slots.map(slotSummary),
    async moveTo(certs, nextCa) {
      const before = new Map(slots.map((x) => [x.fingerprint, x]));
      const next = slotsOf(certs).map((x) => {
        const same = before.get(x.fingerprint);
        return same?.skipped !== undefined ? Object.assign(x, { skipped: same.skipped }) : x;
      });
      ca = nextCa;
      if (started) {
        await started.catch(() => {});
        const fresh = next.filter((x) => !kept.has(x.fingerprint));
        await Promise.all(fresh.map(keep));
        logSummaries(fresh);
      }
      slots = next;
    },
    retire() {
      const now = new Set(slots.map((x) => x.fingerprint));
      for (const [fingerprint, der] of kept) {
        if (now.has(fingerprint)) continue;
        stapler.remove(der);
        kept.delete(fingerprint);
      }
    },
    close: () => stapler.close(),
  };
}

export { checkOcspUrl };
