// CRL refresh (docs/deployment.md#crl-refresh): a CRL loaded into the TLS contexts (`crl`,
// `--crl`) goes stale at its nextUpdate, and then OpenSSL fails every client certificate it
// covers (CRL_HAS_EXPIRED). With `crlRefresh` on, each loaded CRL is fetched again from its
// distribution point before then — on a background timer, never on the handshake path — and
// put in force through the server's reload path when it passes every check (fail closed: a bad
// answer changes nothing). Fetched CRLs can be kept in a private directory, so that a restart
// with the distribution point down starts from the newest valid one.
import * as asn1js from 'asn1js';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../defaults.js';
import { fetchDocument, type FetchFailure, type FetchOptions, type FetchResult } from '../ocsp/fetch.js';
import { crlUrlsOf, parseCrls } from '../ocsp/revocation.js';
import { ensurePrivateDir, writeSecretFile } from '../secret-file.js';
import { pemBlocks, toPem } from '../tls/pem.js';
import { pkijs } from '../tls/pkijs-engine.js';
import { crlsOf } from '../tls/secure-context.js';

type Pem = string | Buffer;

/** `crlRefresh` of createServer (true: all defaults). */
export interface CrlRefreshOptions {
  /** Refresh this long (ms) before nextUpdate, or half the CRL's validity if shorter. Default: DEFAULTS.crlRefreshLeadMs. */
  leadMs?: number;
  /** First retry (ms) after a failure, doubled each time. Default: DEFAULTS.crlRefreshRetryMinMs. */
  retryMinMs?: number;
  /** Longest time (ms) between retries. Default: DEFAULTS.crlRefreshRetryMaxMs. */
  retryMaxMs?: number;
  /** Time limit of one retrieval (ms). Default: DEFAULTS.crlRefreshTimeoutMs. */
  timeoutMs?: number;
  /** Largest CRL accepted (bytes). Default: DEFAULTS.crlRefreshMaxBytes. */
  maxBytes?: number;
  /** A private directory (created 0700) where fetched CRLs are kept (0600) and read back at start. Default: none. */
  dir?: string;
  /** The clock (ms since the epoch). Default: Date.now. */
  now?: () => number;
}

/** Why a fetched (or kept) CRL was refused; the fetch failures of src/ocsp/fetch.ts too. */
export type CrlRefusal =
  | 'crl-malformed'
  | 'crl-issuer'
  | 'crl-signature'
  | 'crl-not-yet-valid'
  | 'crl-no-next-update'
  | 'crl-expired'
  | 'crl-not-newer';

export type CrlRefreshReason = CrlRefusal | FetchFailure | 'crl-apply' | 'crl-no-url';

/** One refresh's outcome, as logged and counted (certbound_crl_refresh_total). */
export type CrlRefreshOutcome = 'refreshed' | 'loaded' | 'refused' | 'failed' | 'no-url';

const OID_IDP = '2.5.29.28';
const OID_CRL_NUMBER = '2.5.29.20';

/** The CRL number (extension 2.5.29.20) as a bigint, or null. */
function crlNumber(crl: pkijs.CertificateRevocationList): bigint | null {
  const ext = crl.crlExtensions?.extensions.find((e) => e.extnID === OID_CRL_NUMBER);
  if (!ext) return null;
  const parsed = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView).result;
  if (!(parsed instanceof asn1js.Integer)) return null;
  return BigInt('0x' + (Buffer.from(parsed.valueBlock.valueHexView).toString('hex') || '0'));
}

/** True when `a` is newer than `b`: by CRL number when both have one, else by a later thisUpdate. */
export function isNewerCrl(a: pkijs.CertificateRevocationList, b: pkijs.CertificateRevocationList): boolean {
  const na = crlNumber(a);
  const nb = crlNumber(b);
  if (na !== null && nb !== null) return na > nb;
  return a.thisUpdate.value.getTime() > b.thisUpdate.value.getTime();
}

