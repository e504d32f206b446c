// Revocation of client certificates, with HTTP.sys's choices (DefaultCertCheckMode:
// check, no check, cached only, freshness time; DefaultRevocationUrlRetrievalTimeout):
// OCSP through the certificate's AIA URL, then CRLs (loaded files and fetched distribution
// points), results cached until their nextUpdate. The outcome is a CERT_E_* / CRYPT_E_*
// value for certFlags. Asynchronous, once per connection: never on the handshake path.
// In fleet mode (docs/fleet.md) the signed OCSP responses and CRLs are shared through Redis:
// the signed bytes, never verdicts, each verified here as if retrieved here.
// https://learn.microsoft.com/windows/win32/api/http/ns-http-http_service_config_ssl_param
import * as asn1js from 'asn1js';
import { DEFAULTS } from '../defaults.js';
import { CertStatus } from '../status.js';
import { pemBlocks, toPem } from '../tls/pem.js';
import { cryptoEngine, pkijs } from '../tls/pkijs-engine.js';
import { fetchDocument, fetchOcsp, type FetchOptions, type FetchResult, type OcspFetcher } from './fetch.js';
import type { ChainInput } from './handle.js';
import { CertboundError } from '../errors.js';
import { buildOcspRequest, ocspUrlOf, parseCertificate, serialHex } from './request.js';
import { StapleCache } from './staple-cache.js';
import { verifyOcspResponse } from './validate.js';
import { X509Certificate } from 'node:crypto';
import { CertCheckMode } from './cert-check-mode.js';
import type { FleetDocuments, FleetLease } from '../fleet/fleet.js';
import { fleetDocumentMaxAge, urlId, type FleetDocumentKind } from '../fleet/fleet-rules.js';

export { CertCheckMode } from './cert-check-mode.js';

/** HTTP.sys's DefaultRevocationUrlRetrievalTimeout (ms): DEFAULTS.revocationUrlRetrievalTimeoutMs. */
export const DEFAULT_REVOCATION_URL_RETRIEVAL_TIMEOUT_MS = DEFAULTS.revocationUrlRetrievalTimeoutMs;

export interface RevocationOptions {
  /** DefaultCertCheckMode (bits of CertCheckMode). Default: 0 (check). */
  certCheckMode?: number;
  /** DefaultRevocationFreshnessTime (s), used with FRESHNESS_TIME. 0: only when the data expires. Default: 0. */
  revocationFreshnessTimeSeconds?: number;
  /** DefaultRevocationUrlRetrievalTimeout (ms) for each OCSP or CRL retrieval. Default: 15000. */
  urlRetrievalTimeoutMs?: number;
  /**
   * 'hard' (default): when revocation cannot be told, certFlags carries CRYPT_E_REVOCATION_OFFLINE
   * or CRYPT_E_NO_REVOCATION_CHECK, as HTTP.sys reports it. 'soft': certFlags stays 0 and the
   * value is only in `revocationStatus`.
   */
  failMode?: 'soft' | 'hard';
  /** CRLs loaded from files (DER, or PEM with one or more X509 CRL blocks). */
  crls?: Array<Buffer | string>;
  /** Fetch the certificate's CRL distribution points. Default: true. */
  fetchCrlDistributionPoints?: boolean;
  /** Ask the AIA OCSP responder. Default: true. */
  ocsp?: boolean;
  /** Clock (ms since the epoch). Default: Date.now. */
  now?: () => number;
  /** OCSP retrieval. Default: fetchOcsp. */
  fetcher?: OcspFetcher;
  /** CRL retrieval. Default: fetchDocument. */
  crlFetcher?: (url: string, options: FetchOptions) => Promise<FetchResult>;
  /** Receives one `warn` line per OCSP retrieval that gave no verified answer (pino and fastify loggers fit). Default: none. */
  logger?: RevocationLogger;
  /**
   * Fleet mode: share the signed OCSP responses (kind 'ocsp') and fetched CRLs (kind 'crl') with
   * the other machines through Redis, so that one machine retrieves each and the others take its
   * bytes. What comes from the fleet is verified here exactly as a retrieved answer (signature,
   * CertID or issuer, dates, freshness) and a document that does not verify is refused, logged
   * and retrieved again; while Redis is unavailable each machine retrieves on its own.
   * Loaded CRL files are never shared. Default: none (this machine only).
   */
  fleet?: FleetDocuments;
}

