// The server OCSP response handle, shaped like wincrypt's CertOpenServerOcspResponse family:
// open → handle (with a background prefetch on the seed's schedule), get → a time-valid
// response context, addRef / close, and the context addRef / free pair. Statuses are
// returned, never thrown. JavaScript cannot block: where Windows blocks "before open
// returns" (flags 0), the returned Promise resolves only after the first retrieval.
import { createHash, X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { pemBlocks } from '../tls/pem.js';
import { pkijs } from '../tls/pkijs-engine.js';
import { buildOcspRequest, ocspUrlOf, parseCertificate, serialHex, subjectName } from './request.js';
import { fetchOcsp, type OcspFetcher } from './fetch.js';
import { stapleRefusal, verifyOcspResponse, type CertStatusName, type OcspRefusal, type VerifiedOcspResponse } from './validate.js';
import {
  nextPrefetch, resolveRetryPolicy, resolveSettings, retryDelay, validLongEnough,
  type OcspSettings, type PrefetchRule, type RetryPolicy,
} from './schedule.js';
import type { StapleStorage, StoredStaple } from './storage.js';
import type { FleetDocuments, FleetLease } from '../fleet/fleet.js';
import { OcspHandleStatus, type OcspHandleStatusValue } from '../status.js';

/** dwFlags of CertOpenServerOcspResponse: return at once, without the initial retrieval. */
export const CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG = 0x1;

// What the handle functions return: the values are in src/status.ts (OcspHandleStatus).
export { OcspHandleStatus, type OcspHandleStatusValue };

/** Timer functions the scheduler uses; injected in tests. Returned refs may have unref(). */
export interface OcspTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(ref: unknown): void;
}

const realTimers: OcspTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (ref) => clearTimeout(ref as NodeJS.Timeout),
};

/** One line per update, same keys every time (null where a value does not apply). */
export interface OcspUpdate {
  readonly event: 'ocsp-update';
  /** The certificate's subject commonName. */
  readonly cert: string;
  readonly serial: string;
  /** SHA-256 of the certificate's DER, hex. */
  readonly fingerprint: string;
  readonly url: string;
  /**
   * stapled: a new good response serves; loaded: a persisted one was reloaded; discarded: a
   * persisted one was refused (file or check) and deleted; refused: a retrieved response
   * failed a check; failed: the retrieval itself failed.
   */
  readonly outcome: 'stapled' | 'loaded' | 'discarded' | 'refused' | 'failed';
  readonly reason: OcspRefusal | null;
  readonly detail: string | null;
  readonly certStatus: CertStatusName | null;
  readonly thisUpdate: string | null;
  readonly nextUpdate: string | null;
  /** When the next retrieval is planned (ISO time), and by which rule; null for 'discarded' (the open that follows decides). */
  readonly nextRefresh: string | null;
  readonly rule: PrefetchRule | 'retry' | null;
  /** Consecutive failed or refused retrievals so far. */
  readonly failures: number;
  readonly method: 'GET' | 'POST' | null;
  /** Where the response came from: the responder, the fleet (Redis, verified here), the persisted file; null when none came. */
  readonly source: 'responder' | 'fleet' | 'disk' | null;
  readonly durationMs: number;
  /** Whether a response is being served after this update. */
  readonly serving: boolean;
}

/** A snapshot of a handle's staple, for /connection, metrics and the CLI. */
export interface OcspStapleState {
  readonly cert: string;
  readonly serial: string;
  readonly fingerprint: string;
  readonly url: string;
  /** A response is handed out right now (valid for at least SrvOcspRespMinValiditySeconds). */
  readonly stapled: boolean;
  /** Status of the last verified response ('revoked' stays until a good one replaces it). */
  readonly certStatus: CertStatusName | null;
  readonly thisUpdate: string | null;
  readonly nextUpdate: string | null;
  readonly nextRefresh: string | null;
  readonly lastOutcome: OcspUpdate['outcome'] | null;
  readonly lastReason: OcspRefusal | null;
  readonly failures: number;
  /**
   * Why nothing is stapled right now; null while a response is stapled. The reason of the last
   * refused or failed update (`fetch-refused`, `cert-revoked`, `shorter-than-min-validity`, …),
   * `shorter-than-min-validity` when the held response has fallen below
   * SrvOcspRespMinValiditySeconds, `pending` before the first retrieval has finished.
   */
  readonly reason: StapleReason | null;
}

/** Why a handle staples nothing right now: a refusal reason of the last update, or `pending` before any. */
export type StapleReason = OcspRefusal | 'pending';

