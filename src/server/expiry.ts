// Expiry before it bites: the server certificate (and its chain), the trusted client CAs and
// the loaded CRLs, each with the date it stops working. A pure rule says which are within
// their warning time or past it; a small monitor logs one line per such item at start-up and
// once a day (timer unref'd) and feeds the expiry gauges (src/server/metrics.ts).
import { createHash, X509Certificate } from 'node:crypto';
import { DEFAULTS } from '../defaults.js';
import { pemBlocks } from '../tls/pem.js';
import { pkijs } from '../tls/pkijs-engine.js';

/** server: the leaf served; server-chain: the rest of `cert`; ca: a trusted client CA; crl: a loaded CRL. */
export type ExpiryKind = 'server' | 'server-chain' | 'ca' | 'crl';

export interface ExpiryItem {
  readonly kind: ExpiryKind;
  /** The certificate's subject (the CRL's issuer): its commonName, else the whole name. */
  readonly subject: string;
  /** SHA-1 of the DER (certificate thumbprint; for a CRL, of the CRL), lowercase hex. */
  readonly id: string;
  /** notAfter (certificates) or nextUpdate (CRLs), ms since the epoch; null for a CRL without nextUpdate. */
  readonly expires: number | null;
}

export interface ExpiryThresholds {
  /** Warn this many days before a certificate's notAfter. Default: DEFAULTS.expiryWarningDays. */
  readonly certificateDays: number;
  /** Warn this many hours before a CRL's nextUpdate. Default: DEFAULTS.crlExpiryWarningHours. */
  readonly crlHours: number;
}

export interface ExpiryFinding extends ExpiryItem {
  /** Seconds from now to `expires` (negative: past); null when it never expires. */
  readonly secondsLeft: number | null;
  /** error: past (a certificate expired, a CRL past nextUpdate); warn: within its threshold; ok otherwise. */
  readonly level: 'ok' | 'warn' | 'error';
}

/** The rule, pure: each item with its time left and level at `now` (ms). */
export function expiryFindings(items: readonly ExpiryItem[], now: number, t: ExpiryThresholds): ExpiryFinding[] {
  return items.map((item) => {
    if (item.expires === null) return { ...item, secondsLeft: null, level: 'ok' as const };
    const left = item.expires - now;
    const ahead = item.kind === 'crl' ? t.crlHours * 3_600_000 : t.certificateDays * 86_400_000;
    const level = left <= 0 ? 'error' as const : left <= ahead ? 'warn' as const : 'ok' as const;
    return { ...item, secondsLeft: Math.floor(left / 1000), level };
  });
}

const nameOf = (subject: string): string => /(?:^|\n)CN=([^\n]*)/.exec(subject)?.[1] ?? subject.replace(/\n/g, ', ');
const sha1 = (der: Uint8Array): string => createHash('sha1').update(der).digest('hex');

function certificateItems(pem: string | Buffer, kind: (index: number) => ExpiryKind): ExpiryItem[] {
  return pemBlocks(pem.toString(), 'CERTIFICATE').map((der, i) => {
    const x = new X509Certificate(der);
    return { kind: kind(i), subject: nameOf(x.subject), id: sha1(der), expires: Date.parse(x.validTo) };
  });
}

function crlItems(pem: string | Buffer): ExpiryItem[] {
  return pemBlocks(pem.toString(), 'X509 CRL').map((der) => {
    const crl = pkijs.CertificateRevocationList.fromBER(der);
    const cn = crl.issuer.typesAndValues.find((tv) => tv.type === '2.5.4.3');
    const subject = cn ? String(cn.value.valueBlock.value) : crl.issuer.typesAndValues.map((tv) => String(tv.value.valueBlock.value)).join(', ');
    return { kind: 'crl' as const, subject, id: sha1(der), expires: crl.nextUpdate ? crl.nextUpdate.value.getTime() : null };
  });
}

/**
 * The items of a server's TLS material (already checked to parse): the server certificate and
 * its chain, the configured client CAs (not Node's bundled roots) and the CRLs.
 */