/** The one logger method the checker uses. */
export interface RevocationLogger {
  warn(obj: object, msg: string): void;
}

export interface RevocationResult {
  /** What goes into certFlags: 0, CERT_E_REVOKED, or (hard-fail) the status below. */
  readonly certFlags: number;
  /** The precise outcome: 0, CERT_E_REVOKED, CRYPT_E_REVOCATION_OFFLINE or CRYPT_E_NO_REVOCATION_CHECK. */
  readonly revocationStatus: number;
  /** What decided: an OCSP response, a CRL, nothing available, or a check not asked for. */
  readonly source: 'ocsp' | 'crl' | 'none' | 'skipped';
  /** The decision came from cached data (no retrieval). */
  readonly fromCache: boolean;
  /** Why nothing decided, or the OCSP/CRL refusal seen on the way (e.g. 'fetch-refused'). */
  readonly reason: string | null;
  readonly revocationTime: string | null;
  /** Until when this result is cached. */
  readonly nextUpdate: string | null;
}

type OcspOutcome =
  | { status: 'good' | 'revoked'; fromCache: boolean; entry: CachedOcsp }
  | { status: 'offline' | 'unknown' | 'not-cached'; reason: string; nextUpdate?: number };
/** What a fleet document gave: a usable value, a refusal (logged), or undefined (verified but not fresh enough: retrieve). */
type FleetTake<T> = { value: T } | { refused: string; detail: string } | undefined;
/** `until`: kept no longer than this (ms) though valid longer: a fleet document, fleetDocumentMaxAge after a machine stored it. */
interface CachedOcsp { status: 'good' | 'revoked' | 'unknown'; thisUpdate: number; nextUpdate: number; revocationTime?: Date; until?: number }
interface CachedCrl { crl: pkijs.CertificateRevocationList; thisUpdate: number; nextUpdate: number; until?: number }

/** A CRL as cached: its dates (a CRL without nextUpdate counts as due at `now`), and `until` for one read from the fleet. */
function crlEntry(crl: pkijs.CertificateRevocationList, now: number, until?: number): CachedCrl {
  return { crl, thisUpdate: crl.thisUpdate.value.getTime(), nextUpdate: crl.nextUpdate?.value.getTime() ?? now, ...(until !== undefined ? { until } : {}) };
}

/** Until when a cached answer may be used: its nextUpdate, or earlier for one read from the fleet. */
function horizon(entry: { nextUpdate: number; until?: number }): number {
  return entry.until !== undefined ? Math.min(entry.nextUpdate, entry.until) : entry.nextUpdate;
}
/** A decided check (good or revoked) for one leaf and issuer, valid for `generation` until `validUntil`. */
interface CachedDecision { result: RevocationResult; generation: number; checkedAt: number; validUntil: number }

/** Decided results kept at most (a map cleared when full: one entry per client certificate seen). */
const MAX_DECISIONS = 10_000;

const OID_CRL_DP = '2.5.29.31';

/** While another machine retrieves a document, the fleet is read again at least this often (ms). */
const FLEET_WAIT_SLICE_MS = 250;