export interface OpenServerOcspResponseOptions {
  /** The seed's five settings; missing ones take wincrypt.h's defaults. */
  settings?: Partial<OcspSettings>;
  /** Backoff after failed or refused retrievals. */
  retry?: Partial<RetryPolicy>;
  /** Allowed clock skew for thisUpdate (ms). Default: 300000. */
  skewMs?: number;
  /** Clock (ms since the epoch). Default: Date.now. */
  now?: () => number;
  /** Timer functions. Default: the global ones (unref()ed). */
  timers?: OcspTimers;
  /** Retrieval function. Default: fetchOcsp (HTTP GET/POST). */
  fetcher?: OcspFetcher;
  /** 'auto' (default): GET for small requests (RFC 5019), else POST. */
  method?: 'auto' | 'GET' | 'POST';
  /**
   * The responder URL to ask instead of the one in the certificate's AIA (http: or https:).
   * A certificate without an AIA OCSP URL is then stapled too. Default: the AIA's.
   */
  url?: string;
  /** Persisted responses: loaded at open when still valid, written after each stapled update. */
  storage?: StapleStorage;
  /** Receives every update (also logged when `logger` is given). */
  onUpdate?: (update: OcspUpdate) => void;
  /**
   * Fleet mode (docs/fleet.md): a response another machine stored is taken (verified here exactly
   * as a retrieved one) when it is not yet due; otherwise one machine at a time retrieves, under
   * the fleet's lock, and stores what it verified. Redis unavailable: this handle retrieves alone.
   */
  fleet?: FleetDocuments;
  /** pino logger: one line per update (info stapled/loaded, warn discarded/refused/failed, error revoked). */
  logger?: Logger;
}

/**
 * CERT_SERVER_OCSP_RESPONSE_CONTEXT: the encoded response (pbEncodedOcspResponse /
 * cbEncodedOcspResponse). Reference-counted with addRef / free as on Windows.
 */
export interface ServerOcspResponseContext {
  readonly encodedOcspResponse: Buffer;
  readonly size: number;
}

const contextRefs = new WeakMap<ServerOcspResponseContext, number>();

/** A chain element: DER, PEM (one or more certificates), or an X509Certificate. */
export type ChainInput = Buffer | Uint8Array | string | X509Certificate;

function chainDers(chain: readonly ChainInput[] | ChainInput): Buffer[] {
  const list = Array.isArray(chain) ? chain : [chain as ChainInput];
  const out: Buffer[] = [];
  for (const c of list) {
    if (typeof c === 'string') out.push(...pemBlocks(c, 'CERTIFICATE'));
    else if (c instanceof X509Certificate) out.push(Buffer.from(c.raw));
    else out.push(Buffer.from(c));
  }
  return out;
}

/** The handle (HCERT_SERVER_OCSP_RESPONSE). Opaque: use the functions below. */
export class ServerOcspResponseHandle {
  readonly fingerprint: string;
  readonly leafDer: Buffer;
  readonly url: string;
  // Only DER is kept: parsed pkijs trees weigh tens of KiB, and they are needed only at a
  // retrieval (every few hours), so they are rebuilt then.
  readonly #issuerDer: Buffer;
  readonly #name: string;
  readonly #serial: string;
  readonly #settings: OcspSettings;
  readonly #retry: RetryPolicy;
  readonly #opts: OpenServerOcspResponseOptions;
  readonly #now: () => number;
  readonly #timers: OcspTimers;
  readonly #fetcher: OcspFetcher;
  #refs = 1;
  #closed = false;
  #current: VerifiedOcspResponse | undefined;
  #lastStatus: CertStatusName | null = null;
  #lastOutcome: OcspUpdate['outcome'] | null = null;
  #lastReason: OcspRefusal | null = null;
  #failures = 0;
  #timer: unknown;
  #nextAt: number | undefined;
  #running: Promise<void> | undefined;
  #abort: AbortController | undefined;
  #requestDer: Buffer | undefined;
  /** thisUpdate of the newest verified response that did not say good: no good response as old or older is taken after it. */
  #notGoodSince: number | undefined;

