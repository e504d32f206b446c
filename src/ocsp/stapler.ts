// The stapler: one server OCSP response handle per certificate, answered from memory on the
// tls.Server 'OCSPRequest' event (no network I/O on the handshake path), with persisted
// responses, one log line per update, events, and counters readable as an object.
import { EventEmitter } from 'node:events';
import { channel } from 'node:diagnostics_channel';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import {
  closeServerOcspResponse, openServerOcspResponse, OcspHandleStatus, CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG,
  type ChainInput, type OcspStapleState, type OcspUpdate, type OpenServerOcspResponseOptions, type ServerOcspResponseHandle,
} from './handle.js';
import { StapleCache } from './staple-cache.js';
import { FileStapleStorage, type StapleStorage } from './storage.js';
import { fetchOcsp, limitConcurrency, type OcspFetcher } from './fetch.js';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';

/** Diagnostics channel that receives every OcspUpdate. */
export const OCSP_UPDATE_CHANNEL = 'certbound:ocsp:update';
const updateChannel = channel(OCSP_UPDATE_CHANNEL);

export interface StaplerOptions extends Omit<OpenServerOcspResponseOptions, 'storage' | 'onUpdate'> {
  /** Directory where verified responses are persisted (one file per certificate). */
  cacheDir?: string;
  /** A storage of your own (wins over cacheDir). */
  storage?: StapleStorage;
  /** Open without waiting for the first retrieval (CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG). Default: false. */
  async?: boolean;
  /** Retrievals in flight at once across all certificates of this stapler. Default: 4. */
  maxConcurrentRetrievals?: number;
}

/** Counters since the stapler was created. */
export interface OcspMetrics {
  /** Certificates with an open handle. */
  certificates: number;
  /** Certificates whose response is handed out right now. */
  stapledNow: number;
  /** Certificates skipped because they have no OCSP URL (quiet, normal). */
  noOcspUrl: number;
  /** Updates by outcome. */
  updates: number;
  stapled: number;
  loaded: number;
  /** Persisted responses refused at load and deleted (their reasons are in byReason too). */
  discarded: number;
  failed: number;
  refused: number;
  /** Responses that said 'revoked' (never stapled). */
  revoked: number;
  /** Discarded, failed or refused updates by reason code. */
  byReason: Record<string, number>;
  /** Handshakes where the client asked for a staple, with and without one given. */
  handshakesStapled: number;
  handshakesUnstapled: number;
}

/**
 * Keeps staples for any number of certificates (several certificates, SNI contexts) and
 * answers 'OCSPRequest' on the servers it is attached to. Events: 'update' for every update,
 * 'revoked' when a responder says a certificate is revoked.
 */