/** The http(s) URLs of a certificate's CRL distribution points. */
export function crlUrlsOf(cert: pkijs.Certificate): string[] {
  const ext = cert.extensions?.find((e) => e.extnID === OID_CRL_DP);
  if (!ext) return [];
  const dps = ext.parsedValue instanceof pkijs.CRLDistributionPoints ? ext.parsedValue : new pkijs.CRLDistributionPoints({ schema: asn1js.fromBER(ext.extnValue.valueBlock.valueHexView).result });
  const out: string[] = [];
  for (const dp of dps.distributionPoints) {
    if (!Array.isArray(dp.distributionPoint)) continue;
    for (const n of dp.distributionPoint) if (n.type === 6 && typeof n.value === 'string' && /^https?:\/\//i.test(n.value)) out.push(n.value);
  }
  return out;
}

/** The CRLs of a document: PEM (one or more X509 CRL blocks) or one DER CRL. Throws on a block pkijs cannot parse. */
export function parseCrls(input: Buffer | string): pkijs.CertificateRevocationList[] {
  const ders = typeof input === 'string' || input.subarray(0, 64).toString('latin1').includes('-----BEGIN')
    ? pemBlocks(input.toString('latin1'), 'X509 CRL')
    : [input];
  return ders.map((d) => pkijs.CertificateRevocationList.fromBER(d));
}

/** CRLs given as options: an entry without one, or one that does not parse, is CB_ERR_PEM_INVALID (never skipped: that would fail open). */
function loadedCrls(input: Buffer | string, where: string): pkijs.CertificateRevocationList[] {
  let crls: pkijs.CertificateRevocationList[];
  try {
    crls = parseCrls(input);
  } catch (err) {
    throw new CertboundError('CB_ERR_PEM_INVALID', ['CRL', where, 'X.509 CRL (it does not parse)'], { cause: err });
  }
  if (crls.length === 0) throw new CertboundError('CB_ERR_PEM_INVALID', ['CRL', where, 'CRL (PEM -----BEGIN X509 CRL----- or DER)']);
  return crls;
}

/** Checks client certificates; keep one per server (its caches are shared by connections). */
export class RevocationChecker {
  readonly #opts: RevocationOptions;
  readonly #now: () => number;
  readonly #ocspCache = new Map<string, CachedOcsp>();
  readonly #crlByUrl = new Map<string, CachedCrl>();
  #loadedCrls: pkijs.CertificateRevocationList[];
  readonly #perConnection = new WeakMap<object, Map<string, Promise<RevocationResult>>>();
  // Decided results by mode, leaf and issuer: a warm check is one map read and two hashes
  // (no parse, no signature check). Valid while nothing they were decided from changed
  // (`#generation`: replaceCrls, clear) and until the earliest nextUpdate of that data.
  readonly #decisions = new Map<string, CachedDecision>();
  #generation = 0;

  constructor(options: RevocationOptions = {}) {
    cryptoEngine();
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#loadedCrls = (options.crls ?? []).flatMap((input, i, all) => loadedCrls(input, all.length > 1 ? `(revocation.crls option, entry ${i})` : '(revocation.crls option)'));
  }

  /**
   * The check for one connection: the first call for `connection` (any object: the socket
   * or its registry entry) and this leaf certificate runs it, later calls get the same
   * Promise. A different leaf on the same connection (after a renegotiation) is checked anew.
   */
  checkOnce(connection: object, chain: readonly ChainInput[], override: { certCheckMode?: number } = {}): Promise<RevocationResult> {
    let byLeaf = this.#perConnection.get(connection);
    if (!byLeaf) {
      byLeaf = new Map();
      this.#perConnection.set(connection, byLeaf);
    }
    const first = chain[0];
    const leafDer = first === undefined ? Buffer.alloc(0) : typeof first === 'string' ? (pemBlocks(first, 'CERTIFICATE')[0] ?? Buffer.from(first)) : first instanceof X509Certificate ? first.raw : Buffer.from(first);
    const key = StapleCache.fingerprint(leafDer);
    let p = byLeaf.get(key);
    if (!p) {
      p = this.check(chain, override);
      byLeaf.set(key, p);
    }
    return p;
  }

  /**
   * Checks the leaf of `chain` (leaf first, then its issuer). `override.certCheckMode`
   * replaces the configured mode for this call (e.g. a route that accepts cached data only).
   * Resolves, never rejects.
   */
  async check(chain: readonly ChainInput[], override: { certCheckMode?: number } = {}): Promise<RevocationResult> {
    const mode = override.certCheckMode ?? this.#opts.certCheckMode ?? DEFAULTS.revocationCertCheckMode;
    if (mode & CertCheckMode.NO_REVOCATION_CHECK) return result(0, 'skipped', false, null);
    let ders: Buffer[];
    try {
      ders = chain.flatMap((c) => typeof c === 'string' ? pemBlocks(c, 'CERTIFICATE') : [c instanceof X509Certificate ? c.raw : Buffer.from(c)]);
    } catch {
      return this.#undecided(false, 'malformed-chain', true);
    }
    // Without the certificate that really issued the leaf, no OCSP answer or CRL can be
    // judged: a wrong issuer would turn "revoked" into "cannot tell". Never soft-failed.
    if (ders.length < 2) return this.#undecided(false, 'no-issuer', true);
    // The freshness-time mode judges the age of each piece of data at each check: not cached.
    const key = (mode & CertCheckMode.FRESHNESS_TIME) === 0 ? `${mode}|${StapleCache.fingerprint(ders[0] as Buffer)}|${StapleCache.fingerprint(ders[1] as Buffer)}` : undefined;
    const now = this.#now();
    const hit = key === undefined ? undefined : this.#decisions.get(key);
    if (hit && hit.generation === this.#generation && now >= hit.checkedAt && now < hit.validUntil) return hit.result;
    const generation = this.#generation;
    const used: { validUntil: number; cacheable: boolean } = { validUntil: Infinity, cacheable: true };
    const r = await this.#decide(ders, mode, used);
    if (key !== undefined && used.cacheable && (r.source === 'ocsp' || r.source === 'crl') && generation === this.#generation && used.validUntil > now) {
      if (this.#decisions.size >= MAX_DECISIONS) this.#decisions.clear();
      this.#decisions.set(key, { result: r.fromCache ? r : Object.freeze({ ...r, fromCache: true }), generation, checkedAt: now, validUntil: used.validUntil });
    }
    return r;
  }

  /** The check itself; notes in `used` the earliest nextUpdate of the data that decided, and whether the outcome may be reused. */
  async #decide(ders: readonly Buffer[], mode: number, used: { validUntil: number; cacheable: boolean }): Promise<RevocationResult> {
    let cert: pkijs.Certificate;
    let issuer: pkijs.Certificate;
    try {
      const leaf = new X509Certificate(ders[0] as Buffer);
      const issuerX509 = new X509Certificate(ders[1] as Buffer);
      if (!leaf.checkIssued(issuerX509) || !leaf.verify(issuerX509.publicKey)) return this.#undecided(false, 'issuer-mismatch', true);
      cert = parseCertificate(ders[0] as Buffer);
      issuer = parseCertificate(ders[1] as Buffer);
    } catch {
      return this.#undecided(false, 'malformed-chain', true);
    }
    const cachedOnly = (mode & CertCheckMode.CACHED_ONLY) !== 0;
    const freshnessMs = (mode & CertCheckMode.FRESHNESS_TIME) !== 0 ? (this.#opts.revocationFreshnessTimeSeconds ?? DEFAULTS.revocationFreshnessTimeSeconds) * 1000 : 0;
    let offline = false;
    let reason: string | null = null;
    let ambiguous = false;

    if (this.#opts.ocsp !== false) {
      const url = ocspUrlOf(cert);
      if (url) {
        const o = await this.#ocsp(cert, issuer, url, cachedOnly, freshnessMs);
        if (o.status === 'good' || o.status === 'revoked') {
          used.validUntil = Math.min(used.validUntil, horizon(o.entry));
          return result(o.status === 'revoked' ? CertStatus.CERT_E_REVOKED : 0, 'ocsp', o.fromCache, null, o.entry);
        }
        // A cached 'unknown' holds until its nextUpdate; anything else (offline, not cached,
        // refused) is asked again at the next check, so a CRL's answer after it is not kept.
        if (o.status === 'unknown' && 'nextUpdate' in o && o.nextUpdate !== undefined) used.validUntil = Math.min(used.validUntil, o.nextUpdate);
        else used.cacheable = false;
        if ('reason' in o) { offline = o.status === 'offline'; reason = o.reason; ambiguous = o.reason === 'ambiguous'; }
      }
    }
    const c = await this.#crl(cert, issuer, cachedOnly, freshnessMs, used);
    if (c.status === 'revoked' || (c.status === 'good' && !ambiguous)) {
      used.validUntil = Math.min(used.validUntil, horizon(c.entry));
      return result(c.status === 'revoked' ? CertStatus.CERT_E_REVOKED : 0, 'crl', c.fromCache, null, c.entry, c.revocationTime);
    }
    // The issuer's own responder signed more than one answer for this certificate (one of
    // them may be "revoked"): no CRL "good" and no soft fail mode turns that into a pass.
    if (ambiguous) return this.#undecided(true, 'ambiguous', true);
    if (c.status === 'offline') offline = true;
    const crlReason = 'reason' in c ? c.reason : null;
    return this.#undecided(offline, reason ?? crlReason ?? (cachedOnly ? 'not-cached' : 'no-revocation-source'));
  }

  /**
   * Replaces the loaded CRLs (a reload of the CRL files): checks started from now on use them.
   * Throws CB_ERR_PEM_INVALID, keeping the old ones, when an entry holds no CRL or one does not parse.
   */
  replaceCrls(crls: ReadonlyArray<Buffer | string>): void {
    this.#loadedCrls = crls.flatMap((input, i, all) => loadedCrls(input, all.length > 1 ? `(crl entry ${i})` : '(crl)'));
    this.#forgetDecisions();
  }

  /** The loaded CRLs (PEM, one per entry), e.g. to replace one of them with replaceCrls. */
  loadedCrlPems(): string[] {
    return this.#loadedCrls.map((c) => toPem(c.toSchema(true).toBER(false), 'X509 CRL'));
  }

  /** Drops every cached OCSP result and fetched CRL (loaded CRL files stay). */
  clear(): void {
    this.#ocspCache.clear();
    this.#crlByUrl.clear();
    this.#forgetDecisions();
  }

  /** Checks in flight when the data changed do not store what they decide (the generation moved). */
  #forgetDecisions(): void {
    this.#generation++;
    this.#decisions.clear();
  }

  /** Revocation could not be told; `alwaysHard` for a chain whose issuer is not established (the soft fail mode does not apply). */
  #undecided(offline: boolean, reason: string, alwaysHard = false): RevocationResult {
    const status = offline ? CertStatus.CRYPT_E_REVOCATION_OFFLINE : CertStatus.CRYPT_E_NO_REVOCATION_CHECK;
    const hard = alwaysHard || (this.#opts.failMode ?? DEFAULTS.revocationFailMode) === 'hard';
    return Object.freeze({ certFlags: hard ? status : 0, revocationStatus: status, source: 'none', fromCache: false, reason, revocationTime: null, nextUpdate: null });
  }

  #fresh(entry: { thisUpdate: number; nextUpdate: number; until?: number }, freshnessMs: number, now: number): boolean {
    if (horizon(entry) <= now) return false;
    return freshnessMs <= 0 || now - entry.thisUpdate <= freshnessMs;
  }

  async #ocsp(cert: pkijs.Certificate, issuer: pkijs.Certificate, url: string, cachedOnly: boolean, freshnessMs: number): Promise<OcspOutcome> {
    const key = StapleCache.fingerprint(new Uint8Array(cert.toSchema(true).toBER(false)));
    const now = this.#now();
    const cached = this.#ocspCache.get(key);
    if (cached && (this.#fresh(cached, freshnessMs, now) || (cachedOnly && horizon(cached) > now))) return ocspOutcome(cached, true);
    if (cachedOnly) return { status: 'not-cached', reason: 'not-cached' };
    // The fleet's id: the leaf and its issuer (one leaf DER may be judged against another issuer).
    const id = `${key}.${StapleCache.fingerprint(new Uint8Array(issuer.toSchema(true).toBER(false))).slice(0, 16)}`;
    const serial = serialHex(cert);
    return this.#viaFleet<OcspOutcome>('ocsp', id, { event: 'revocation-ocsp', serial, url }, async (bytes, until) => {
      // Verified without a nonce: the nonce in a shared response was another machine's request's
      // (RFC 6960 4.4.1), so it proves nothing here; freshness comes from thisUpdate and
      // nextUpdate, judged as for a response retrieved here (and the signature, CertID, dates),
      // and it is kept no longer than the fleet allows (`until`), not to its nextUpdate.
      const v = await verifyOcspResponse(bytes, { cert, issuer, now: this.#now() });
      if (!v.ok) return { refused: v.reason, detail: v.detail };
      const entry = { ...ocspEntry(v.response), until };
      if (!this.#fresh(entry, freshnessMs, this.#now())) return undefined;
      this.#ocspCache.set(key, entry);
      return { value: ocspOutcome(entry, true) };
    }, (lease) => this.#retrieveOcsp(cert, issuer, url, key, id, lease));
  }

  /** Asks the responder (with a nonce); under a fleet lease, stores the verified signed bytes for the other machines. */
  async #retrieveOcsp(cert: pkijs.Certificate, issuer: pkijs.Certificate, url: string, key: string, id: string, lease: FleetLease | undefined): Promise<OcspOutcome> {
    const req = await buildOcspRequest(cert, issuer, { nonce: true });
    const res = await (this.#opts.fetcher ?? fetchOcsp)(url, req.der, { timeoutMs: this.#retrievalTimeoutMs() });
    if (!res.ok) {
      this.#opts.logger?.warn({ event: 'revocation-ocsp', outcome: 'failed', reason: res.reason, detail: res.detail, serial: serialHex(cert), url }, 'client certificate OCSP retrieval failed');
      return { status: 'offline', reason: res.reason };
    }
    const v = await verifyOcspResponse(res.body, { cert, issuer, now: this.#now(), ...(req.nonce ? { nonce: req.nonce } : {}) });
    if (!v.ok) {
      this.#opts.logger?.warn({ event: 'revocation-ocsp', outcome: 'refused', reason: v.reason, detail: v.detail, serial: serialHex(cert), url }, 'client certificate OCSP response refused');
      return { status: 'offline', reason: v.reason };
    }
    const entry = ocspEntry(v.response);
    this.#ocspCache.set(key, entry);
    // The CA's signed word (good, revoked or unknown) for the machines that wait on it, kept in Redis until its nextUpdate.
    if (lease?.kind === 'lead') await this.#opts.fleet?.publish(lease, 'ocsp', id, v.response.der, entry.nextUpdate, entry.nextUpdate);
    return ocspOutcome(entry, false);
  }

  #retrievalTimeoutMs(): number {
    return this.#opts.urlRetrievalTimeoutMs ?? DEFAULT_REVOCATION_URL_RETRIEVAL_TIMEOUT_MS;
  }

  /**
   * Fleet mode around one retrieval: takes the fleet's document when `take` finds it usable; else
   * retrieves under the fleet's lock ('lead': `retrieve` publishes what it verifies), or after
   * waiting for the machine that holds it (bounded by the retrieval timeout; its document if it
   * verifies, else this machine retrieves on its own: another machine being slow never fails a
   * check, and its answer is never taken unverified), or on its own when Redis is unavailable.
   * A document that does not verify is logged once and replaced by the next machine that leads.
   */
  async #viaFleet<T>(kind: FleetDocumentKind, id: string, context: { event: string; serial?: string; url: string }, take: (bytes: Buffer, until: number) => Promise<FleetTake<T>>, retrieve: (lease: FleetLease | undefined) => Promise<T>): Promise<T> {
    const fleet = this.#opts.fleet;
    if (!fleet) return retrieve(undefined);
    let refused: Buffer | undefined;
    const fromFleet = async (): Promise<{ value: T } | undefined> => {
      const stored = await fleet.readStored(kind, id);
      if (!stored || refused?.equals(stored.der)) return undefined;
      const bytes = stored.der;
      const got = await take(bytes, stored.storedAt + fleetDocumentMaxAge(kind));
      if (got && 'refused' in got) {
        refused = bytes;
        this.#opts.logger?.warn({ ...context, outcome: 'refused', source: 'fleet', reason: got.refused, detail: got.detail, id }, `client certificate ${kind === 'crl' ? 'CRL' : 'OCSP response'} from the fleet refused`);
        return undefined;
      }
      return got;
    };
    const first = await fromFleet();
    if (first) return first.value;
    const lease = await fleet.lead(kind, id);
    if (lease.kind === 'wait') {
      // Woken by the holder's announcement; read again every FLEET_WAIT_SLICE_MS as well, for an
      // announcement that came between the lock's answer and this wait.
      // Real time (the timers'), not the injectable clock `now`, which a test may hold still.
      const deadline = performance.now() + Math.min(lease.retryInMs, this.#retrievalTimeoutMs());
      for (let left = deadline - performance.now(); left > 0; left = deadline - performance.now()) {
        await fleet.wait(kind, id, Math.min(left, FLEET_WAIT_SLICE_MS));
        const after = await fromFleet();
        if (after) return after.value;
      }
      return retrieve(undefined);
    }
    try {
      if (lease.kind === 'lead') {
        // Another machine may have stored it between the read and the lock: one more read spares a retrieval.
        const again = await fromFleet();
        if (again) return again.value;
      }
      return await retrieve(lease);
    } finally {
      await fleet.release(lease);
    }
  }

  async #crl(cert: pkijs.Certificate, issuer: pkijs.Certificate, cachedOnly: boolean, freshnessMs: number, used: { validUntil: number }): Promise<
    { status: 'good' | 'revoked'; fromCache: boolean; entry: CachedCrl; revocationTime?: Date } | { status: 'offline' | 'none'; reason: string | null }
  > {
    const now = this.#now();
    const usable = async (crl: pkijs.CertificateRevocationList): Promise<boolean> => {
      if (!crl.issuer.isEqual(issuer.subject)) return false;
      if (crl.thisUpdate.value.getTime() > now + DEFAULTS.clockSkewMs) {
        // Usable later, and then it may decide first: a decision made without it lasts until then.
        used.validUntil = Math.min(used.validUntil, crl.thisUpdate.value.getTime() - DEFAULTS.clockSkewMs);
        return false;
      }
      if (!crl.nextUpdate || crl.nextUpdate.value.getTime() <= now) return false;
      try {
        return await crl.verify({ issuerCertificate: issuer });
      } catch {
        return false;
      }
    };
    const decide = (crl: pkijs.CertificateRevocationList, fromCache: boolean, until?: number) => {
      const entry = crlEntry(crl, now, until);
      const serial = serialHex(cert);
      const hit = crl.revokedCertificates?.find((r) => Buffer.from(r.userCertificate.valueBlock.valueHexView).toString('hex').replace(/^(00)+(?=.)/, '') === serial);
      return hit
        ? { status: 'revoked' as const, fromCache, entry, revocationTime: hit.revocationDate.value }
        : { status: 'good' as const, fromCache, entry };
    };
    for (const crl of this.#loadedCrls) if (await usable(crl)) return decide(crl, true);
    if (this.#opts.fetchCrlDistributionPoints === false) return { status: 'none', reason: null };
    let offline = false;
    let reason: string | null = null;
    for (const url of crlUrlsOf(cert)) {
      const cached = this.#crlByUrl.get(url);
      if (cached && (this.#fresh(cached, freshnessMs, now) || (cachedOnly && horizon(cached) > now)) && await usable(cached.crl)) return decide(cached.crl, true, cached.until);
      if (cachedOnly) continue;
      const cache = (crl: pkijs.CertificateRevocationList, until?: number): CachedCrl => {
        const entry = crlEntry(crl, now, until);
        this.#crlByUrl.set(url, entry);
        return entry;
      };
      const got = await this.#viaFleet<ReturnType<typeof decide> | { failed: string }>('crl', urlId(url), { event: 'revocation-crl', url }, async (bytes, until) => {
        // Judged as a fetched CRL: the leaf's issuer, its dates, its signature (usable()).
        let crl: pkijs.CertificateRevocationList | undefined;
        try {
          crl = parseCrls(bytes)[0];
        } catch (err) {
          return { refused: 'crl-malformed', detail: (err as Error).message };
        }
        if (!crl || !(await usable(crl))) return { refused: 'crl-unusable', detail: 'not a CRL of this issuer, outside its dates, or a bad signature' };
        if (!this.#fresh(crlEntry(crl, now, until), freshnessMs, this.#now())) return undefined;
        cache(crl, until);
        return { value: decide(crl, true, until) };
      }, async (lease) => {
        const res = await (this.#opts.crlFetcher ?? fetchDocument)(url, { timeoutMs: this.#retrievalTimeoutMs(), maxBytes: 10 * 1024 * 1024 });
        if (!res.ok) return { failed: `crl-${res.reason}` };
        let crls: pkijs.CertificateRevocationList[];
        try {
          crls = parseCrls(res.body);
        } catch {
          return { failed: 'crl-malformed' };
        }
        const crl = crls[0];
        if (!crl || !(await usable(crl))) return { failed: 'crl-unusable' };
        const entry = cache(crl);
        // The raw fetched bytes (the CA's signature inside), kept in Redis until the CRL's nextUpdate.
        if (lease?.kind === 'lead') await this.#opts.fleet?.publish(lease, 'crl', urlId(url), res.body, entry.nextUpdate, entry.nextUpdate);
        return decide(crl, false);
      });
      if ('failed' in got) { offline = true; reason = got.failed; continue; }
      return got;
    }
    return offline ? { status: 'offline', reason } : { status: 'none', reason };
  }
}

function ocspEntry(r: { certStatus: 'good' | 'revoked' | 'unknown'; thisUpdate: Date; nextUpdate: Date; revocationTime?: Date }): CachedOcsp {
  return { status: r.certStatus, thisUpdate: r.thisUpdate.getTime(), nextUpdate: r.nextUpdate.getTime(), ...(r.revocationTime ? { revocationTime: r.revocationTime } : {}) };
}

function ocspOutcome(entry: CachedOcsp, fromCache: boolean): OcspOutcome {
  if (entry.status === 'unknown') return { status: 'unknown', reason: 'ocsp-unknown', nextUpdate: horizon(entry) };
  return { status: entry.status, fromCache, entry };
}

function result(status: number, source: RevocationResult['source'], fromCache: boolean, reason: string | null, entry?: { nextUpdate: number; revocationTime?: Date }, revocationTime?: Date): RevocationResult {
  const rt = revocationTime ?? entry?.revocationTime;
  return Object.freeze({
    certFlags: status,
    revocationStatus: status,
    source,
    fromCache,
    reason,
    revocationTime: rt ? rt.toISOString() : null,
    nextUpdate: entry ? new Date(entry.nextUpdate).toISOString() : null,
  });
}

/** A checker with the given HTTP.sys-style options. */
export function createRevocationChecker(options: RevocationOptions = {}): RevocationChecker {
  return new RevocationChecker(options);
}