export function expiryItems(material: { certs: readonly (string | Buffer)[]; ca: readonly (string | Buffer)[]; crl: readonly (string | Buffer)[] }): ExpiryItem[] {
  return [
    ...material.certs.flatMap((pem) => certificateItems(pem, (i) => (i === 0 ? 'server' : 'server-chain'))),
    ...material.ca.flatMap((pem) => certificateItems(pem, () => 'ca')),
    ...material.crl.flatMap((pem) => crlItems(pem)),
  ];
}

/** The logger methods the monitor uses (pino fits). */
export interface ExpiryLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ExpiryMonitorOptions {
  /** The items to watch, read at every check (a reload may change them). */
  items: () => readonly ExpiryItem[];
  logger: ExpiryLogger;
  thresholds?: Partial<ExpiryThresholds>;
  /** Clock (ms since the epoch). Default: Date.now. */
  now?: () => number;
  /** Time (ms) between checks. Default: DEFAULTS.expiryCheckIntervalMs (a day). */
  intervalMs?: number;
}

const WHAT: Record<ExpiryKind, string> = { server: 'server certificate', 'server-chain': 'certificate in the server chain', ca: 'trusted client CA', crl: 'CRL' };

/** The one log line of a finding that is not ok. */
function logFinding(log: ExpiryLogger, f: ExpiryFinding): void {
  const days = f.secondsLeft === null ? null : Math.round((f.secondsLeft / 86_400) * 10) / 10;
  const fields = { event: 'expiry', kind: f.kind, subject: f.subject, sha1: f.id, [f.kind === 'crl' ? 'nextUpdate' : 'notAfter']: f.expires === null ? null : new Date(f.expires).toISOString(), daysLeft: days };
  const what = `${WHAT[f.kind]} ${JSON.stringify(f.subject)}`;
  if (f.level === 'error') {
    log.error(fields, f.kind === 'crl'
      ? `${what} is past its nextUpdate: every client certificate it covers now fails verification (OpenSSL CRL_HAS_EXPIRED, certFlags CRYPT_E_NO_REVOCATION_CHECK); load a fresh CRL`
      : `${what} has expired`);
  } else if (f.level === 'warn') {
    log.warn(fields, f.kind === 'crl' ? `${what} reaches its nextUpdate in ${days} days: load a fresh one before then` : `${what} expires in ${days} days`);
  }
}

/** Checks at start() and every `intervalMs` (unref'd); stop() ends it. */
export class ExpiryMonitor {
  readonly #options: ExpiryMonitorOptions;
  readonly #thresholds: ExpiryThresholds;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #failed = false;

  constructor(options: ExpiryMonitorOptions) {
    this.#options = options;
    this.#thresholds = { certificateDays: options.thresholds?.certificateDays ?? DEFAULTS.expiryWarningDays, crlHours: options.thresholds?.crlHours ?? DEFAULTS.crlExpiryWarningHours };
    this.#now = options.now ?? Date.now;
  }

  /**
   * The findings now (no log): what the gauges show. Advisory: material that cannot be read
   * here (it was checked when the server was built) gives no findings and one error line,
   * never an exception in a timer.
   */
  findings(): ExpiryFinding[] {
    try {
      return expiryFindings(this.#options.items(), this.#now(), this.#thresholds);
    } catch (err) {
      if (!this.#failed) this.#options.logger.error({ event: 'expiry', err: { message: (err as Error).message } }, 'expiry check failed: no expiry warnings for this material');
      this.#failed = true;
      return [];
    }
  }

  /** Logs one line per item within its warning time or past it; answers every finding. */
  check(): ExpiryFinding[] {
    const all = this.findings();
    for (const f of all) logFinding(this.#options.logger, f);
    return all;
  }

  /** Checks now and then every interval. Idempotent. */
  start(): void {
    if (this.#timer) return;
    this.check();
    const every = this.#options.intervalMs ?? DEFAULTS.expiryCheckIntervalMs;
    this.#timer = setInterval(() => this.check(), every);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
