// The dev responder's validity and the stapler settings that follow from it: on their own so
// that `certbound serve` decides them without loading the responder (pkijs).
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import type { OcspSettings } from './schedule.js';

/** Default validity of the dev responder's answers (minutes): DEFAULTS.devOcspValidityMinutes. */
export const DEV_OCSP_VALIDITY_MINUTES = DEFAULTS.devOcspValidityMinutes;

/** Environment variable that sets the validity (minutes) for `certbound serve`'s responder. */
export const DEV_OCSP_VALIDITY_ENV = 'CERTBOUND_DEV_OCSP_VALIDITY_MINUTES';

/** Validity (minutes) from CERTBOUND_DEV_OCSP_VALIDITY_MINUTES, else the default. */
export function validityFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[DEV_OCSP_VALIDITY_ENV];
  if (raw === undefined || raw === '') return DEV_OCSP_VALIDITY_MINUTES;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new CertboundError('CB_ERR_INVALID_OPTION', [DEV_OCSP_VALIDITY_ENV, `expected minutes > 0, got ${JSON.stringify(raw)}`]);
  return n;
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