export class OcspStapler extends EventEmitter<{ update: [OcspUpdate]; revoked: [OcspUpdate] }> {
  readonly #cache = new StapleCache();
  readonly #options: StaplerOptions;
  readonly #storage: StapleStorage | undefined;
  readonly #log: Logger | undefined;
  readonly #servers = new Set<TlsServer>();
  readonly #metrics: OcspMetrics = {
    certificates: 0, stapledNow: 0, noOcspUrl: 0, updates: 0, stapled: 0, loaded: 0, discarded: 0, failed: 0, refused: 0, revoked: 0, byReason: {}, handshakesStapled: 0, handshakesUnstapled: 0,
  };
  readonly #onOcspRequest = (cert: Buffer | null | undefined, _issuer: Buffer | null, cb: (err: Error | null, resp: Buffer | null) => void): void => {
    // A context without a certificate has nothing to staple (and hashing nothing would throw in Node's handshake code).
    const der = cert ? this.#cache.stapleFor(cert) : undefined;
    if (der) this.#metrics.handshakesStapled++;
    else this.#metrics.handshakesUnstapled++;
    cb(null, der ?? null);
  };
  #closed = false;
  readonly #fetcher: OcspFetcher;

  constructor(options: StaplerOptions = {}) {
    super();
    this.#options = options;
    this.#fetcher = limitConcurrency(options.fetcher ?? fetchOcsp, options.maxConcurrentRetrievals ?? DEFAULTS.ocspMaxConcurrentRetrievals);
    this.#storage = options.storage ?? (options.cacheDir ? new FileStapleStorage(options.cacheDir) : undefined);
    this.#log = options.logger?.child({ component: 'ocsp' });
  }

  /**
   * Starts keeping a staple for `chain` (leaf first, then its issuer). Resolves after the first
   * retrieval (or at once with `async`), with the staple state; resolves undefined when the
   * certificate has no OCSP URL, which is a normal case. Rejects with CB_ERR_OCSP_CHAIN when
   * the chain is not leaf + issuer, CB_ERR_OCSP_CLOSED after close().
   */
  async add(chain: readonly ChainInput[] | ChainInput): Promise<OcspStapleState | undefined> {
    if (this.#closed) throw new CertboundError('CB_ERR_OCSP_CLOSED');
    const { status, handle } = await openServerOcspResponse(chain, this.#options.async ? CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG : 0, {
      ...this.#options,
      fetcher: this.#fetcher,
      ...(this.#storage ? { storage: this.#storage } : {}),
      ...(this.#log ? { logger: this.#log } : {}),
      onUpdate: (u) => this.#onUpdate(u),
    });
    if (status === OcspHandleStatus.CRYPT_E_NOT_IN_REVOCATION_DATABASE) {
      this.#metrics.noOcspUrl++;
      this.#log?.debug({ event: 'ocsp-skip', reason: 'no-ocsp-url' }, 'certificate has no OCSP URL: nothing to staple');
      return undefined;
    }
    if (status !== OcspHandleStatus.NO_ERROR || !handle) throw new CertboundError('CB_ERR_OCSP_CHAIN', [`status ${status}`]);
    if (this.#closed) { closeServerOcspResponse(handle); throw new CertboundError('CB_ERR_OCSP_CLOSED'); }
    const old = this.#cache.get(handle.leafDer);
    if (old) closeServerOcspResponse(old);
    this.#cache.set(handle);
    return handle.state();
  }

  /** Stops keeping a staple for this certificate (DER), e.g. the one a reload replaced. */
  remove(certDer: Uint8Array): void {
    const handle = this.#cache.get(certDer);
    if (!handle) return;
    this.#cache.delete(handle.fingerprint);
    closeServerOcspResponse(handle);
  }

  /** Answers 'OCSPRequest' on `server` from memory. */
  attach(server: TlsServer): this {
    if (!this.#servers.has(server)) {
      this.#servers.add(server);
      server.on('OCSPRequest', this.#onOcspRequest);
    }
    return this;
  }

  detach(server: TlsServer): this {
    if (this.#servers.delete(server)) server.off('OCSPRequest', this.#onOcspRequest);
    return this;
  }

  /** The response Node would staple for this DER certificate now, if any. */
  stapleFor(certDer: Uint8Array): Buffer | undefined {
    return this.#cache.stapleFor(certDer);
  }

  /** The handle of a certificate (DER), for the handle API. */
  handleFor(certDer: Uint8Array): ServerOcspResponseHandle | undefined {
    return this.#cache.get(certDer);
  }

  /** Staple state of every certificate. */
  states(): OcspStapleState[] {
    return this.#cache.handles().map((h) => h.state());
  }

  /** A copy of the counters. */
  metrics(): OcspMetrics {
    const handles = this.#cache.handles();
    return { ...this.#metrics, byReason: { ...this.#metrics.byReason }, certificates: handles.length, stapledNow: handles.filter((h) => h.servable()).length };
  }

  /** Detaches from every server, closes every handle, waits for retrievals in flight. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#servers]) this.detach(s);
    const handles = this.#cache.handles();
    this.#cache.clear();
    for (const h of handles) closeServerOcspResponse(h);
    await Promise.all(handles.map((h) => h.idle()));
  }

  #onUpdate(u: OcspUpdate): void {
    const m = this.#metrics;
    m.updates++;
    m[u.outcome]++;
    if (u.reason) m.byReason[u.reason] = (m.byReason[u.reason] ?? 0) + 1;
    if (u.reason === 'cert-revoked') m.revoked++;
    if (updateChannel.hasSubscribers) updateChannel.publish(u);
    this.emit('update', u);
    if (u.reason === 'cert-revoked') this.emit('revoked', u);
  }
}

/** A stapler; attach it to servers with `attach(server)` and add certificates with `add(chain)`. */
export function createStapler(options: StaplerOptions = {}): OcspStapler {
  return new OcspStapler(options);
}
