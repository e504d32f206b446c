// The prefetch schedule of CertOpenServerOcspResponse (seed 004) and the retry policy, as
// pure functions of (now, thisUpdate, nextUpdate, settings): no clock, no timers, so every
// branch is tested with a table. The handle (handle.ts) is the thin shell that arms timers.
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';

/**
 * The five settings of CertOpenServerOcspResponse, under the names of their registry values
 * (CERT_CHAIN_CONFIG_REGPATH) and with wincrypt.h's defaults.
 * https://learn.microsoft.com/windows/win32/api/wincrypt/nf-wincrypt-certopenserverocspresponse
 */
export interface OcspSettings {
  /** A response is handed out only while it stays valid for at least this long (s). Default: 600. */
  readonly SrvOcspRespMinValiditySeconds: number;
  /** Time limit of one retrieval: connect, send, receive (ms). Default: 15000. */
  readonly SrvOcspRespUrlRetrievalTimeoutMilliseconds: number;
  /** Prefetch no earlier than NextUpdate minus this (s). Default: 14400 (4 h). */
  readonly SrvOcspRespMaxBeforeNextUpdateSeconds: number;
  /** From NextUpdate minus this (s) on, wait until NextUpdate + MinAfter. Default: 120. */
  readonly SrvOcspRespMinBeforeNextUpdateSeconds: number;
  /** How long after NextUpdate (s) the late prefetch happens. Default: 60. */
  readonly SrvOcspRespMinAfterNextUpdateSeconds: number;
}

/** wincrypt.h's defaults (CERT_SRV_OCSP_RESP_*_DEFAULT): DEFAULTS.ocspSettings. */
export const DEFAULT_OCSP_SETTINGS: OcspSettings = DEFAULTS.ocspSettings;

/** The retry policy after a failed or refused retrieval (not in the seed: certbound's own). */
export interface RetryPolicy {
  /** Delay before the first retry (ms). Default: 60000. */
  readonly initialMs: number;
  /** Cap of the doubling backoff (ms). Default: 3600000 (1 h). */
  readonly maxMs: number;
  /** No two retrievals closer than this (ms), whatever else the rules say. Default: 5000. */
  readonly floorMs: number;
}

/** DEFAULTS.ocspRetry. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = DEFAULTS.ocspRetry;

/** Settings with the defaults filled in; throws CB_ERR_INVALID_OPTION on a negative or non-finite value. */
export function resolveSettings(partial: Partial<OcspSettings> = {}): OcspSettings {
  const out = { ...DEFAULT_OCSP_SETTINGS, ...partial };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new CertboundError('CB_ERR_INVALID_OPTION', [`settings.${k}`, `must be a number >= 0, got ${String(v)}`]);
  }
  if (out.SrvOcspRespUrlRetrievalTimeoutMilliseconds === 0) throw new CertboundError('CB_ERR_INVALID_OPTION', ['settings.SrvOcspRespUrlRetrievalTimeoutMilliseconds', 'must be > 0']);
  return Object.freeze(out);
}

/** The retry policy with the defaults filled in; throws CB_ERR_INVALID_OPTION unless 0 < floorMs <= initialMs <= maxMs. */
export function resolveRetryPolicy(partial: Partial<RetryPolicy> = {}): RetryPolicy {
  const out = { ...DEFAULT_RETRY_POLICY, ...partial };
  if (!(out.floorMs > 0 && out.initialMs >= out.floorMs && out.maxMs >= out.initialMs)) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['retry', `needs 0 < floorMs <= initialMs <= maxMs, got ${JSON.stringify(out)}`]);
  }
  return Object.freeze(out);
}

/**
 * Which rule decided a prefetch time:
 * - `before-window`: now < NextUpdate − MaxBefore; wait until NextUpdate − MaxBefore (seed).
 * - `in-window`: NextUpdate − MaxBefore ≤ now < NextUpdate − MinBefore; prefetch now (seed).
 * - `half-life`: as `in-window`, but the response is younger than half its validity period;
 *   wait until then (certbound's one addition: without it a response valid for less than
 *   MaxBefore would be refetched in a loop, since every fresh copy is already "in window").
 * - `after-next-update`: now ≥ NextUpdate − MinBefore; wait until NextUpdate + MinAfter (seed).
 * - `overdue`: now ≥ NextUpdate + MinAfter; prefetch now (the seed's wait is over).
 */
export type PrefetchRule = 'before-window' | 'in-window' | 'half-life' | 'after-next-update' | 'overdue';

export interface PrefetchPlan {
  /** When to retrieve (ms since the epoch), never before `now`. */
  readonly at: number;
  /** at − now (ms). */
  readonly delayMs: number;
  readonly rule: PrefetchRule;
}

/**
 * When the next prefetch retrieval happens for a response with the given thisUpdate and
 * nextUpdate (ms since the epoch), as the seed documents it for
 * SrvOcspRespMaxBeforeNextUpdateSeconds / MinBefore / MinAfter.
 */
export function nextPrefetch(now: number, thisUpdate: number, nextUpdate: number, settings: OcspSettings): PrefetchPlan {
  const windowStart = nextUpdate - settings.SrvOcspRespMaxBeforeNextUpdateSeconds * 1000;
  const lateStart = nextUpdate - settings.SrvOcspRespMinBeforeNextUpdateSeconds * 1000;
  const lateAt = nextUpdate + settings.SrvOcspRespMinAfterNextUpdateSeconds * 1000;
  const plan = (at: number, rule: PrefetchRule): PrefetchPlan => ({ at, delayMs: at - now, rule });
  if (now >= lateStart) return now >= lateAt ? plan(now, 'overdue') : plan(lateAt, 'after-next-update');
  if (now < windowStart) return plan(windowStart, 'before-window');
  const halfLife = thisUpdate + Math.floor((nextUpdate - thisUpdate) / 2);
  // The half-life wait never goes past the seed's late boundary: min(halfLife, lateStart).
  if (now < halfLife) return plan(Math.min(halfLife, lateStart), 'half-life');
  return plan(now, 'in-window');
}

/** True when a response with this nextUpdate may be handed out now (SrvOcspRespMinValiditySeconds). */
export function validLongEnough(now: number, nextUpdate: number, settings: Pick<OcspSettings, 'SrvOcspRespMinValiditySeconds'>): boolean {
  return nextUpdate - now >= settings.SrvOcspRespMinValiditySeconds * 1000;
}

/**
 * Delay before retry number `attempt` (1 = first retry) after a failed or refused retrieval.
 * Doubles from `initialMs` up to `maxMs`. While a staple is still being served (its
 * `servableUntil` = NextUpdate − MinValidity lies ahead), the delay is cut to half the time
 * left, so several retries land before it lapses; it never drops below `floorMs`, so a
 * responder is never hammered.
 */
export function retryDelay(attempt: number, now: number, servableUntil: number | undefined, policy: RetryPolicy): number {
  const n = Math.max(1, Math.floor(attempt));
  const backoff = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(n - 1, 30));
  if (servableUntil === undefined || servableUntil <= now) return backoff;
  return Math.max(policy.floorMs, Math.min(backoff, Math.floor((servableUntil - now) / 2)));
}