/** The Issuing Distribution Point's fullName URIs (http, https). */
function idpUrls(crl: pkijs.CertificateRevocationList): string[] {
  const ext = crl.crlExtensions?.extensions.find((e) => e.extnID === OID_IDP);
  const idp = ext?.parsedValue;
  if (!(idp instanceof pkijs.IssuingDistributionPoint) || !Array.isArray(idp.distributionPoint)) return [];
  return idp.distributionPoint.filter((n) => n.type === 6 && typeof n.value === 'string' && /^https?:\/\//i.test(n.value)).map((n) => n.value as string);
}

/** The CA certificate (among `ca`) that issued `crl`: subject equal to the CRL's issuer and the signature verifies. */
export async function issuerOfCrl(crl: pkijs.CertificateRevocationList, ca: readonly Pem[]): Promise<pkijs.Certificate | undefined> {
  for (const pem of ca) {
    for (const der of pemBlocks(pem.toString(), 'CERTIFICATE')) {
      let cert: pkijs.Certificate;
      try {
        cert = pkijs.Certificate.fromBER(der);
      } catch {
        continue;
      }
      if (!cert.subject.isEqual(crl.issuer)) continue;
      if (await crl.verify({ issuerCertificate: cert }).catch(() => false)) return cert;
    }
  }
  return undefined;
}

/** Where a CRL is fetched again: its Issuing Distribution Point fullName URI, else the issuing CA's CRL distribution point (http). */
export function crlRefreshUrl(crl: pkijs.CertificateRevocationList, issuer: pkijs.Certificate | undefined): string | undefined {
  return idpUrls(crl)[0] ?? (issuer ? crlUrlsOf(issuer).find((u) => /^http:\/\//i.test(u)) : undefined);
}

/**
 * Checks a fetched (or kept) CRL before it may replace `current`: one CRL, PEM or DER, that
 * OpenSSL loads too, issued by `issuer` (name and signature), thisUpdate not in the future
 * (DEFAULTS.clockSkewMs allowed), nextUpdate present and in the future, and newer than `current`.
 */
export async function checkFetchedCrl(body: Buffer, issuer: pkijs.Certificate, current: pkijs.CertificateRevocationList, now: number):
Promise<{ ok: true; crl: pkijs.CertificateRevocationList; pem: string } | { ok: false; reason: CrlRefusal; detail: string }> {
  let crl: pkijs.CertificateRevocationList;
  let pem: string;
  try {
    const crls = parseCrls(body);
    if (crls.length !== 1) return { ok: false, reason: 'crl-malformed', detail: `${crls.length} CRLs in the answer (one expected)` };
    crl = crls[0] as pkijs.CertificateRevocationList;
    pem = toPem(crl.toSchema(true).toBER(false), 'X509 CRL');
    crlsOf(pem, '(fetched CRL)');
  } catch (err) {
    return { ok: false, reason: 'crl-malformed', detail: (err as Error).message };
  }
  if (!crl.issuer.isEqual(issuer.subject)) return { ok: false, reason: 'crl-issuer', detail: 'the issuer name is not that of the CRL in force' };
  if (!(await crl.verify({ issuerCertificate: issuer }).catch(() => false))) return { ok: false, reason: 'crl-signature', detail: 'the signature does not verify with the issuing CA\'s key' };
  const thisUpdate = crl.thisUpdate.value.getTime();
  if (thisUpdate > now + DEFAULTS.clockSkewMs) return { ok: false, reason: 'crl-not-yet-valid', detail: `thisUpdate ${new Date(thisUpdate).toISOString()} is in the future` };
  if (!crl.nextUpdate) return { ok: false, reason: 'crl-no-next-update', detail: 'no nextUpdate' };
  if (crl.nextUpdate.value.getTime() <= now) return { ok: false, reason: 'crl-expired', detail: `nextUpdate ${crl.nextUpdate.value.toISOString()} is past` };
  if (!isNewerCrl(crl, current)) return { ok: false, reason: 'crl-not-newer', detail: `thisUpdate ${new Date(thisUpdate).toISOString()} is not after the one in force (${current.thisUpdate.value.toISOString()})` };
  return { ok: true, crl, pem };
}

/** The schedule's settings (DEFAULTS.crlRefresh*). */
export interface CrlSchedule { leadMs: number; retryMinMs: number; retryMaxMs: number }

/**
 * When to fetch a CRL next (ms since the epoch). No failure since the last success: at
 * nextUpdate − min(leadMs, validity / 2), never before `now`. After `failures` failures in a
 * row: now + retryMinMs · 2^(failures−1), at most retryMaxMs (it retries until one succeeds).
 */
export function nextCrlRefresh(s: { now: number; thisUpdate: number; nextUpdate: number | null; failures: number }, c: CrlSchedule): number {
  if (s.failures > 0) return s.now + Math.min(c.retryMaxMs, c.retryMinMs * 2 ** Math.min(s.failures - 1, 30));
  if (s.nextUpdate === null) return s.now;
  const lead = Math.min(c.leadMs, Math.max(0, (s.nextUpdate - s.thisUpdate) / 2));
  return Math.max(s.now, s.nextUpdate - lead);
}

/** What the refresher needs of the server it refreshes. */
export interface CrlRefreshHost {
  /** The CRLs (PEM, one per entry) in force now. */
  crls(): readonly string[];
  /** The trusted CA certificates in force (PEM bundles). */
  ca(): readonly Pem[];
  /** Puts `crls` in force everywhere (the reload path); rejects when refused. */
  apply(crls: string[]): Promise<void>;
  logger: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  /** One refresh's outcome (the metrics counter). */
  count?(outcome: CrlRefreshOutcome, reason: string): void;
  /** Retrieval (tests, embedders). Default: fetchDocument. */
  fetch?(url: string, options: FetchOptions): Promise<FetchResult>;
}

interface Slot {
  readonly key: string;
  readonly url: string;
  readonly issuer: pkijs.Certificate;
  current: pkijs.CertificateRevocationList;
  currentPem: string;
  failures: number;
  due: number;
  timer?: NodeJS.Timeout;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const issuerKey = (crl: pkijs.CertificateRevocationList): string => createHash('sha256').update(Buffer.from(crl.issuer.toSchema().toBER(false))).digest('hex').slice(0, 32);

/** Refreshes every CRL in force of one server (or cluster primary). */
export class CrlRefresher {
  readonly #host: CrlRefreshHost;
  readonly #now: () => number;
  readonly #schedule: CrlSchedule;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #dir: string | undefined;
  #slots = new Map<string, Slot>();
  /** The newest CRL fetched (or kept) per issuer, preferred to an older one a file reload brings. */
  readonly #newest = new Map<string, { crl: pkijs.CertificateRevocationList; pem: string }>();
  readonly #reportedNoUrl = new Set<string>();
  #chain: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(host: CrlRefreshHost, options: CrlRefreshOptions = {}) {
    this.#host = host;
    this.#now = options.now ?? Date.now;
    this.#schedule = { leadMs: options.leadMs ?? DEFAULTS.crlRefreshLeadMs, retryMinMs: options.retryMinMs ?? DEFAULTS.crlRefreshRetryMinMs, retryMaxMs: options.retryMaxMs ?? DEFAULTS.crlRefreshRetryMaxMs };
    this.#timeoutMs = options.timeoutMs ?? DEFAULTS.crlRefreshTimeoutMs;
    this.#maxBytes = options.maxBytes ?? DEFAULTS.crlRefreshMaxBytes;
    this.#dir = options.dir;
  }

  /** Reads the kept CRLs (a newer valid one is put in force), then schedules every refresh. */
  start(): Promise<void> {
    return this.#serial(async () => {
      if (this.#dir !== undefined) ensurePrivateDir(this.#dir, { noLink: true });
      await this.#scan();
      if (this.#dir !== undefined) await this.#loadKept();
    });
  }

  /** The CRLs in force changed (a reload): schedule again from them. */
  rescan(): Promise<void> {
    return this.#serial(() => this.#scan());
  }

  stop(): void {
    this.#stopped = true;
    for (const s of this.#slots.values()) clearTimeout(s.timer);
    this.#slots.clear();
  }

  /**
   * `crls` (PEM entries, each may hold several) with every CRL replaced by the newer one this
   * refresher fetched for the same issuer, if any: a file reload does not go back to an older CRL.
   */
  preferNewer(crls: readonly Pem[]): string[] {
    return crls.flatMap((entry) => pemBlocks(entry.toString(), 'X509 CRL').map((der) => {
      const pem = toPem(der, 'X509 CRL');
      let crl: pkijs.CertificateRevocationList;
      try {
        crl = pkijs.CertificateRevocationList.fromBER(der);
      } catch {
        return pem; // The reload's own checks refuse it.
      }
      const newest = this.#newest.get(issuerKey(crl));
      return newest && isNewerCrl(newest.crl, crl) ? newest.pem : pem;
    }));
  }

  #serial(f: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(f);
    this.#chain = run.catch(() => {});
    return run;
  }

  async #scan(): Promise<void> {
    if (this.#stopped) return;
    const ca = this.#host.ca();
    const next = new Map<string, Slot>();
    for (const pem of this.#host.crls()) {
      let crl: pkijs.CertificateRevocationList;
      try {
        crl = pkijs.CertificateRevocationList.fromBER(pemBlocks(pem, 'X509 CRL')[0] ?? Buffer.alloc(0));
      } catch {
        continue;
      }
      const issuer = await issuerOfCrl(crl, ca);
      const url = crlRefreshUrl(crl, issuer);
      const key = issuerKey(crl);
      if (!issuer || !url) {
        if (!this.#reportedNoUrl.has(key)) {
          this.#reportedNoUrl.add(key);
          const why = issuer ? 'neither an issuing distribution point nor an http CRL distribution point on its CA' : 'its issuing CA is not among the trusted CAs';
          this.#host.logger.warn({ event: 'crl-refresh', outcome: 'no-url', reason: 'crl-no-url', issuer: issuerName(crl) }, `CRL of ${issuerName(crl)} not refreshed (crl-no-url): ${why}; it changes only with a reload of its file`);
          this.#host.count?.('no-url', 'crl-no-url');
        }
        continue;
      }
      const old = this.#slots.get(key);
      const sameCrl = old && old.currentPem === pem;
      const slot: Slot = { key, url, issuer, current: crl, currentPem: pem, failures: sameCrl ? old.failures : 0, due: 0 };
      next.set(key, slot);
    }
    for (const s of this.#slots.values()) clearTimeout(s.timer);
    this.#slots = next;
    for (const s of next.values()) this.#arm(s);
  }

  #arm(slot: Slot): void {
    if (this.#stopped) return;
    clearTimeout(slot.timer);
    const now = this.#now();
    slot.due = nextCrlRefresh({ now, thisUpdate: slot.current.thisUpdate.value.getTime(), nextUpdate: slot.current.nextUpdate?.value.getTime() ?? null, failures: slot.failures }, this.#schedule);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, slot.due - now));
    slot.timer = setTimeout(() => {
      if (this.#slots.get(slot.key) !== slot) return;
      if (this.#now() < slot.due) { this.#arm(slot); return; }
      void this.#serial(() => this.#refresh(slot));
    }, delay);
    slot.timer.unref();
  }

  async #refresh(slot: Slot): Promise<void> {
    if (this.#stopped || this.#slots.get(slot.key) !== slot) return;
    const log = { event: 'crl-refresh', url: slot.url, issuer: issuerName(slot.current) };
    const res = await (this.#host.fetch ?? fetchDocument)(slot.url, { timeoutMs: this.#timeoutMs, maxBytes: this.#maxBytes });
    if (this.#stopped || this.#slots.get(slot.key) !== slot) return;
    if (!res.ok) return this.#failed(slot, 'failed', res.reason, res.detail, log);
    const checked = await checkFetchedCrl(res.body, slot.issuer, slot.current, this.#now());
    if (!checked.ok) return this.#failed(slot, 'refused', checked.reason, checked.detail, log);
    await this.#put(slot, checked, 'refreshed', log);
  }

  async #put(slot: Slot, checked: { crl: pkijs.CertificateRevocationList; pem: string }, outcome: 'refreshed' | 'loaded', log: object): Promise<void> {
    const list = this.#host.crls().map((pem) => (pem === slot.currentPem ? checked.pem : pem));
    this.#newest.set(slot.key, checked);
    try {
      await this.#host.apply(list);
    } catch (err) {
      this.#newest.delete(slot.key);
      return this.#failed(slot, 'refused', 'crl-apply', (err as Error).message, log);
    }
    if (outcome === 'refreshed' && this.#dir !== undefined) {
      try {
        writeSecretFile(join(this.#dir, `${slot.key}.crl`), checked.pem);
      } catch (err) {
        this.#host.logger.warn({ ...log, err: (err as Error).message }, 'cannot keep the refreshed CRL');
      }
    }
    this.#host.count?.(outcome, 'none');
    const nextUpdate = checked.crl.nextUpdate?.value.toISOString() ?? null;
    this.#host.logger.info({ ...log, outcome, thisUpdate: checked.crl.thisUpdate.value.toISOString(), nextUpdate }, outcome === 'refreshed' ? 'CRL refreshed' : 'kept CRL loaded');
    // The reload's onReload rescans; a host whose apply does not (a cluster primary) gets it here.
    if (this.#slots.get(slot.key) === slot) {
      slot.current = checked.crl;
      slot.currentPem = checked.pem;
      slot.failures = 0;
      this.#arm(slot);
    }
  }

  #failed(slot: Slot, outcome: 'failed' | 'refused', reason: CrlRefreshReason, detail: string, log: object): void {
    slot.failures += 1;
    this.#arm(slot);
    this.#host.count?.(outcome, reason);
    this.#host.logger.warn({ ...log, outcome, reason, detail, failures: slot.failures, retryAt: new Date(slot.due).toISOString(), nextUpdate: slot.current.nextUpdate?.value.toISOString() ?? null }, `CRL refresh ${outcome} (${reason}): ${detail}; the CRL in force stays`);
  }

  /** The kept CRLs: each checked like a fetched one against the CRL in force, and put in force when newer. */
  async #loadKept(): Promise<void> {
    for (const slot of [...this.#slots.values()]) {
      const path = join(this.#dir as string, `${slot.key}.crl`);
      if (!existsSync(path)) continue;
      const log = { event: 'crl-refresh', url: slot.url, issuer: issuerName(slot.current), file: path };
      let body: Buffer;
      try {
        body = readFileSync(path);
      } catch (err) {
        this.#host.logger.warn({ ...log, err: (err as Error).message }, 'cannot read the kept CRL');
        continue;
      }
      const checked = await checkFetchedCrl(body, slot.issuer, slot.current, this.#now());
      if (!checked.ok) {
        this.#host.logger.info({ ...log, outcome: 'unused', reason: checked.reason }, `kept CRL not used (${checked.reason}): ${checked.detail}`);
        continue;
      }
      await this.#put(slot, checked, 'loaded', log);
    }
  }
}

function issuerName(crl: pkijs.CertificateRevocationList): string {
  const cn = crl.issuer.typesAndValues.find((tv) => tv.type === '2.5.4.3');
  return cn ? String(cn.value.valueBlock.value) : crl.issuer.typesAndValues.map((tv) => String(tv.value.valueBlock.value)).join(', ');
}