  /** @internal use openServerOcspResponse */
  constructor(leafDer: Buffer, issuerDer: Buffer, cert: pkijs.Certificate, url: string, options: OpenServerOcspResponseOptions) {
    this.leafDer = leafDer;
    this.fingerprint = createHash('sha256').update(leafDer).digest('hex');
    this.url = url;
    this.#issuerDer = issuerDer;
    this.#name = subjectName(cert);
    this.#serial = serialHex(cert);
    this.#settings = resolveSettings(options.settings);
    this.#retry = resolveRetryPolicy(options.retry);
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? realTimers;
    this.#fetcher = options.fetcher ?? fetchOcsp;
    // Fleet mode: a response another machine stored and announced is read now (verified as if
    // retrieved here), not only at this handle's next planned retrieval. At most one read a second,
    // and never a retrieval: the responder is asked on this handle's own schedule only.
    this.#stopAnnouncements = options.fleet?.onAnnounce((a) => {
      if (a.kind === 'staple' && a.id === this.fingerprint) this.#pull();
    });
  }

  readonly #stopAnnouncements: (() => void) | undefined;
  #pullAt = 0;
  #pullPending = false;

  #pull(): void {
    if (this.#closed || this.#pullPending) return;
    this.#pullPending = true;
    void (async () => {
      // An announcement during a retrieval is read after it (the retrieval may have read Redis before it came).
      if (this.#running) await this.#running.catch(() => {});
      const wait = Math.max(0, this.#pullAt + 1000 - this.#now());
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const ref = this.#timers.setTimeout(resolve, wait);
          (ref as { unref?: () => void } | undefined)?.unref?.();
        });
      }
      this.#pullPending = false;
      if (this.#closed) return;
      this.#pullAt = this.#now();
      await this.#run(true);
    })();
  }

  get closed(): boolean { return this.#closed; }

  #parsed(): { cert: pkijs.Certificate; issuer: pkijs.Certificate } {
    return { cert: parseCertificate(this.leafDer), issuer: parseCertificate(this.#issuerDer) };
  }
  get settings(): OcspSettings { return this.#settings; }

  /** @internal the response to hand out now, if one is time-valid for long enough. */
  servable(now = this.#now()): VerifiedOcspResponse | undefined {
    const c = this.#current;
    return c && !this.#closed && validLongEnough(now, c.nextUpdate.getTime(), this.#settings) ? c : undefined;
  }

  state(): OcspStapleState {
    const c = this.#current;
    const stapled = this.servable() !== undefined;
    const reason: StapleReason | null = stapled ? null
      // A held response that decayed below the minimum validity says so unless a later update failed for its own reason.
      : this.#lastReason ?? (c ? 'shorter-than-min-validity' : this.#lastOutcome === null ? 'pending' : null);
    return Object.freeze({
      cert: this.#name,
      serial: this.#serial,
      fingerprint: this.fingerprint,
      url: this.url,
      stapled,
      certStatus: this.#lastStatus,
      thisUpdate: c ? c.thisUpdate.toISOString() : null,
      nextUpdate: c ? c.nextUpdate.toISOString() : null,
      nextRefresh: this.#nextAt !== undefined ? new Date(this.#nextAt).toISOString() : null,
      lastOutcome: this.#lastOutcome,
      lastReason: this.#lastReason,
      failures: this.#failures,
      reason: reason ?? (stapled ? null : 'pending'),
    });
  }

  /**
   * @internal reloads a persisted response; true when one is kept. One that is refused (by the
   * storage: symlink, size, type, read error; or by any check a retrieved response passes) is
   * deleted and reported as a 'discarded' update with its reason.
   */
  async loadPersisted(): Promise<boolean> {
    const storage = this.#opts.storage;
    if (!storage) return false;
    const started = this.#now();
    let stored: StoredStaple | undefined;
    try {
      stored = await storage.load(this.fingerprint);
    } catch (err) {
      stored = { ok: false, reason: 'file-unreadable', detail: (err as Error)?.message ?? String(err) };
    }
    // A storage written against the older interface hands back the DER itself.
    if (Buffer.isBuffer(stored as unknown)) stored = { ok: true, der: stored as unknown as Buffer };
    if (!stored) return false;
    if (!stored.ok) { await this.#discard(stored.reason, stored.detail, started); return false; }
    const v = await verifyOcspResponse(stored.der, { ...this.#parsed(), now: started, ...(this.#opts.skewMs !== undefined ? { skewMs: this.#opts.skewMs } : {}) });
    if (!v.ok) { await this.#discard(v.reason, v.detail, started); return false; }
    // A verified answer is evidence, as after a retrieval: a "revoked" stays known.
    this.#lastStatus = v.response.certStatus;
    const refusal = stapleRefusal(v.response);
    if (refusal) {
      await this.#discard(refusal, v.response.revocationTime ? `revoked at ${v.response.revocationTime.toISOString()}` : `certificate status ${v.response.certStatus}`, started, v.response);
      return false;
    }
    if (!validLongEnough(started, v.response.nextUpdate.getTime(), this.#settings)) {
      await this.#discard('shorter-than-min-validity', `valid until ${v.response.nextUpdate.toISOString()}, less than SrvOcspRespMinValiditySeconds (${this.#settings.SrvOcspRespMinValiditySeconds} s) from now`, started, v.response);
      return false;
    }
    this.#current = v.response;
    this.#lastStatus = 'good';
    const plan = nextPrefetch(started, v.response.thisUpdate.getTime(), v.response.nextUpdate.getTime(), this.#settings);
    this.#report({ outcome: 'loaded', reason: null, detail: null, method: null, source: 'disk', durationMs: this.#now() - started, at: plan.at, rule: plan.rule });
    return true;
  }

  /** Deletes the persisted response and reports why (one 'discarded' update). */
  async #discard(reason: OcspRefusal, detail: string, started: number, response?: VerifiedOcspResponse): Promise<void> {
    let note = '';
    await this.#opts.storage?.delete(this.fingerprint).catch((err: unknown) => {
      note = `; not deleted: ${(err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err)}`;
    });
    this.#report({ outcome: 'discarded', reason, detail: `persisted staple: ${detail}${note}`, method: null, source: 'disk', durationMs: this.#now() - started, at: null, rule: null, ...(response ? { response } : {}) });
  }

  /** @internal true when a loaded response needs no retrieval yet. */
  prefetchDue(): boolean {
    const c = this.#current;
    if (!c) return true;
    return nextPrefetch(this.#now(), c.thisUpdate.getTime(), c.nextUpdate.getTime(), this.#settings).delayMs <= 0;
  }

  /** @internal arms the timer for the current plan (or at once when nothing is held). */
  armFromCurrent(): void {
    const c = this.#current;
    if (!c) { this.#arm(this.#now()); return; }
    this.#arm(nextPrefetch(this.#now(), c.thisUpdate.getTime(), c.nextUpdate.getTime(), this.#settings).at);
  }

  /** @internal one retrieval now; resolves when it is checked, stored and the next one armed. */
  refresh(): Promise<void> {
    return this.#run(false);
  }

  /** One retrieval, or with `announced` one read of the fleet's response (an announcement's); a call while one runs joins it. */
  #run(announced: boolean): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const started = this.#now();
    this.#running ??= this.#retrieve(announced)
      .catch((err: unknown) => {
        // A throwing custom fetcher (or a bug) is a failed retrieval, never an unhandled rejection.
        if (!this.#closed) this.#fail('failed', 'fetch-network', (err as Error)?.message ?? String(err), 'POST', started);
      })
      .finally(() => { this.#running = undefined; });
    return this.#running;
  }

  /** @internal one more reference. */
  addRef(): boolean {
    if (this.#closed) return false;
    this.#refs++;
    return true;
  }

  /** @internal one reference less; the last one stops the timers and aborts a retrieval in flight. */
  release(): boolean {
    if (this.#closed) return false;
    if (--this.#refs > 0) return true;
    this.#closed = true;
    this.#stopAnnouncements?.();
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#abort?.abort();
    return true;
  }

  /** Resolves when no retrieval is running (after close, the one in flight is aborted). */
  async idle(): Promise<void> {
    await this.#running;
  }

  #arm(at: number): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#nextAt = at;
    // setTimeout holds at most 2^31−1 ms (24.8 days); a longer wait re-arms when it fires.
    const delay = Math.min(Math.max(0, at - this.#now()), 0x7fffffff);
    const ref = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      if (this.#nextAt !== undefined && this.#now() < this.#nextAt - 1000) { this.#arm(this.#nextAt); return; }
      void this.refresh();
    }, delay);
    (ref as { unref?: () => void } | undefined)?.unref?.();
    this.#timer = ref;
  }

  async #retrieve(announced = false): Promise<void> {
    // An announcement makes this machine read, never retrieve: its planned retrieval stays armed
    // (a forged announcement, or a document deleted from Redis, never sends it to the responder).
    if (!announced && this.#timer !== undefined) { this.#timers.clearTimeout(this.#timer); this.#timer = undefined; }
    const started = this.#now();
    this.#abort = new AbortController();
    const parsed = this.#parsed();
    const fleet = this.#opts.fleet;
    if (!fleet) { await this.#retrieveFromResponder(parsed, started); return; }
    const lease = await this.#fromFleet(fleet, parsed, started, announced);
    if (lease === undefined || this.#closed) return;
    try {
      await this.#retrieveFromResponder(parsed, started, lease);
    } finally {
      await fleet.release(lease);
    }
  }

  /**
   * Fleet mode: takes the fleet's response when it verifies and is not yet due (undefined: done),
   * else the lease under which this machine retrieves: 'lead' (it stores what it verifies) or
   * 'local' (Redis unavailable). Waits, bounded by the lock's expiry, while another machine
   * retrieves; a holder that died is replaced when its lock expires. `announced`: only the read
   * (an announcement's), never a lease.
   */
  async #fromFleet(fleet: FleetDocuments, parsed: { cert: pkijs.Certificate; issuer: pkijs.Certificate }, started: number, announced: boolean): Promise<FleetLease | undefined> {
    const deadline = started + fleet.lockTtlMs + this.#settings.SrvOcspRespUrlRetrievalTimeoutMilliseconds;
    let refused: Buffer | undefined;
    // The bytes in Redis when this machine began to wait on another's retrieval: what comes after is that retrieval's outcome.
    let beforeWait: Buffer | null | undefined;
    for (;;) {
      const der = await fleet.read('staple', this.fingerprint);
      if (this.#closed) return undefined;
      const arrived = beforeWait !== undefined && der !== undefined && !(beforeWait && beforeWait.equals(der));
      const held = this.#current;
      if (der && held && held.der.equals(der) && !arrived) {
        // The response this machine serves already (an announcement of it, or its own echo): nothing new.
        const plan = nextPrefetch(this.#now(), held.thisUpdate.getTime(), held.nextUpdate.getTime(), this.#settings);
        if (plan.delayMs >= this.#retry.floorMs) { this.#arm(plan.at); return undefined; }
      } else if (der && !(refused && refused.equals(der))) {
        const now = this.#now();
        const v = await verifyOcspResponse(der, { ...parsed, now, ...(this.#opts.skewMs !== undefined ? { skewMs: this.#opts.skewMs } : {}) });
        if (this.#closed) return undefined;
        if (!v.ok) {
          // Refused as a retrieved response would be, and logged; this machine then retrieves (under the lock) to replace it.
          refused = der;
          this.#report({ outcome: 'refused', reason: v.reason, detail: `fleet staple: ${v.detail}`, method: null, source: 'fleet', durationMs: now - started, at: null, rule: null });
        } else if (arrived || (nextPrefetch(now, v.response.thisUpdate.getTime(), v.response.nextUpdate.getTime(), this.#settings).delayMs >= this.#retry.floorMs
          // A good one that could not be served (shorter than SrvOcspRespMinValiditySeconds) is as good as due: retrieve.
          && (v.response.certStatus !== 'good' || validLongEnough(now, v.response.nextUpdate.getTime(), this.#settings))
          && (!this.#current || v.response.nextUpdate.getTime() >= this.#current.nextUpdate.getTime() || v.response.certStatus !== 'good'))) {
          // Not yet due, or what the machine this one waited on retrieved (even a copy already due:
          // #accept backs off, as it would here): one retrieval serves the fleet, judged here exactly as if retrieved here.
          await this.#accept(v.response, null, 'fleet', started, now);
          return undefined;
        }
      }
      if (announced) return undefined;
      const lease = await fleet.lead('staple', this.fingerprint);
      if (this.#closed) { await fleet.release(lease); return undefined; }
      if (lease.kind === 'lead') {
        // Read again under the lock: a machine that retrieved between the read above and this
        // lock has stored a newer response by now (and released the lock). Judge that one
        // rather than retrieve a second time for the same refresh.
        const again = await fleet.read('staple', this.fingerprint);
        if (!again || (der !== undefined && again.equals(der))) return lease;
        await fleet.release(lease);
        if (this.#closed) return undefined;
        continue;
      }
      if (lease.kind !== 'wait') return lease;
      const now = this.#now();
      if (now >= deadline) {
        // The holder is slow, or the lock is not a machine's: this machine retrieves on its own (and does not store).
        return { kind: 'local' };
      }
      beforeWait ??= der ?? null;
      await fleet.wait('staple', this.fingerprint, Math.min(lease.retryInMs + 50, deadline - now), this.#abort?.signal);
      if (this.#closed) return undefined;
    }
  }

  async #retrieveFromResponder(parsed: { cert: pkijs.Certificate; issuer: pkijs.Certificate }, started: number, lease?: FleetLease): Promise<void> {
    this.#requestDer ??= (await buildOcspRequest(parsed.cert, parsed.issuer)).der;
    const res = await this.#fetcher(this.url, this.#requestDer, {
      timeoutMs: this.#settings.SrvOcspRespUrlRetrievalTimeoutMilliseconds,
      method: this.#opts.method ?? 'auto',
      ...(this.#abort ? { signal: this.#abort.signal } : {}),
    });
    if (this.#closed) return;
    const method = res.method;
    if (!res.ok) { this.#fail('failed', res.reason, res.detail, method, started); return; }
    const now = this.#now();
    const v = await verifyOcspResponse(res.body, { ...parsed, now, ...(this.#opts.skewMs !== undefined ? { skewMs: this.#opts.skewMs } : {}) });
    if (this.#closed) return;
    if (!v.ok) {
      if (v.reason === 'ambiguous') {
        // The CA's responder signed several answers for this certificate, maybe one "revoked":
        // its word is no longer a clean "good", so the older staple is not vouched for either.
        this.#current = undefined;
        await this.#opts.storage?.delete(this.fingerprint).catch(() => {});
        if (this.#closed) return;
      }
      this.#fail('refused', v.reason, v.detail, method, started);
      return;
    }
    const outcome = await this.#accept(v.response, method, 'responder', started, now);
    // The fleet gets what this machine took as the CA's word: a staple, or a revoked / unknown
    // status (machines that wait on it drop theirs). Not a response it refused as older or too short.
    if (lease?.kind === 'lead' && this.#opts.fleet && !this.#closed && (outcome === null || outcome === 'cert-revoked' || outcome === 'cert-unknown')) {
      const r = v.response;
      await this.#opts.fleet.publish(lease, 'staple', this.fingerprint, r.der, Math.max(r.nextUpdate.getTime(), now) + 3_600_000, r.nextUpdate.getTime());
    }
  }

  /** A verified response, retrieved here or taken from the fleet: staple it, or refuse it with its reason, and arm the next retrieval. */
  async #accept(response: VerifiedOcspResponse, method: 'GET' | 'POST' | null, source: 'responder' | 'fleet', started: number, now: number): Promise<OcspRefusal | null> {
    if (response.certStatus === 'good' && this.#notGoodSince !== undefined && response.thisUpdate.getTime() <= this.#notGoodSince) {
      // The CA said revoked (or unknown) in a response at least as recent: an older "good" (a replay
      // in Redis, a stale cache on the way) never brings the staple back.
      this.#fail('refused', 'older-response', `good at ${response.thisUpdate.toISOString()}, but a response of ${new Date(this.#notGoodSince).toISOString()} said ${this.#lastStatus ?? 'otherwise'}`, method, started, response, source);
      return 'older-response';
    }
    if (response.certStatus !== 'good') this.#notGoodSince = Math.max(this.#notGoodSince ?? -Infinity, response.thisUpdate.getTime());
    const refusal = stapleRefusal(response);
    this.#lastStatus = response.certStatus;
    if (refusal === 'cert-revoked') {
      // Once the CA says revoked, vouching "good" with an older response would hide it.
      this.#current = undefined;
      await this.#opts.storage?.delete(this.fingerprint).catch(() => {});
    }
    if (refusal) {
      this.#fail('refused', refusal, response.revocationTime ? `revoked at ${response.revocationTime.toISOString()}` : `certificate status ${response.certStatus}`, method, started, response, source);
      return refusal;
    }
    const fresh = response;
    if (!validLongEnough(now, fresh.nextUpdate.getTime(), this.#settings)) {
      // It could never be handed out: say so, and back off instead of refetching on its half-life.
      this.#fail('refused', 'shorter-than-min-validity', `valid until ${fresh.nextUpdate.toISOString()}, less than SrvOcspRespMinValiditySeconds (${this.#settings.SrvOcspRespMinValiditySeconds} s) from now`, method, started, fresh, source);
      return 'shorter-than-min-validity';
    }
    const plan = nextPrefetch(now, fresh.thisUpdate.getTime(), fresh.nextUpdate.getTime(), this.#settings);
    const before = this.#current;
    // Keep the response that lasts longer (a CDN may hand back an older copy).
    if (!before || fresh.nextUpdate.getTime() >= before.nextUpdate.getTime()) this.#current = fresh;
    const kept = this.#current ?? fresh;
    if (this.#opts.storage && kept === fresh) {
      await this.#opts.storage.store(this.fingerprint, fresh.der).catch((err: unknown) => {
        this.#opts.logger?.warn({ event: 'ocsp-storage', fingerprint: this.fingerprint, err: (err as Error).message }, 'cannot persist OCSP response');
      });
    }
    if (this.#closed) return null;
    if (plan.delayMs < this.#retry.floorMs) {
      // The "new" response is already due again (an old cached copy): back off instead of looping.
      this.#failures++;
      const at = now + retryDelay(this.#failures, now, this.#servableUntil(), this.#retry);
      this.#report({ outcome: 'stapled', reason: null, detail: 'the response is already due for refresh; backing off', method, source, durationMs: this.#now() - started, at, rule: 'retry', response: fresh });
      this.#arm(at);
      return null;
    }
    this.#failures = 0;
    this.#report({ outcome: 'stapled', reason: null, detail: null, method, source, durationMs: this.#now() - started, at: plan.at, rule: plan.rule, response: fresh });
    this.#arm(plan.at);
    return null;
  }

  #servableUntil(): number | undefined {
    const c = this.#current;
    return c ? c.nextUpdate.getTime() - this.#settings.SrvOcspRespMinValiditySeconds * 1000 : undefined;
  }

  #fail(outcome: 'failed' | 'refused', reason: OcspRefusal, detail: string, method: 'GET' | 'POST' | null, started: number, response?: VerifiedOcspResponse, source: OcspUpdate['source'] = outcome === 'refused' ? 'responder' : null): void {
    this.#failures++;
    const now = this.#now();
    const c = this.#current;
    let at = now + retryDelay(this.#failures, now, this.#servableUntil(), this.#retry);
    let rule: PrefetchRule | 'retry' = 'retry';
    if (c) {
      // Nothing urgent while the held response is not yet in its prefetch window.
      const plan = nextPrefetch(now, c.thisUpdate.getTime(), c.nextUpdate.getTime(), this.#settings);
      if (plan.rule === 'before-window' && plan.at > at) { at = plan.at; rule = plan.rule; }
    }
    this.#report({ outcome, reason, detail, method, source, durationMs: now - started, at, rule, ...(response ? { response } : {}) });
    this.#arm(at);
  }

  #report(u: { outcome: OcspUpdate['outcome']; reason: OcspRefusal | null; detail: string | null; method: 'GET' | 'POST' | null; source: OcspUpdate['source']; durationMs: number; at: number | null; rule: PrefetchRule | 'retry' | null; response?: VerifiedOcspResponse }): void {
    this.#lastOutcome = u.outcome;
    this.#lastReason = u.reason;
    if (u.at !== null) this.#nextAt = u.at;
    const shown = u.response ?? this.#current;
    const update: OcspUpdate = Object.freeze({
      event: 'ocsp-update',
      cert: this.#name,
      serial: this.#serial,
      fingerprint: this.fingerprint,
      url: this.url,
      outcome: u.outcome,
      reason: u.reason,
      detail: u.detail,
      certStatus: u.response ? u.response.certStatus : (u.outcome === 'loaded' ? 'good' : null),
      thisUpdate: shown ? shown.thisUpdate.toISOString() : null,
      nextUpdate: shown ? shown.nextUpdate.toISOString() : null,
      nextRefresh: u.at !== null ? new Date(u.at).toISOString() : null,
      rule: u.rule,
      failures: this.#failures,
      method: u.method,
      source: u.source,
      durationMs: u.durationMs,
      serving: this.servable() !== undefined,
    });
    const log = this.#opts.logger;
    if (log) {
      if (u.reason === 'cert-revoked') log.error(update, 'OCSP update: certificate REVOKED, not stapled');
      else if (u.outcome === 'stapled' || u.outcome === 'loaded') log.info(update, 'OCSP update');
      else if (u.outcome === 'discarded') log.warn(update, 'OCSP persisted staple discarded');
      else log.warn(update, 'OCSP update refused');
    }
    try {
      this.#opts.onUpdate?.(update);
    } catch {
      // A listener's bug must not stop the schedule.
    }
  }
}

export interface OpenResult {
  readonly status: OcspHandleStatusValue;
  /** Set when status is NO_ERROR. */
  readonly handle?: ServerOcspResponseHandle;
}

/**
 * CertOpenServerOcspResponse. `chain` is the leaf first, then its issuer (more is ignored).
 * flags 0: the Promise resolves after the first retrieval has completed (or failed: a
 * handle is returned anyway), unless a persisted response was reloaded that is not yet
 * due for a prefetch. CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG: resolves at once (after
 * reading the persisted response, a local file), the retrieval runs in the background.
 * Returns CRYPT_E_NOT_IN_REVOCATION_DATABASE when the leaf has no OCSP URL, and
 * ERROR_INVALID_PARAMETER for unknown flag bits or a chain without a parsable issuer.
 */
export async function openServerOcspResponse(chain: readonly ChainInput[] | ChainInput, flags = 0, options: OpenServerOcspResponseOptions = {}): Promise<OpenResult> {
  if (!Number.isInteger(flags) || (flags & ~CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG) !== 0) return { status: OcspHandleStatus.ERROR_INVALID_PARAMETER };
  let ders: Buffer[];
  let cert: pkijs.Certificate;
  let issuer: pkijs.Certificate;
  try {
    ders = chainDers(chain);
    if (ders.length < 2) return { status: OcspHandleStatus.ERROR_INVALID_PARAMETER };
    cert = parseCertificate(ders[0] as Buffer);
    issuer = parseCertificate(ders[1] as Buffer);
  } catch {
    return { status: OcspHandleStatus.ERROR_INVALID_PARAMETER };
  }
  if (!cert.issuer.isEqual(issuer.subject)) return { status: OcspHandleStatus.ERROR_INVALID_PARAMETER };
  const url = options.url ?? ocspUrlOf(cert);
  if (!url) return { status: OcspHandleStatus.CRYPT_E_NOT_IN_REVOCATION_DATABASE };
  const handle = new ServerOcspResponseHandle(ders[0] as Buffer, ders[1] as Buffer, cert, url, options);
  await handle.loadPersisted();
  if ((flags & CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG) !== 0 || !handle.prefetchDue()) handle.armFromCurrent();
  else await handle.refresh();
  return { status: OcspHandleStatus.NO_ERROR, handle };
}

/**
 * CertGetServerOcspResponseContext: the current response while it is valid for at least
 * SrvOcspRespMinValiditySeconds; otherwise CRYPT_E_REVOCATION_OFFLINE (as Windows, also for
 * an unknown or revoked certificate). Never blocks, never touches the network.
 */
export function getServerOcspResponseContext(handle: ServerOcspResponseHandle, flags = 0): { readonly status: OcspHandleStatusValue; readonly context?: ServerOcspResponseContext } {
  if (!(handle instanceof ServerOcspResponseHandle) || handle.closed || flags !== 0) return { status: OcspHandleStatus.ERROR_INVALID_PARAMETER };
  const r = handle.servable();
  if (!r) return { status: OcspHandleStatus.CRYPT_E_REVOCATION_OFFLINE };
  const context: ServerOcspResponseContext = Object.freeze({ encodedOcspResponse: r.der, size: r.der.length });
  contextRefs.set(context, 1);
  return { status: OcspHandleStatus.NO_ERROR, context };
}

/** CertAddRefServerOcspResponse. */
export function addRefServerOcspResponse(handle: ServerOcspResponseHandle): OcspHandleStatusValue {
  return handle instanceof ServerOcspResponseHandle && handle.addRef() ? OcspHandleStatus.NO_ERROR : OcspHandleStatus.ERROR_INVALID_PARAMETER;
}

/** CertCloseServerOcspResponse: drops one reference; the last one stops the timers. */
export function closeServerOcspResponse(handle: ServerOcspResponseHandle): OcspHandleStatusValue {
  return handle instanceof ServerOcspResponseHandle && handle.release() ? OcspHandleStatus.NO_ERROR : OcspHandleStatus.ERROR_INVALID_PARAMETER;
}

/** CertAddRefServerOcspResponseContext. */
export function addRefServerOcspResponseContext(context: ServerOcspResponseContext): OcspHandleStatusValue {
  const n = contextRefs.get(context);
  if (!n) return OcspHandleStatus.ERROR_INVALID_PARAMETER;
  contextRefs.set(context, n + 1);
  return OcspHandleStatus.NO_ERROR;
}

/** CertFreeServerOcspResponseContext: ERROR_INVALID_PARAMETER once every reference is freed. */
export function freeServerOcspResponseContext(context: ServerOcspResponseContext): OcspHandleStatusValue {
  const n = contextRefs.get(context);
  if (!n) return OcspHandleStatus.ERROR_INVALID_PARAMETER;
  if (n === 1) contextRefs.delete(context);
  else contextRefs.set(context, n - 1);
  return OcspHandleStatus.NO_ERROR;
}
